package run

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// simEndpoint is a simulated webhook endpoint: it serves capacity requests
// at once, each for latency; a request that would wait longer than
// queueLimit for a server is answered 503 at once; errorRate of the
// requests are answered 503 whatever the load.
type simEndpoint struct {
	latency    time.Duration
	capacity   int
	queueLimit time.Duration
	errorRate  float64
}

// sim drives a controller against a simulated endpoint with an endless
// backlog: as many requests in flight as the limit allows, in simulated
// time.
type sim struct {
	t       *testing.T
	c       controller
	now     time.Time
	ep      simEndpoint
	servers []time.Time // when each server is free
	flight  answers
	rng     *rand.Rand
	// What happened in the last run call.
	done, overloads int
	limits          []int // the limit after each answer
}

type simAnswer struct {
	at       time.Time
	rtt      time.Duration
	sig      signal
	inflight int
}

type answers []simAnswer

func (a answers) Len() int           { return len(a) }
func (a answers) Less(i, j int) bool { return a[i].at.Before(a[j].at) }
func (a answers) Swap(i, j int)      { a[i], a[j] = a[j], a[i] }
func (a *answers) Push(x any)        { *a = append(*a, x.(simAnswer)) }
func (a *answers) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

func newSim(t *testing.T, ceiling int, ep simEndpoint) *sim {
	s := &sim{t: t, c: newController(ceiling), now: time.Unix(1_700_000_000, 0), rng: rand.New(rand.NewPCG(1, 2))}
	s.setEndpoint(ep)
	return s
}

func (s *sim) setEndpoint(ep simEndpoint) {
	s.ep = ep
	s.servers = make([]time.Time, ep.capacity)
}

// send sends one request at s.now.
func (s *sim) send() {
	inflight := s.flight.Len() + 1
	if s.rng.Float64() < s.ep.errorRate {
		heap.Push(&s.flight, simAnswer{at: s.now.Add(time.Millisecond), rtt: time.Millisecond, sig: signalOverload, inflight: inflight})
		return
	}
	best := 0
	for i, f := range s.servers {
		if f.Before(s.servers[best]) {
			best = i
		}
	}
	start := latest(s.now, s.servers[best])
	if start.Sub(s.now) > s.ep.queueLimit {
		heap.Push(&s.flight, simAnswer{at: s.now.Add(time.Millisecond), rtt: time.Millisecond, sig: signalOverload, inflight: inflight})
		return
	}
	end := start.Add(s.ep.latency)
	s.servers[best] = end
	heap.Push(&s.flight, simAnswer{at: end, rtt: end.Sub(s.now), sig: signalOK, inflight: inflight})
}

// run runs the simulation for d of simulated time.
func (s *sim) run(d time.Duration) {
	s.done, s.overloads, s.limits = 0, 0, nil
	end := s.now.Add(d)
	for i := 0; s.now.Before(end); i++ {
		if i > 10_000_000 {
			s.t.Fatal("the simulation does not end")
		}
		if !s.now.Before(s.c.HeldUntil()) {
			for s.flight.Len() < s.c.Limit() {
				s.send()
			}
		}
		next := end
		if s.flight.Len() > 0 {
			next = s.flight[0].at
		} else if s.c.HeldUntil().After(s.now) {
			next = s.c.HeldUntil()
		}
		if next.After(end) {
			s.now = end
			return
		}
		s.now = next
		for s.flight.Len() > 0 && !s.flight[0].at.After(s.now) {
			a := heap.Pop(&s.flight).(simAnswer)
			s.c.Observe(s.now, a.rtt, a.sig, a.inflight)
			if a.sig == signalOverload {
				s.overloads++
			} else {
				s.done++
			}
			s.limits = append(s.limits, s.c.Limit())
		}
	}
}

// meanLimit is the mean limit over the last run's second half.
func (s *sim) meanLimit() float64 {
	h := s.limits[len(s.limits)/2:]
	sum := 0
	for _, l := range h {
		sum += l
	}
	return float64(sum) / float64(len(h))
}

func TestControllerConverges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ceiling  int
		ep       simEndpoint
		min, max float64 // the mean limit settled on
		rate     float64 // at least this share of the endpoint's capacity delivered
	}{
		{"unbounded endpoint reaches the ceiling", 64, simEndpoint{latency: 50 * time.Millisecond, capacity: 1000, queueLimit: time.Hour}, 63, 64, 0.06},
		{"capacity 40, short queue", 64, simEndpoint{latency: 50 * time.Millisecond, capacity: 40, queueLimit: 20 * time.Millisecond}, 24, 60, 0.7},
		{"capacity 16, long queue: latency inflation", 64, simEndpoint{latency: 200 * time.Millisecond, capacity: 16, queueLimit: time.Hour}, 12, 36, 0.9},
		{"capacity 8, answers in 2 ms", 64, simEndpoint{latency: 2 * time.Millisecond, capacity: 8, queueLimit: 2 * time.Millisecond}, 5, 16, 0.8},
		{"ceiling below capacity", 10, simEndpoint{latency: 50 * time.Millisecond, capacity: 40, queueLimit: time.Hour}, 10, 10, 0.24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.ceiling, tc.ep)
			s.run(60 * time.Second)
			got := s.meanLimit()
			t.Logf("mean limit %.1f, %d delivered, %d overloaded", got, s.done, s.overloads)
			if got < tc.min || got > tc.max {
				t.Errorf("mean limit %.1f, want %.0f to %.0f", got, tc.min, tc.max)
			}
			capacity := float64(tc.ep.capacity) / tc.ep.latency.Seconds() * 60
			if share := float64(s.done) / capacity; share < tc.rate {
				t.Errorf("delivered %d in 60 s, %.0f %% of the endpoint's capacity, want at least %.0f %%", s.done, share*100, tc.rate*100)
			}
		})
	}
}

func TestControllerBacksOffAndRecovers(t *testing.T) {
	healthy := simEndpoint{latency: 50 * time.Millisecond, capacity: 40, queueLimit: 20 * time.Millisecond}
	s := newSim(t, 64, healthy)
	s.run(30 * time.Second)
	before := s.meanLimit()

	// The endpoint answers 503 to every request for 2 s: the limit falls
	// to 1 within a few round trips.
	failing := healthy
	failing.errorRate = 1
	s.setEndpoint(failing)
	s.run(2 * time.Second)
	if got := s.c.Limit(); got != 1 {
		t.Errorf("limit after 2 s of 503: got %d, want 1", got)
	}

	// A fifth of the requests fail: the limit stays well below the
	// healthy one, but requests still go.
	flaky := healthy
	flaky.errorRate = 0.2
	s.setEndpoint(flaky)
	s.run(10 * time.Second)
	if got := s.meanLimit(); got > before/2 {
		t.Errorf("mean limit with 20 %% 503: got %.1f, want at most half the healthy %.1f", got, before)
	}
	if s.done == 0 {
		t.Error("nothing delivered with 20 % 503")
	}

	// Healthy again: back near the capacity.
	s.setEndpoint(healthy)
	s.run(30 * time.Second)
	if got := s.meanLimit(); got < before*0.8 {
		t.Errorf("mean limit after recovery: got %.1f, want near the %.1f before", got, before)
	}
}

func TestControllerSlowerEndpoint(t *testing.T) {
	// An endpoint that becomes four times slower for good (not
	// overloaded): the limit dips on the inflation, then the next window's
	// minimum takes over and it grows back to the ceiling.
	s := newSim(t, 64, simEndpoint{latency: 50 * time.Millisecond, capacity: 1000, queueLimit: time.Hour})
	s.run(10 * time.Second)
	s.setEndpoint(simEndpoint{latency: 200 * time.Millisecond, capacity: 1000, queueLimit: time.Hour})
	s.run(2 * minRTTWindow)
	s.run(30 * time.Second)
	if got := s.meanLimit(); got < 60 {
		t.Errorf("mean limit: got %.1f, want back near the ceiling 64", got)
	}
}

func TestControllerHold(t *testing.T) {
	c := newController(64)
	now := time.Unix(1_700_000_000, 0)
	c.Hold(now.Add(time.Second))
	c.Hold(now.Add(500 * time.Millisecond)) // an earlier one does not shorten it
	if got := c.HeldUntil(); !got.Equal(now.Add(time.Second)) {
		t.Errorf("held until %v, want %v", got, now.Add(time.Second))
	}
}
