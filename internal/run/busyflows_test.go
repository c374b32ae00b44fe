package run

import (
	"slices"
	"testing"
	"time"
)

// TestBusyFlows checks which flows a claim leaves out: those whose endpoint
// is full or held by a Retry-After, and no longer once it has room.
func TestBusyFlows(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(2, clk.now)
	b := newBusyFlows()
	const slow, held = "http://127.0.0.1:1", "http://127.0.0.1:2"
	r1, _, _ := l.tryAcquire(slow, caps{})
	r2, _, _ := l.tryAcquire(slow, caps{})
	b.add(1, slow, caps{})
	b.add(2, slow, caps{})
	if got := b.still(l); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("with the endpoint full: left out %v, want [1 2]", got)
	}
	r1(ok200(time.Second))
	if got := b.still(l); len(got) != 0 {
		t.Errorf("with a slot free: left out %v, want none", got)
	}
	b.add(1, slow, caps{})
	if got := b.still(l); len(got) != 0 {
		t.Errorf("noted again while a slot is free: left out %v, want none", got)
	}
	// maxConcurrency 1: one request in flight fills it.
	b.add(3, slow, caps{max: 1})
	if got := b.still(l); !slices.Equal(got, []int64{3}) {
		t.Errorf("maxConcurrency 1 with one in flight: left out %v, want [3]", got)
	}
	r2(ok200(time.Second))

	r, _, _ := l.tryAcquire(held, caps{})
	r(busy503(time.Millisecond, clk.now().Add(time.Minute)))
	b.add(4, held, caps{})
	if got := b.still(l); !slices.Equal(got, []int64{4}) {
		t.Errorf("during a Retry-After: left out %v, want [4]", got)
	}
	clk.add(time.Minute + time.Second)
	if got := b.still(l); len(got) != 0 {
		t.Errorf("after the Retry-After: left out %v, want none", got)
	}
}
