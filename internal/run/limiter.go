package run

import (
	"context"
	"sync"
	"time"
)

// caps are an activity's own limits on its endpoint: at most max requests
// in flight (0: the ceiling) and rate requests per second (0: no rate).
type caps struct {
	max  int
	rate float64
}

// answer is what a request told the limiter: how long it took (0: none was
// made), its signal, and until when a Retry-After holds the endpoint.
type answer struct {
	took time.Duration
	sig  signal
	hold time.Time
}

// limiter bounds the concurrent requests to each endpoint by its adaptive
// limit (controller), the activity's caps and Retry-After, and spaces out
// the runs handed back because their endpoint was busy.
type limiter struct {
	ceiling int
	now     func() time.Time
	mu      sync.Mutex
	slots   map[string]*slot // by endpoint
	pruned  time.Time
}

type slot struct {
	ctl     controller
	active  int           // requests in flight
	waiters int           // workers waiting for a free slot
	took    time.Duration // how long a request takes, a moving average; 0 until one finished
	parked  []time.Time   // when the runs handed back are due again
	freed   chan struct{} // closed (and replaced) when a slot frees
	tokens  float64       // the rate bucket, when the activity has a rate
	filled  time.Time
	used    time.Time
}

func newLimiter(ceiling int, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{ceiling: ceiling, now: now, slots: map[string]*slot{}}
}

// idleSlot is how long an endpoint's state (its learned limit) is kept
// after its last request.
const idleSlot = 10 * time.Minute

func (l *limiter) slot(key string, now time.Time) *slot {
	if now.Sub(l.pruned) > time.Minute {
		l.pruned = now
		for k, s := range l.slots {
			if s.active == 0 && s.waiters == 0 && now.Sub(s.used) > idleSlot && now.After(s.ctl.HeldUntil()) {
				delete(l.slots, k)
			}
		}
	}
	s := l.slots[key]
	if s == nil {
		s = &slot{ctl: newController(l.ceiling), freed: make(chan struct{})}
		l.slots[key] = s
	}
	s.used = now
	return s
}

// take takes a slot of s for a request with caps c if one is free now;
// else it returns false and, when the wait has a known end (Retry-After, the
// rate), that end.
func (s *slot) take(c caps, now time.Time) (until time.Time, ok bool) {
	if now.Before(s.ctl.HeldUntil()) {
		return s.ctl.HeldUntil(), false
	}
	limit := s.ctl.Limit()
	if c.max > 0 {
		limit = min(limit, c.max)
	}
	if s.active >= limit {
		return time.Time{}, false
	}
	if c.rate > 0 {
		// A bucket of one token: requests at least 1/rate apart.
		if s.filled.IsZero() {
			s.tokens, s.filled = 1, now
		}
		s.tokens = min(1, s.tokens+now.Sub(s.filled).Seconds()*c.rate)
		s.filled = now
		if s.tokens < 1-1e-9 {
			return now.Add(time.Duration((1 - s.tokens) / c.rate * float64(time.Second))), false
		}
		s.tokens--
	}
	s.active++
	return time.Time{}, true
}

// tryAcquire takes a free slot of endpoint key if there is one. release
// gives it back with what the request told. until, when not ok, is when
// the endpoint may have room (zero: unknown).
func (l *limiter) tryAcquire(key string, c caps) (release func(answer), until time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slot(key, l.now())
	until, ok = s.take(c, l.now())
	if !ok {
		return nil, until, false
	}
	return l.releaser(s), time.Time{}, true
}

// maxBusyWait is the longest a worker waits for a slot of a busy endpoint
// whose requests are quick, before it gives its run back to the queue.
const maxBusyWait = 500 * time.Millisecond

// unknownBusyWait replaces maxBusyWait while none of the endpoint's
// requests has finished: they may be slow.
const unknownBusyWait = 100 * time.Millisecond

// acquireQuick waits up to within (unknownBusyWait while none of its
// requests has finished) for a free slot of endpoint key, but only when the
// endpoint's requests have taken less than within on average, its
// wait has no known end beyond within, and fewer workers wait for it than
// its limit: a slow endpoint's runs go back to the queue at once (ok
// false), and one endpoint holds at most twice its limit of workers,
// while a fast endpoint's slot is worth waiting for rather than handing the
// run back and claiming it again.
func (l *limiter) acquireQuick(ctx context.Context, key string, c caps, within time.Duration) (release func(answer), ok bool) {
	l.mu.Lock()
	s := l.slot(key, l.now())
	if s.took == 0 {
		within = min(within, unknownBusyWait)
	}
	quick := s.took < within && s.waiters < s.ctl.Limit() && l.now().Add(within).After(s.ctl.HeldUntil())
	l.mu.Unlock()
	if !quick {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	release, err := l.acquire(ctx, key, c)
	return release, err == nil
}

// acquire waits for a free slot of endpoint key, or for ctx to end.
func (l *limiter) acquire(ctx context.Context, key string, c caps) (release func(answer), err error) {
	l.mu.Lock()
	s := l.slot(key, l.now())
	s.waiters++
	defer func() {
		l.mu.Lock()
		s.waiters--
		l.mu.Unlock()
	}()
	for {
		until, ok := s.take(c, l.now())
		if ok {
			release := l.releaser(s)
			l.mu.Unlock()
			return release, nil
		}
		freed := s.freed
		l.mu.Unlock()
		var timer <-chan time.Time
		if !until.IsZero() {
			t := time.NewTimer(max(until.Sub(l.now()), time.Millisecond))
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-freed:
		case <-timer:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l.mu.Lock()
	}
}

func (l *limiter) releaser(s *slot) func(answer) {
	inflight := s.active // taken under l.mu by the caller
	var once sync.Once
	return func(r answer) {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			now := l.now()
			s.active--
			if r.took > 0 {
				if s.took == 0 {
					s.took = r.took
				} else {
					s.took = (3*s.took + r.took) / 4
				}
				s.ctl.Observe(now, r.took, r.sig, inflight)
			}
			if !r.hold.IsZero() {
				s.ctl.Hold(r.hold)
			}
			close(s.freed)
			s.freed = make(chan struct{})
		})
	}
}

// limitOf returns the current limit of endpoint key, for logs and tests.
func (l *limiter) limitOf(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.slots[key]; s != nil {
		return s.ctl.Limit()
	}
	return 0
}

// minPark is the shortest a run is handed back for.
const minPark = 10 * time.Millisecond

// park returns when a run that found endpoint key busy at now should be due
// again: after the runs handed back before it, one request time per
// ceiling (or maxConcurrency) of them (or per fallback while none has finished yet), at least 1/rate
// apart, and not before until (a Retry-After, the next token). A backlog
// for one slow endpoint so waits its turn in the queue, is not claimed over
// and over, and does not stand in the way of other endpoints' runs.
func (l *limiter) park(key string, c caps, now, until time.Time, fallback time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[key]
	if s == nil {
		return latest(now.Add(minPark), until) // free again already
	}
	kept := s.parked[:0]
	for _, t := range s.parked {
		if t.After(now) {
			kept = append(kept, t)
		}
	}
	per := s.took
	if per == 0 {
		per = fallback
	}
	// Spread by the ceiling, not the limit now: a limit still growing
	// would park a backlog far longer than the endpoint needs.
	n := l.ceiling
	if c.max > 0 {
		n = min(n, c.max)
	}
	due := now.Add(max(per, minPark) * time.Duration(len(kept)/n+1))
	if c.rate > 0 {
		due = latest(due, now.Add(time.Duration(float64(len(kept)+1)/c.rate*float64(time.Second))))
	}
	due = latest(due, until)
	s.parked = append(kept, due)
	return due
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
