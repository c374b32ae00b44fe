package run

import (
	"slices"
	"testing"
	"time"

	"mailtrigger/internal/store"
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

// TestFlowCaps checks the bounds a claim gets: of a flow whose endpoint has
// requests in flight, no more runs than the endpoint has room for (its
// free slots and a round of waiters); none of one whose endpoint is held
// by a Retry-After; no bound for an unknown flow's.
func TestFlowCaps(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(4, clk.now) // limit 4
	b := newBusyFlows()
	const busy, one, held, idle = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"
	b.seenFlow(1, busy, caps{})
	b.seenFlow(2, one, caps{max: 1})
	b.seenFlow(3, held, caps{})
	b.seenFlow(4, idle, caps{})
	b.seenFlow(5, busy, caps{max: 2})
	l.tryAcquire(busy, caps{})
	l.tryAcquire(one, caps{max: 1})
	r, _, _ := l.tryAcquire(held, caps{})
	r(busy503(time.Millisecond, clk.now().Add(time.Minute)))
	r, _, _ = l.tryAcquire(idle, caps{})
	r(ok200(time.Millisecond))
	// busy: 3 slots free and 4 waiters (none of its requests finished
	// yet: a round of the limit); flow 5's maxConcurrency 2: 1 and 2.
	// one (maxConcurrency 1): its slot taken, a round of 1 may wait.
	got := b.flowCaps(l, 100)
	// idle: 4 slots free and, its requests quick (1 ms), two rounds of
	// the ceiling waiting (maxWaiters).
	want := []store.FlowCap{{FlowID: 1, Max: 7}, {FlowID: 2, Max: 1}, {FlowID: 3}, {FlowID: 4, Max: 12}, {FlowID: 5, Max: 3}}
	if !slices.Equal(got, want) {
		t.Errorf("got caps %v, want %v", got, want)
	}
	if got := b.flowCaps(l, 5); !slices.Equal(got, []store.FlowCap{{FlowID: 2, Max: 1}, {FlowID: 3}, {FlowID: 5, Max: 3}}) {
		t.Errorf("claiming 5: got caps %v, want flows 2, 3 and 5 only (the others' room is more)", got)
	}
}

// TestFlowCapsSlowEndpoint: an endpoint answering in 200 ms (slower than a
// quarter of maxBusyWait, quicker than maxBusyWait) with every slot taken
// gets runs claimed ahead, as many as wait their turn within a quarter of
// maxBusyWait on average, so that a slot it frees is taken at once rather
// than after the finish's commit, a claim and the reads (with a database
// 10 ms away, about 80 ms of every 280: docs/benchmarks.md, session 16).
// One answering slower than maxBusyWait gets none: its runs would be
// handed back.
func TestFlowCapsSlowEndpoint(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(4, clk.now) // limit 4
	b := newBusyFlows()
	const slow, slower = "http://127.0.0.1:1", "http://127.0.0.1:2"
	b.seenFlow(1, slow, caps{})
	b.seenFlow(2, slower, caps{})
	for _, e := range []struct {
		key  string
		took time.Duration
	}{{slow, 200 * time.Millisecond}, {slower, 2 * maxBusyWait}} {
		r, _, _ := l.tryAcquire(e.key, caps{})
		r(ok200(e.took))
		for range 4 {
			if _, _, ok := l.tryAcquire(e.key, caps{}); !ok {
				t.Fatalf("%s: no slot free", e.key)
			}
		}
	}
	// slow: no slot free; 4 × 500 ms / (4 × 200 ms) = 2 may wait.
	want := []store.FlowCap{{FlowID: 1, Max: 2}, {FlowID: 2}}
	if got := b.flowCaps(l, 100); !slices.Equal(got, want) {
		t.Errorf("got caps %v, want %v", got, want)
	}
}
