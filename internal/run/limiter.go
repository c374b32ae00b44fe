package run

import (
	"context"
	"sync"
	"time"
)

// limiter bounds the concurrent requests to each endpoint, and spaces out
// the runs handed back because their endpoint was busy.
type limiter struct {
	n     int
	mu    sync.Mutex
	slots map[string]*slot // by endpoint; dropped when nobody uses it
}

type slot struct {
	sem    chan struct{}
	users  int           // holders and waiters
	took   time.Duration // how long a request takes, a moving average; 0 until one finished
	parked []time.Time   // when the runs handed back are due again
}

func newLimiter(n int) *limiter { return &limiter{n: n, slots: map[string]*slot{}} }

func (l *limiter) slot(key string) *slot {
	s := l.slots[key]
	if s == nil {
		s = &slot{sem: make(chan struct{}, l.n)}
		l.slots[key] = s
	}
	return s
}

// tryAcquire takes a free slot of endpoint key if there is one. release
// gives it back, with how long the request took (0: none was made).
func (l *limiter) tryAcquire(key string) (release func(took time.Duration), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slot(key)
	select {
	case s.sem <- struct{}{}:
		s.users++
		return l.releaser(key, s), true
	default:
		return nil, false // s has users, so it stays
	}
}

// maxBusyWait is the longest a worker waits for a slot of a busy endpoint
// whose requests are quick, before it gives its run back to the queue.
const maxBusyWait = 100 * time.Millisecond

// acquireQuick waits up to within for a free slot of endpoint key, but only
// when the endpoint's requests have taken less than within on average (or
// none has finished yet): a slow endpoint's runs go back to the queue at
// once (ok false), while a fast endpoint's slot is worth waiting for rather
// than handing the run back and claiming it again.
func (l *limiter) acquireQuick(ctx context.Context, key string, within time.Duration) (release func(took time.Duration), ok bool) {
	l.mu.Lock()
	s := l.slots[key]
	quick := s != nil && s.took < within
	l.mu.Unlock()
	if !quick {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	release, err := l.acquire(ctx, key)
	return release, err == nil
}

// acquire waits for a free slot of endpoint key, or for ctx to end.
func (l *limiter) acquire(ctx context.Context, key string) (release func(took time.Duration), err error) {
	l.mu.Lock()
	s := l.slot(key)
	s.users++
	l.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
		return l.releaser(key, s), nil
	case <-ctx.Done():
		l.leave(key, s, 0)
		return nil, ctx.Err()
	}
}

func (l *limiter) releaser(key string, s *slot) func(time.Duration) {
	return func(took time.Duration) {
		<-s.sem
		l.leave(key, s, took)
	}
}

func (l *limiter) leave(key string, s *slot, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if took > 0 {
		if s.took == 0 {
			s.took = took
		} else {
			s.took = (3*s.took + took) / 4
		}
	}
	if s.users--; s.users == 0 {
		delete(l.slots, key)
	}
}

// minPark is the shortest a run is handed back for.
const minPark = 10 * time.Millisecond

// park returns when a run that found endpoint key busy at now should be due
// again: after the runs handed back before it, n of them per request time
// (or per fallback while none has finished yet). A backlog for one slow
// endpoint so waits its turn in the queue, is not claimed over and over, and
// does not stand in the way of other endpoints' runs.
func (l *limiter) park(key string, now time.Time, fallback time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[key]
	if s == nil {
		return now.Add(minPark) // free again already
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
	due := now.Add(max(per, minPark) * time.Duration(len(kept)/l.n+1))
	s.parked = append(kept, due)
	return due
}
