package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// retryGrace is how long after a 503 with Retry-After a request may still
// arrive without breaking it: one the service sent before the 503 reached
// it, on loopback and a busy machine.
const retryGrace = 100 * time.Millisecond

// endpoint is a webhook listener that behaves like a remote endpoint: it
// holds each answer for delay, and answers every failEvery-th request 503
// with Retry-After: 1. It counts the requests in flight, the 2xx answers
// per run, and the requests that came while a Retry-After it gave was
// running.
type endpoint struct {
	srv       *http.Server
	url       string
	delay     time.Duration
	failEvery int

	mu          sync.Mutex
	requests    int
	arrived     time.Time      // the first request
	bad         int            // not a signed delivery
	ok          map[string]int // run id → 2xx answers
	okAt        []time.Time    // each run's first 2xx, in order
	inflight    int
	maxInflight int
	holds       []time.Time // when each 503 was sent
	early       int         // requests inside a Retry-After, after retryGrace
	changed     chan struct{}
	stop        chan struct{}
	samples     []int // requests in flight, every sampleEvery
	sampling    sync.WaitGroup
}

// sampleEvery is how often the requests in flight are sampled.
const sampleEvery = 100 * time.Millisecond

func newEndpoint(delay time.Duration, failEvery int) (*endpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for webhooks: %w", err)
	}
	p := &endpoint{url: "http://" + ln.Addr().String() + "/hook", delay: delay, failEvery: failEvery,
		ok: map[string]int{}, changed: make(chan struct{}, 1), stop: make(chan struct{})}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	p.sampling.Go(func() {
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.samples = append(p.samples, p.inflight)
				p.mu.Unlock()
			}
		}
	})
	return p, nil
}

func (p *endpoint) close() error {
	close(p.stop)
	p.sampling.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// root is the endpoint's scheme://host:port, as the service's metrics name it.
func (p *endpoint) root() string { return strings.TrimSuffix(p.url, "/hook") }

func (p *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	p.mu.Lock()
	p.requests++
	n := p.requests
	if n == 1 {
		p.arrived = at
	}
	p.inflight++
	p.maxInflight = max(p.maxInflight, p.inflight)
	for i := len(p.holds) - 1; i >= 0; i-- {
		sent := p.holds[i]
		if at.Sub(sent) >= time.Second {
			break // the 503s before it are older still
		}
		if at.Sub(sent) > retryGrace {
			p.early++
			break
		}
	}
	p.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	var d payload
	if err == nil {
		err = json.Unmarshal(body, &d)
	}
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-r.Context().Done():
		}
	}
	fail := p.failEvery > 0 && n%p.failEvery == 0
	p.mu.Lock()
	switch {
	case err != nil || d.Run.ID == "" || r.Header.Get("webhook-signature") == "":
		p.bad++
	case fail:
		p.holds = append(p.holds, time.Now())
	default:
		if p.ok[d.Run.ID]++; p.ok[d.Run.ID] == 1 {
			p.okAt = append(p.okAt, time.Now())
		}
	}
	p.inflight--
	p.mu.Unlock()
	if fail {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// endpointStats is what an endpoint saw.
type endpointStats struct {
	requests, bad, runs, duplicates, fails, early, maxInflight int
	first, last                                                time.Time // the first and last runs' first 2xx
	arrived                                                    time.Time // the first request
	samples                                                    []int
}

func (p *endpoint) stats() endpointStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := endpointStats{requests: p.requests, bad: p.bad, runs: len(p.ok), fails: len(p.holds), early: p.early,
		maxInflight: p.maxInflight, samples: append([]int(nil), p.samples...), arrived: p.arrived}
	for _, n := range p.ok {
		if n > 1 {
			s.duplicates += n - 1
		}
	}
	if len(p.okAt) > 0 {
		s.first, s.last = p.okAt[0], p.okAt[len(p.okAt)-1]
	}
	return s
}

// waitRuns waits until n distinct runs got a 2xx, at most within.
func (p *endpoint) waitRuns(ctx context.Context, n int, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		got := len(p.ok)
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("waiting for %d deliveries to %s: %d within %v: %w", n, p.url, got, within, errTimeout)
		case <-p.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check fails when a run was delivered more than once, a request was not a
// signed delivery, or a request came inside a Retry-After.
func (s endpointStats) check() error {
	switch {
	case s.bad > 0:
		return fmt.Errorf("%d webhook requests were not signed deliveries", s.bad)
	case s.duplicates > 0:
		return fmt.Errorf("%d runs were delivered (2xx) more than once", s.duplicates)
	case s.early > 0:
		return fmt.Errorf("%d requests came inside a Retry-After (more than %v after the 503)", s.early, retryGrace)
	}
	return nil
}

// inflightChart is the requests in flight sampled every sampleEvery, as
// "t=0.0s 4, t=0.5s 12, …", at most points of them (spread evenly).
func inflightChart(samples []int, points int) string {
	for len(samples) > 0 && samples[0] == 0 {
		samples = samples[1:] // before the service started
	}
	if len(samples) == 0 {
		return "none sampled"
	}
	step := max(1, (len(samples)+points-1)/points)
	var parts []string
	for i := 0; i < len(samples); i += step {
		parts = append(parts, fmt.Sprintf("%.1fs %d", (time.Duration(i)*sampleEvery).Seconds(), samples[i]))
	}
	return strings.Join(parts, ", ")
}
