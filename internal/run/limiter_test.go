package run

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func ok200(d time.Duration) answer       { return answer{took: d, sig: signalOK} }
func busy503(d time.Duration, hold time.Time) answer {
	return answer{took: d, sig: signalOverload, hold: hold}
}

func TestLimiter(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(2, clk.now)
	const key = "https://hooks.example.com:443"
	r1, _, ok1 := l.tryAcquire(key, caps{})
	r2, _, ok2 := l.tryAcquire(key, caps{})
	if !ok1 || !ok2 {
		t.Fatal("the first two slots were refused")
	}
	if _, _, ok := l.tryAcquire(key, caps{}); ok {
		t.Fatal("got a third slot, want 2 at most (the ceiling)")
	}
	if r, _, ok := l.tryAcquire("https://other.example.com:443", caps{}); !ok {
		t.Fatal("another endpoint was refused")
	} else {
		r(answer{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx, key, caps{}); err == nil {
		t.Fatal("acquire got a slot of a full endpoint")
	}

	// Runs handed back are spaced out: a ceiling's worth per request time.
	now := clk.now()
	r1(ok200(100 * time.Millisecond))
	r2(answer{})
	var got []time.Duration
	for range 5 {
		got = append(got, l.park(key, caps{}, now, time.Time{}, time.Second).Sub(now))
	}
	want := []time.Duration{100, 100, 200, 200, 300}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Errorf("parked run %d: got due in %v, want %v", i, got[i], want[i]*time.Millisecond)
		}
	}
	// Those due by now no longer count.
	if d := l.park(key, caps{}, now.Add(250*time.Millisecond), time.Time{}, time.Second).Sub(now.Add(250 * time.Millisecond)); d != 100*time.Millisecond {
		t.Errorf("got due in %v, want 100ms behind the one run still parked", d)
	}
	if d := l.park("https://new.example.com:443", caps{}, now, time.Time{}, time.Second).Sub(now); d != minPark {
		t.Errorf("an endpoint not used yet: got due in %v, want %v", d, minPark)
	}
}

func TestLimiterRetryAfter(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(64, clk.now)
	const key = "http://127.0.0.1:8080"
	r, _, ok := l.tryAcquire(key, caps{})
	if !ok {
		t.Fatal("refused")
	}
	hold := clk.now().Add(2 * time.Second)
	r(busy503(10*time.Millisecond, hold))

	// No request to the endpoint before the Retry-After, whatever the
	// activity; the refusal says until when.
	for _, step := range []time.Duration{0, time.Second, 999 * time.Millisecond} {
		clk.add(step)
		_, until, ok := l.tryAcquire(key, caps{})
		if ok {
			t.Fatalf("a slot %v before the Retry-After ends", hold.Sub(clk.now()))
		}
		if !until.Equal(hold) {
			t.Errorf("refused until %v, want %v", until, hold)
		}
	}
	if due := l.park(key, caps{}, clk.now(), hold, time.Second); due.Before(hold) {
		t.Errorf("a run handed back is due at %v, before the Retry-After at %v", due, hold)
	}
	clk.add(time.Millisecond)
	if _, _, ok := l.tryAcquire(key, caps{}); !ok {
		t.Error("refused after the Retry-After ended")
	}
	// acquireQuick does not wait for a hold longer than its wait.
	r, _, _ = l.tryAcquire(key, caps{})
	r(busy503(time.Millisecond, clk.now().Add(time.Hour)))
	if _, ok := l.acquireQuick(context.Background(), key, caps{}, maxBusyWait); ok {
		t.Error("acquireQuick got a slot of an endpoint held for an hour")
	}
}

func TestLimiterCaps(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(64, clk.now)
	const key = "http://127.0.0.1:8080"

	// maxConcurrency 1 bounds the endpoint below its adaptive limit.
	r, _, ok := l.tryAcquire(key, caps{max: 1})
	if !ok {
		t.Fatal("refused")
	}
	if _, _, ok := l.tryAcquire(key, caps{max: 1}); ok {
		t.Error("a second request with maxConcurrency 1")
	}
	r(ok200(time.Millisecond))

	// ratePerSecond 10: requests at least 100 ms apart.
	const other = "http://127.0.0.1:9090"
	sent := 0
	for range 300 { // 3 s in 10 ms steps
		if r, _, ok := l.tryAcquire(other, caps{rate: 10}); ok {
			sent++
			r(ok200(time.Millisecond))
		}
		clk.add(10 * time.Millisecond)
	}
	if sent < 29 || sent > 31 {
		t.Errorf("sent %d in 3 s at 10 per second, want 30", sent)
	}
	clk.add(time.Second)
	if r, _, ok := l.tryAcquire(other, caps{rate: 10}); ok {
		r(ok200(time.Millisecond))
	}
	_, until, ok := l.tryAcquire(other, caps{rate: 10})
	if ok || until.Sub(clk.now()) <= 0 || until.Sub(clk.now()) > 100*time.Millisecond {
		t.Errorf("right after a request: ok %v, until in %v, want refused until the next token", ok, until.Sub(clk.now()))
	}
	// Runs handed back for a rate are spread at the rate.
	now := clk.now()
	d1 := l.park(other, caps{rate: 10}, now, until, time.Second).Sub(now)
	d2 := l.park(other, caps{rate: 10}, now, until, time.Second).Sub(now)
	if d2-d1 < 100*time.Millisecond {
		t.Errorf("two runs handed back at rate 10/s due %v and %v, want at least 100ms apart", d1, d2)
	}
}

func TestLimiterAdapts(t *testing.T) {
	// The limit grows with fast 2xx answers while in use, and falls on 503.
	clk := newFakeClock()
	l := newLimiter(64, clk.now)
	const key = "http://127.0.0.1:8080"
	if _, _, ok := l.tryAcquire(key, caps{}); !ok {
		t.Fatal("refused")
	}
	for range 200 {
		var rel []func(answer)
		for {
			r, _, ok := l.tryAcquire(key, caps{})
			if !ok {
				break
			}
			rel = append(rel, r)
		}
		clk.add(50 * time.Millisecond)
		for _, r := range rel {
			r(ok200(50 * time.Millisecond))
		}
	}
	if got := l.limitOf(key); got != 64-1 && got != 64 {
		t.Errorf("limit after 10 s of fast 2xx: got %d, want the ceiling (64, one slot held)", got)
	}
	r, _, _ := l.tryAcquire(key, caps{})
	clk.add(time.Second)
	r(busy503(time.Millisecond, time.Time{}))
	if got := l.limitOf(key); got != 32 {
		t.Errorf("limit after a 503: got %d, want 32", got)
	}
}

// A request whose slot was taken before a Retry-After came (the first
// activity's slot is taken at the claim) waits the Retry-After out before
// it is sent.
func TestLimiterWaitHold(t *testing.T) {
	l := newLimiter(64, time.Now)
	const key = "http://127.0.0.1:1"
	if err := l.waitHold(context.Background(), key); err != nil {
		t.Fatalf("an endpoint never heard from: %v", err)
	}
	taken, _, ok := l.tryAcquire(key, caps{})
	if !ok {
		t.Fatal("no slot for a new endpoint")
	}
	other, _, ok := l.tryAcquire(key, caps{})
	if !ok {
		t.Fatal("no second slot")
	}
	hold := 300 * time.Millisecond
	start := time.Now()
	other(answer{took: time.Millisecond, sig: signalOverload, hold: start.Add(hold)})
	if err := l.waitHold(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < hold {
		t.Errorf("waitHold returned after %v, inside the Retry-After of %v", d, hold)
	}
	taken(answer{})

	l.slots[key].ctl.Hold(time.Now().Add(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.waitHold(ctx, key); err == nil {
		t.Error("waitHold returned nil inside an hour-long Retry-After when its context ended")
	}
}
