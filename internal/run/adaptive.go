package run

import (
	"math"
	"time"
)

// The adaptive concurrency limit of one endpoint (docs/webhooks.md explains
// it). Like TCP congestion control: the limit starts small, doubles every
// round trip while answers are fast and 2xx (slow start), then grows by one
// per round trip; it is halved on an overload signal (429, 502, 503, 504, a
// timeout, a connection error) and cut by a tenth when the smoothed latency
// rises above the endpoint's minimum by more than a tolerance, at most once
// per round trip either way.
const (
	// initialLimit is the limit of an endpoint not heard from yet: modest
	// beside the ceiling (a quarter of it; Netflix's concurrency-limits
	// starts at 20), and two round trips of slow start from it.
	initialLimit = 16
	// DefaultCeiling is the default most requests in flight to one
	// endpoint (Options.PerEndpoint); an activity's maxConcurrency lowers it.
	DefaultCeiling = 64
	// latencyTolerance and latencySlack: the smoothed latency is inflated
	// when above minimum × latencyTolerance + latencySlack (the slack keeps
	// sub-millisecond local endpoints from reading scheduling noise as
	// queueing).
	latencyTolerance = 2.0
	latencySlack     = 5 * time.Millisecond
	// overloadFactor and inflationFactor are the multiplicative decreases.
	overloadFactor  = 0.5
	inflationFactor = 0.9
	// minRTTWindow is how long a measured minimum latency stands: after
	// it, the minimum of the last window replaces it, so that an endpoint
	// that became slower for good is not read as inflated for ever.
	minRTTWindow = 30 * time.Second
	// srttWeight is the weight of a new sample in the smoothed latency.
	srttWeight = 0.125
)

// signal is what one request told about its endpoint.
type signal int

const (
	signalOK       signal = iota // a 2xx answer
	signalOverload               // 429, 502, 503, 504, a timeout, a connection error
	signalNeutral                // any other answer: says nothing about load
)

// controller is the adaptive limit of one endpoint. It does no I/O and
// reads no clock: every call passes now, so that tests drive it with a
// simulated endpoint and time.
type controller struct {
	limit     float64
	ceiling   int
	slowStart bool
	minRTT    time.Duration // the lowest latency in the standing window
	winMin    time.Duration // the lowest latency of the window in progress
	winStart  time.Time
	srtt      time.Duration // smoothed latency, 0 before the first sample
	cutAt     time.Time     // the last decrease
	holdUntil time.Time     // no request before it (a Retry-After)
}

func newController(ceiling int) controller {
	ceiling = max(ceiling, 1)
	return controller{limit: float64(min(initialLimit, ceiling)), ceiling: ceiling, slowStart: true}
}

// Limit is how many requests may be in flight now.
func (c *controller) Limit() int { return max(1, int(c.limit)) }

// HeldUntil is when the endpoint may be sent to again, after a Retry-After;
// zero or past: now.
func (c *controller) HeldUntil() time.Time { return c.holdUntil }

// Hold keeps every request from the endpoint until t.
func (c *controller) Hold(t time.Time) {
	if t.After(c.holdUntil) {
		c.holdUntil = t
	}
}

// Observe takes the answer to one request: its latency rtt and signal s,
// inflight being the requests in flight when it was sent (itself included).
func (c *controller) Observe(now time.Time, rtt time.Duration, s signal, inflight int) {
	switch s {
	case signalOverload:
		c.decrease(now, overloadFactor)
	case signalOK:
		c.sample(now, rtt)
		if float64(c.srtt) > float64(c.minRTT)*latencyTolerance+float64(latencySlack) {
			c.decrease(now, inflationFactor)
			return
		}
		// Grow only a limit in use: an endpoint sent to one at a time
		// says nothing about how it takes more.
		if float64(inflight)*2 < c.limit {
			return
		}
		if c.slowStart {
			c.limit++
		} else {
			c.limit += 1 / c.limit
		}
		c.limit = min(c.limit, float64(c.ceiling))
	}
}

// sample takes a latency into the minimum and the smoothed latency.
func (c *controller) sample(now time.Time, rtt time.Duration) {
	rtt = max(rtt, time.Microsecond)
	if c.winStart.IsZero() {
		c.winStart = now
	}
	if now.Sub(c.winStart) >= minRTTWindow && c.winMin > 0 {
		c.minRTT, c.winMin, c.winStart = c.winMin, 0, now
	}
	if c.winMin == 0 || rtt < c.winMin {
		c.winMin = rtt
	}
	if c.minRTT == 0 || rtt < c.minRTT {
		c.minRTT = rtt
	}
	if c.srtt == 0 {
		c.srtt = rtt
	} else {
		c.srtt = time.Duration((1-srttWeight)*float64(c.srtt) + srttWeight*float64(rtt))
	}
}

// decrease multiplies the limit by f, once per round trip: the answers to
// the requests sent before the last cut still come in, and describe the
// load before it.
func (c *controller) decrease(now time.Time, f float64) {
	if !c.cutAt.IsZero() && now.Sub(c.cutAt) < max(c.srtt, 10*time.Millisecond) {
		return
	}
	c.cutAt = now
	c.slowStart = false
	c.limit = math.Max(1, c.limit*f)
}
