package run

import (
	"context"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(2)
	const key = "https://hooks.example.com:443"
	r1, ok1 := l.tryAcquire(key)
	r2, ok2 := l.tryAcquire(key)
	if !ok1 || !ok2 {
		t.Fatal("the first two slots were refused")
	}
	if _, ok := l.tryAcquire(key); ok {
		t.Fatal("got a third slot, want 2 at most")
	}
	if r, ok := l.tryAcquire("https://other.example.com:443"); !ok {
		t.Fatal("another endpoint was refused")
	} else {
		r(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx, key); err == nil {
		t.Fatal("acquire got a slot of a full endpoint")
	}

	// Runs handed back are spaced out: 2 per request time, in turn.
	now := time.Now()
	r1(100 * time.Millisecond)
	var got []time.Duration
	for range 5 {
		got = append(got, l.park(key, now, time.Second).Sub(now))
	}
	want := []time.Duration{100, 100, 200, 200, 300}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Errorf("parked run %d: got due in %v, want %v", i, got[i], want[i]*time.Millisecond)
		}
	}
	// Those due by now no longer count.
	if d := l.park(key, now.Add(250*time.Millisecond), time.Second).Sub(now.Add(250 * time.Millisecond)); d != 100*time.Millisecond {
		t.Errorf("got due in %v, want 100ms behind the one run still parked", d)
	}

	r2(0)
	if len(l.slots) != 0 {
		t.Errorf("got %d slots with nobody using them, want 0", len(l.slots))
	}
	if d := l.park(key, now, time.Second).Sub(now); d != minPark {
		t.Errorf("a free endpoint: got due in %v, want %v", d, minPark)
	}
}
