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
	active  int             // requests in flight
	waiters int             // workers waiting for a free slot
	took    time.Duration   // how long a request takes, a moving average; 0 until one finished
	parked  []time.Time     // when the runs handed back are due again
	queue   []chan struct{} // waiters in turn; closed to wake one
	sent    []time.Time     // when each request in flight was sent
	tokens  float64         // the rate bucket, when the activity has a rate
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
		s = &slot{ctl: newController(l.ceiling)}
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
	s.sent = append(s.sent, now)
	return time.Time{}, true
}

// estimate is how long a request to s takes: the moving average, or the
// age of the oldest request in flight when that is longer (a slow endpoint
// not heard from yet); 0 when nothing is known.
func (s *slot) estimate(now time.Time) time.Duration {
	e := s.took
	if len(s.sent) > 0 {
		e = max(e, now.Sub(s.sent[0]))
	}
	return e
}

// wake wakes as many waiters, in turn, as there are free slots (one at
// least).
func (s *slot) wake() {
	for n := max(1, s.ctl.Limit()-s.active); n > 0 && len(s.queue) > 0; n-- {
		close(s.queue[0])
		s.queue = s.queue[1:]
	}
}

// leaveQueue takes ch out of the queue; false when it was woken already.
func (s *slot) leaveQueue(ch chan struct{}) bool {
	for i, c := range s.queue {
		if c == ch {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
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

// maxWaiters bounds the workers waiting for one endpoint, as a multiple of
// its ceiling.
const maxWaiters = 2

// acquireQuick waits up to within (unknownBusyWait, and no more waiters
// than its limit, while none of its requests has finished) for a free slot of endpoint key, but only when the
// endpoint's requests take less than within, the waiters before it would
// have their turn within it too, and its Retry-After (if any) ends within
// it: a slow endpoint's runs go back to the queue at once (ok false), and
// one endpoint holds a bounded number of workers, while a fast endpoint's
// slot is worth waiting for rather than handing the run back and claiming
// it again.
func (l *limiter) acquireQuick(ctx context.Context, key string, c caps, within time.Duration) (release func(answer), ok bool) {
	l.mu.Lock()
	now := l.now()
	s := l.slot(key, now)
	est, limit := s.estimate(now), s.ctl.Limit()
	if c.max > 0 {
		limit = min(limit, c.max)
	}
	most := maxWaiters * l.ceiling
	if s.took == 0 {
		// Not heard from yet: it may be slow.
		within, most = min(within, unknownBusyWait), limit
	}
	quick := est < within && time.Duration(s.waiters+1)*est/time.Duration(limit) < within &&
		s.waiters < most && now.Add(within).After(s.ctl.HeldUntil())
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
		ch := make(chan struct{})
		s.queue = append(s.queue, ch)
		l.mu.Unlock()
		var timer <-chan time.Time
		if !until.IsZero() {
			t := time.NewTimer(max(until.Sub(l.now()), time.Millisecond))
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
			l.mu.Lock()
		case <-timer:
			l.mu.Lock()
			s.leaveQueue(ch)
		case <-ctx.Done():
			l.mu.Lock()
			if !s.leaveQueue(ch) {
				s.wake() // woken for a slot it does not take: pass it on
			}
			l.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

func (l *limiter) releaser(s *slot) func(answer) {
	inflight := s.active // taken under l.mu by the caller
	sentAt := s.sent[len(s.sent)-1]
	var once sync.Once
	return func(r answer) {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			now := l.now()
			s.active--
			for i, t := range s.sent {
				if t.Equal(sentAt) {
					s.sent = append(s.sent[:i], s.sent[i+1:]...)
					break
				}
			}
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
			s.wake()
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
	per := s.estimate(now)
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

// waitHold returns once no Retry-After holds endpoint key, or ctx's error
// when ctx ends first.
func (l *limiter) waitHold(ctx context.Context, key string) error {
	for {
		l.mu.Lock()
		var until time.Time
		if s := l.slots[key]; s != nil {
			until = s.ctl.HeldUntil()
		}
		wait := until.Sub(l.now())
		l.mu.Unlock()
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// room returns how many more runs for endpoint key (with caps c) a claim
// may take now, so that none of them is handed back: its free slots, and
// while its requests take less than acquireQuick's wait, as many waiters as
// acquireQuick lets wait and have their turn well within that wait; -1 when
// the limiter knows nothing of the endpoint (no bound). The waiters are
// what keeps an endpoint's slots busy: a slot freed with none waiting
// stays empty until the delivery's finish is committed, a claim made and
// its runs read (with PostgreSQL 10 ms away, 80 ms of every 280 for an
// endpoint answering in 200 ms, when only endpoints under a quarter of the
// wait had waiters).
func (l *limiter) room(key string, c caps) (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[key]
	if s == nil {
		return -1
	}
	now := l.now()
	if now.Before(s.ctl.HeldUntil()) {
		return 0
	}
	limit := s.ctl.Limit()
	if c.max > 0 {
		limit = min(limit, c.max)
	}
	within := time.Duration(maxBusyWait)
	if s.took == 0 {
		within = unknownBusyWait
	}
	n = max(0, limit-s.active)
	if est := s.estimate(now); est < within {
		// As many waiters as acquireQuick lets wait, and have their
		// turn within a quarter of within on average (a margin for
		// requests growing slower): for an endpoint answering in
		// 200 ms, 5/8 of its limit.
		most := maxWaiters * l.ceiling
		if s.took == 0 {
			most = limit
		}
		n += max(0, min(most, int(time.Duration(limit)*within/(4*max(est, time.Millisecond))))-s.waiters)
	}
	if c.rate > 0 {
		// The rate lets about rate*within requests go within.
		n = min(n, max(0, int(c.rate*within.Seconds())+1-s.waiters))
	}
	return n
}

// full reports whether endpoint key has no room now for a request with caps
// c: Retry-After holds it, or its requests in flight fill its limit.
func (l *limiter) full(key string, c caps) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[key]
	if s == nil {
		return false
	}
	if l.now().Before(s.ctl.HeldUntil()) {
		return true
	}
	limit := s.ctl.Limit()
	if c.max > 0 {
		limit = min(limit, c.max)
	}
	return s.active >= limit
}
