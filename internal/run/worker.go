// Package run delivers runs: it takes due runs from the durable queue in the
// runs table, posts each run's message to its flow's webhook activities
// (signed per the Standard Webhooks convention, the run id as idempotency
// key), and records every attempt, retrying with exponential backoff and
// jitter. Several workers, in one process or in several replicas on one
// PostgreSQL, share the queue; a run claimed by a worker that died is
// delivered again once its lease ends.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
)

// Options tune the worker. Zero values take the defaults.
type Options struct {
	// Workers bounds the deliveries at once in this process, those
	// waiting for a slot of their endpoint included; default 256 (workers
	// are goroutines). Each endpoint gets at most its limit of them in
	// flight, and at most as many more waiting.
	Workers     int
	MaxAttempts int // automatic attempts before a run fails; default 12 (about a day with the default backoff)
	// Lease is how long a claimed run belongs to this worker; default 5 min.
	// A delivery (all of its activities) is cut off before its lease ends;
	// a run whose worker died is claimed again after it.
	Lease time.Duration
	// PerEndpoint is the ceiling of the adaptive limit of concurrent
	// requests from this process to one scheme://host:port; default 64
	// (DefaultCeiling). An activity's maxConcurrency lowers it for its
	// endpoint. A run whose endpoint is busy goes back to the queue,
	// without an attempt, so that it does not hold a worker that runs to
	// other endpoints could use.
	PerEndpoint int
	// BaseURL, when set (https://mailtrigger.example.com), makes the
	// attachment URLs in the payload absolute.
	BaseURL string
	// BackoffBase is the wait after the first failed attempt (default 30 s);
	// each next wait is three times longer, capped at BackoffMax (default
	// 4 h), each spread by ±25 %.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxRetryAfter caps the wait a 429 or 503 response's Retry-After asks
	// for; default 6 h.
	MaxRetryAfter time.Duration
	// PollInterval is the longest the worker sleeps before it looks at the
	// queue again (runs created by other replicas, leases ending); default 1 s.
	PollInterval time.Duration
	// DefaultTimeout is an activity's timeout when its definition has none;
	// default 30 s.
	DefaultTimeout time.Duration
	// MaxAttachmentBytes bounds the attachment content one delivery with
	// includeAttachments carries; default 10 MB.
	MaxAttachmentBytes int64
	// AttachmentBytesInFlight bounds the attachment content all deliveries
	// with includeAttachments hold at once (each its content and its
	// payload, base64, until its requests are sent); default four times
	// MaxAttachmentBytes, and never less than it. A delivery waits for
	// room, at most until its lease's deadline.
	AttachmentBytesInFlight int64
	// UserAgent is sent with every request; default "mailtrigger".
	UserAgent string
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Workers <= 0 {
		o.Workers = 256
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.PerEndpoint <= 0 {
		o.PerEndpoint = DefaultCeiling
	}
	def(&o.Lease, 5*time.Minute)
	def(&o.BackoffBase, 30*time.Second)
	def(&o.BackoffMax, 4*time.Hour)
	def(&o.MaxRetryAfter, 6*time.Hour)
	def(&o.PollInterval, time.Second)
	def(&o.DefaultTimeout, 30*time.Second)
	if o.MaxAttachmentBytes <= 0 {
		o.MaxAttachmentBytes = 10 << 20
	}
	if o.AttachmentBytesInFlight <= 0 {
		o.AttachmentBytesInFlight = 4 * o.MaxAttachmentBytes
	}
	o.AttachmentBytesInFlight = max(o.AttachmentBytesInFlight, o.MaxAttachmentBytes)
	if o.UserAgent == "" {
		o.UserAgent = "mailtrigger"
	}
}

// Deps are what a Worker needs.
type Deps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: metrics are not exported
	// Client sends the webhooks; nil: a client of its own. Redirects are
	// never followed (a POST would turn into a GET), whatever the client
	// says.
	Client *http.Client
	// Dial opens the connections of the client made when Client is nil
	// (the service passes its egress policy's, MAILTRIGGER_EGRESS); nil:
	// http.DefaultTransport's dialer.
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Options Options
}

// Worker delivers runs. Create it with New, start it with Run.
type Worker struct {
	store   *store.Store
	log     *slog.Logger
	client  *http.Client
	opts    Options
	metrics *metrics
	limit   *limiter
	busy    *busyFlows // flows whose endpoint is full: claims leave them out
	// attachments is the room for attachment content in flight
	// (AttachmentBytesInFlight): without it, 64 deliveries to one
	// endpoint with 10 MB of attachments each would hold 1-2 GB.
	attachments *semaphore.Weighted
	wake        chan struct{}
	// For tests: ClaimRuns calls, and runs handed back.
	claims, handBacks atomic.Int64
}

// New returns a Worker.
func New(d Deps) *Worker {
	d.Options.defaults()
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	var c http.Client
	if d.Client != nil {
		c = *d.Client
	} else {
		c.Transport = newTransport(d.Options.PerEndpoint, d.Dial)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Worker{store: d.Store, log: d.Logger, client: &c, opts: d.Options, metrics: newMetrics(d.Registry),
		limit: newLimiter(d.Options.PerEndpoint, nil), busy: newBusyFlows(), wake: make(chan struct{}, 1),
		attachments: semaphore.NewWeighted(d.Options.AttachmentBytesInFlight)}
}

// newTransport is the webhooks' transport: keep-alive connections, as many
// kept idle per endpoint as it may have requests in flight (perEndpoint),
// at most that many open to it, and HTTP/2 where an https endpoint offers
// it (a custom transport gets it only when asked).
func newTransport(perEndpoint int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	egress.Fence(t, dial) // the egress policy's dialer, if any, and then no proxy
	t.MaxIdleConnsPerHost = perEndpoint
	t.MaxConnsPerHost = perEndpoint
	t.MaxIdleConns = max(t.MaxIdleConns, 4*perEndpoint)
	t.ForceAttemptHTTP2 = true
	// A payload is written with its headers in one go from a buffer this
	// size: with the default 4 KB the body of every request larger than
	// that went through net.TCPConn's generic ReadFrom, which allocates a
	// 32 KB buffer for each (a backlog's 10,000 payloads of 40 KB, about
	// 150 MB of garbage; docs/benchmarks.md, session 13), and over TLS it
	// was written in 4 KB records.
	t.WriteBufferSize = 64 << 10
	return t
}

// Notify wakes the worker to look for due runs now (ingest calls it after
// committing runs).
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// depthEvery is how often the queue depth gauge is refreshed.
const depthEvery = 5 * time.Second

// Run delivers due runs until ctx ends, then waits for the deliveries in
// flight to finish or time out and returns. A run it could not record stays
// "delivering" and is claimed again when its lease ends.
func (w *Worker) Run(ctx context.Context) {
	w.log.Info("run worker started", "workers", w.opts.Workers, "per_endpoint_ceiling", w.opts.PerEndpoint)
	// Deliveries outlive ctx: they finish (or time out) and are recorded.
	dctx := context.WithoutCancel(ctx)
	done := make(chan time.Time, w.opts.Workers) // one per finished delivery (non-zero: handed back, due again then); never blocks
	finishing := make(chan finishReq)
	finisherDone := make(chan struct{})
	go func() {
		defer close(finisherDone)
		w.finisher(dctx, finishing)
	}()
	var wg sync.WaitGroup
	// Deliveries run on deliverers, goroutines that take one delivery
	// after another (jobs) rather than one goroutine each: a delivery
	// grows its goroutine's stack (the payload's encoding, the HTTP
	// request), which a new goroutine did again every time, 4-6 % of the
	// service's CPU in a backlog (docs/benchmarks.md, session 13). One
	// is started when none is free, up to Workers; they end with Run.
	jobs := make(chan delivery)
	deliverers := 0
	start := func(d delivery) {
		if deliverers < w.opts.Workers {
			select {
			case jobs <- d:
				return
			default: // none free: one more
			}
			deliverers++
			wg.Go(func() {
				for ok := true; ok; d, ok = <-jobs {
					done <- w.deliver(dctx, d.run, d.deadline, d.batch, finishing)
				}
			})
			return
		}
		// All started: one of them has finished its delivery (fewer
		// than Workers are in flight) and takes this one as soon as it
		// has said so on done, which never blocks.
		jobs <- d
	}
	defer func() {
		close(jobs)
		wg.Wait()
		close(finishing)
		<-finisherDone
		w.log.Info("run worker stopped")
	}()
	inflight, failures := 0, 0
	backlogged := false // the last claim took as many runs as it asked for
	// Of the runs claimed since the last claim: how many were handed back
	// (their endpoint busy) and how many were delivered or attempted. When
	// most of a claim went back, the endpoints are saturated: the next
	// claim waits for attempts to finish and takes about as many runs,
	// rather than claiming and handing back the queue over and over.
	lastClaim, handedBack, finished := 0, 0, 0
	var lastClaimAt time.Time
	// After a short claim (it took every due run it could), the queue has
	// more due runs only when ingest adds some (Notify wakes the loop), a
	// run comes due (the timer), or the claim left out flows whose
	// endpoint was full: a finished delivery may make room for those. It
	// triggers a claim once settle deliveries (half of those in flight)
	// finished, or settleWait after the first one did, so that each claim
	// takes a batch of them rather than the one or two runs the slots
	// just freed fit (a write transaction, on SQLite the one writer,
	// each). The price: against an endpoint holding each answer 200 ms,
	// slots wait for the batch, 284 runs/s instead of 293-298 (a quarter
	// gave 290-292, with a third more claims).
	leftOut, settle := false, 1
	claimAt := time.Now() // claim by then at the latest (the timer)
	woken := true         // Notify or the timer: claim at once
	finish := func(due time.Time) {
		inflight--
		if !due.IsZero() {
			handedBack++
			// The run handed back is due again then: look for it.
			if due.Before(claimAt) {
				claimAt = due
			}
		} else {
			finished++
			if leftOut && !backlogged && finished == 1 {
				claimAt = earliest(claimAt, time.Now().Add(settleWait))
			}
		}
	}
	var depthAt time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil {
	drain:
		for {
			select {
			case due := <-done:
				finish(due)
			default:
				break drain
			}
		}
		free, batch := w.opts.Workers-inflight, max(1, w.opts.Workers/4)
		if backlogged && 2*handedBack > lastClaim && inflight > 0 && time.Since(lastClaimAt) < w.opts.PollInterval {
			// Saturated: claim about as many as finished, in batches
			// of a quarter of those in flight.
			free, batch = min(free, finished), max(1, min(batch, inflight/4))
		}
		claim := false
		switch {
		case free <= 0:
		case backlogged:
			// A backlog: claim when a quarter of the workers are free,
			// so that claims (and the reads of their flows and messages)
			// come in batches rather than one run each. A finished
			// delivery wakes the loop.
			claim = free >= batch
		case woken || !time.Now().Before(claimAt):
			claim = true
		case leftOut:
			claim = finished >= settle
		}
		again := false
		if claim {
			woken = false
			claimedAt := time.Now()
			capped := w.busy.flowCaps(w.limit, free)
			w.claims.Add(1)
			runs, err := w.store.ClaimRunsCapped(ctx, claimedAt, free, w.opts.Lease, capped)
			if err == nil {
				lastClaim, lastClaimAt, handedBack, finished = len(runs), claimedAt, 0, 0
			}
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil:
				failures++
				wait := Jitter(Backoff(failures, w.opts.PollInterval, time.Minute))
				claimAt = time.Now().Add(wait)
				w.log.Warn("claiming due runs failed", "err", err, "retry_in", wait.Round(time.Millisecond))
			default:
				failures = 0
				deadline := claimedAt.Add(w.opts.Lease - w.opts.Lease/10)
				b := w.prepare(dctx, runs) // read by the deliveries, which outlive ctx
				for _, r := range runs {
					inflight++
					start(delivery{run: r, deadline: deadline, batch: b})
				}
				backlogged = len(runs) == free
				leftOut, settle = cappedOut(capped, runs), max(1, inflight/2)
				if backlogged {
					// More may be due; claim again as soon as slots free.
					again, claimAt = true, time.Now().Add(w.opts.PollInterval)
				} else {
					wait := w.untilDue(ctx)
					if leftOut {
						// The runs left out are due already: a
						// finished delivery makes room for them.
						wait = max(wait, settleWait)
					}
					claimAt = time.Now().Add(wait)
				}
			}
		}
		if time.Since(depthAt) >= depthEvery {
			depthAt = time.Now()
			if n, err := w.store.QueueDepth(ctx); err == nil {
				w.metrics.depth.Set(float64(n))
			}
		}
		if again && inflight < w.opts.Workers {
			continue
		}
		wait := time.Until(claimAt)
		if wait <= 0 {
			// Due, but no worker is free or the backlog waits for a
			// batch of them: a finished delivery wakes the loop.
			wait = w.opts.PollInterval
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case due := <-done:
			finish(due)
		case <-w.wake:
			if leftOut && !backlogged {
				// An endpoint is saturated: new runs are likely
				// its; claim them with the next batch.
				claimAt = earliest(claimAt, time.Now().Add(settleWait))
			} else {
				woken = true
			}
		case <-timer.C:
			woken = true
		}
	}
}

// delivery is a run for a deliverer to deliver (see Run).
type delivery struct {
	run      store.Run
	deadline time.Time
	batch    *batch
}

// cappedOut reports whether runs, claimed with caps, took as many runs of
// some capped flow as its cap: the queue may hold more of them.
func cappedOut(caps []store.FlowCap, runs []store.Run) bool {
	for _, c := range caps {
		n := 0
		for _, r := range runs {
			if r.FlowID == c.FlowID {
				n++
			}
		}
		if n >= c.Max {
			return true
		}
	}
	return false
}

// settleWait is the longest a finished delivery waits for others to finish
// before it triggers a claim for the flows the last claim left out.
const settleWait = 50 * time.Millisecond

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// minWait keeps a due run that another worker holds locked for a moment
// from turning the loop into a spin.
const minWait = 20 * time.Millisecond

// untilDue returns how long to sleep until the next run is due, at most
// PollInterval.
func (w *Worker) untilDue(ctx context.Context) time.Duration {
	t, ok, err := w.store.NextDue(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("reading the next due run failed", "err", err)
		}
		return w.opts.PollInterval
	}
	if !ok {
		return w.opts.PollInterval
	}
	return min(max(time.Until(t), minWait), w.opts.PollInterval)
}

// outcome is the result of one delivery attempt.
type outcome struct {
	code     int    // the last response's status code, 0 when none came
	err      string // "" when every activity took the delivery
	response string // the first KB of the last response body
	retry    bool   // the failure may pass: retry later
	// after is the wait a Retry-After asked for, when hasAfter.
	after    time.Duration
	hasAfter bool
	// busy names the first activity's endpoint when it had no free slot:
	// nothing was sent, and the run goes back to the queue without an
	// attempt, at the earliest at busyUntil; busyCaps are the activity's.
	busy      string
	busyUntil time.Time
	busyCaps  caps
	// sig is what the answer says about the endpoint's load.
	sig signal
}

func failed(format string, args ...any) outcome {
	return outcome{err: fmt.Sprintf(format, args...)}
}

func transient(format string, args ...any) outcome {
	return outcome{err: fmt.Sprintf(format, args...), retry: true}
}

// finish hands req to the finisher and waits until it is committed, or
// until ctx ends.
func finish(ctx context.Context, finishing chan<- finishReq, req finishReq) error {
	req.err = make(chan error, 1)
	select {
	case finishing <- req:
		select {
		case err := <-req.err:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deliver makes one attempt at run r, cut off at deadline, with its flow
// and message from b, and has the finisher record it. When the run was
// handed back to the queue unattempted (its endpoint busy), it returns when
// the run is due again; else the zero time.
func (w *Worker) deliver(ctx context.Context, r store.Run, deadline time.Time, b *batch, finishing chan<- finishReq) (handedBack time.Time) {
	log := w.log.With("run_id", r.PublicID, "flow", r.FlowName)
	n := r.Attempts + 1
	start := time.Now()
	actx, cancel := context.WithDeadline(ctx, deadline)
	out := w.attempt(actx, r, n, b)
	cancel()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out.busy != "" {
		// Waiting here would hold a worker that runs to other endpoints
		// could use: hand the run back until the endpoint may have room.
		next := w.limit.park(out.busy, out.busyCaps, time.Now(), out.busyUntil, parkFallback)
		w.busy.add(r.FlowID, out.busy, out.busyCaps)
		w.handBacks.Add(1)
		err := finish(fctx, finishing, finishReq{release: true, f: store.Finish{RunID: r.ID, Next: next}})
		if err != nil {
			log.Error("handing back a run failed; it is taken up again when its lease ends", "err", err)
		}
		return next
	}
	a := store.Attempt{StartedAt: start, Duration: time.Since(start), StatusCode: out.code, Error: out.err, Response: out.response}

	status, next := store.RunDelivered, time.Now()
	switch {
	case out.err == "":
	case !out.retry:
		status = store.RunFailed
	case n >= w.opts.MaxAttempts:
		status = store.RunFailed
		a.Error += fmt.Sprintf(" (giving up after %d attempts)", n)
	default:
		status = store.RunRetrying
		wait := Jitter(Backoff(n, w.opts.BackoffBase, w.opts.BackoffMax))
		if out.hasAfter {
			wait = min(out.after, w.opts.MaxRetryAfter)
		}
		next = next.Add(wait)
	}

	err := finish(fctx, finishing, finishReq{f: store.Finish{RunID: r.ID, Attempt: a, Status: status, Next: next}})
	if err != nil {
		log.Error("recording a delivery attempt failed; the run is taken up again when its lease ends",
			"attempt", n, "status_code", out.code, "err", err)
		return time.Time{}
	}
	w.metrics.attempts.WithLabelValues(r.FlowName, result(out)).Inc()
	switch status {
	case store.RunDelivered:
		w.metrics.runs.WithLabelValues(r.FlowName, status).Inc()
		w.metrics.trigger.Observe(time.Since(r.ReceivedAt).Seconds())
		log.Info("run delivered", "attempt", n, "status_code", out.code, "duration", a.Duration.Round(time.Millisecond))
	case store.RunFailed:
		w.metrics.runs.WithLabelValues(r.FlowName, status).Inc()
		log.Warn("run failed", "attempt", n, "status_code", out.code, "err", a.Error)
	default:
		log.Info("delivery attempt failed; retrying", "attempt", n, "status_code", out.code, "err", a.Error,
			"next_attempt_at", next.UTC().Format(time.RFC3339))
	}
	return time.Time{}
}

// attempt delivers run r (attempt n) to every activity of its flow in turn,
// stopping at the first that does not take it.
func (w *Worker) attempt(ctx context.Context, r store.Run, n int, b *batch) outcome {
	f, err := b.flow(r.FlowID)
	if errors.Is(err, store.ErrNotFound) {
		return failed("flow %q was deleted after this run was created; there is nothing to deliver to", r.FlowName)
	}
	if err != nil {
		return transient("reading flow %s: %v", r.FlowName, err)
	}
	// The one reader of definitions, with the rules the API and the UI
	// apply: a definition they would refuse fails the run for good, saying
	// which field is wrong. Header values, sealed apart from the definition
	// that names them, come with it.
	fl, err := b.opened(r.FlowID)
	if err != nil {
		return failed("flow %s: %v", f.Name, err)
	}
	acts := activities(fl, w.opts.DefaultTimeout)
	w.busy.seenFlow(r.FlowID, acts[0].endpoint, acts[0].caps())
	// The first endpoint busy: wait a little for it when its requests are
	// quick, else give the run back rather than hold a worker.
	first, until, ok := w.limit.tryAcquire(acts[0].endpoint, acts[0].caps())
	if !ok {
		first, ok = w.limit.acquireQuick(ctx, acts[0].endpoint, acts[0].caps(), maxBusyWait)
	}
	if !ok {
		return outcome{busy: acts[0].endpoint, busyUntil: until, busyCaps: acts[0].caps()}
	}
	defer func() {
		if first != nil {
			first(answer{})
		}
	}()
	m, err := b.message(r.MessageID)
	if errors.Is(err, store.ErrNotFound) {
		return failed("message %d of this run is no longer stored", r.MessageID)
	}
	if err != nil {
		return transient("reading message %d: %v", r.MessageID, err)
	}
	p := w.buildPayload(r, n, m)
	var plain, full []byte
	var out outcome
	for i, act := range acts {
		prefix := ""
		if len(acts) > 1 {
			prefix = fmt.Sprintf("activity %d: ", i+1)
		}
		secret := ""
		if i < len(f.Secrets) {
			secret = f.Secrets[i]
		}
		if _, err := secretKey(secret); err != nil {
			return failed("%sthe activity has no valid signing secret; save the flow with a secret (or none, to have one generated)", prefix)
		}
		body := &plain
		if act.IncludeAttachments {
			body = &full
		}
		if *body == nil {
			q := p
			if act.IncludeAttachments {
				// Room for the content first, held until the attempt
				// ends: the body is kept for the later activities.
				if need := contentBytes(m, w.opts.MaxAttachmentBytes); need > 0 {
					if err := w.attachments.Acquire(ctx, need); err != nil {
						return transient("%snot sent: no room for %d bytes of attachment content (deliveries hold at most %d at once) until this attempt's time ran out",
							prefix, need, w.opts.AttachmentBytesInFlight)
					}
					defer w.attachments.Release(need)
				}
				if q, err = w.withContent(ctx, p, m, w.opts.MaxAttachmentBytes); err != nil {
					return transient("reading attachments of message %d: %v", m.ID, err)
				}
			}
			if *body, err = encode(q); err != nil {
				return failed("encoding the payload: %v", err)
			}
		}
		// Later endpoints are waited for: the earlier activities took
		// the delivery already.
		release := first
		first = nil
		if i > 0 {
			if release, err = w.limit.acquire(ctx, act.endpoint, act.caps()); err != nil {
				return transient("%snot sent: %s had no room (its concurrency limit, rate or Retry-After) until this attempt's time ran out",
					prefix, act.endpoint)
			}
		}
		// The first endpoint's slot was taken at the claim, before the
		// message was read: a Retry-After that came from the endpoint
		// meanwhile is waited out here, so that no request goes to it
		// before then.
		if err := w.limit.waitHold(ctx, act.endpoint); err != nil {
			release(answer{})
			return transient("%snot sent: %s asked to wait (Retry-After) past this attempt's time", prefix, act.endpoint)
		}
		sent := time.Now()
		out = w.post(ctx, r.PublicID, act, secret, *body)
		res := answer{took: max(time.Since(sent), time.Nanosecond), sig: out.sig}
		if out.hasAfter {
			res.hold = time.Now().Add(min(out.after, w.opts.MaxRetryAfter))
		}
		release(res)
		w.metrics.limit.WithLabelValues(act.endpoint).Set(float64(w.limit.limitOf(act.endpoint)))
		if out.err != "" {
			out.err = prefix + out.err
			return out
		}
	}
	return out
}

// responseExcerpt is how much of a response body an attempt records.
const responseExcerpt = 1024

// post sends body to one activity and classifies the answer. The caller
// holds a slot of the activity's endpoint.
func (w *Worker) post(ctx context.Context, runID string, act activity, secret string, body []byte) outcome {
	timeout := act.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), 0)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, act.URL, bytes.NewReader(body))
	if err != nil {
		return failed("the activity's url cannot be requested: %v", err)
	}
	for k, v := range act.Headers {
		if !isReserved(k) {
			req.Header.Set(k, v)
		}
	}
	ts := time.Now()
	sig, err := Sign(secret, runID, ts, body)
	if err != nil {
		return failed("signing: %v", err)
	}
	req.Header.Set(HeaderID, runID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	req.Header.Set("Idempotency-Key", runID)
	req.Header.Set("Content-Type", "application/json")
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", w.opts.UserAgent)
	}

	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		w.metrics.latency.Observe(time.Since(start).Seconds())
		if egress.IsDenied(err) {
			// The egress policy refuses the endpoint's address: no
			// retry can pass until the settings change.
			return failed("%s", describe(err, act.endpoint, timeout))
		}
		out := transient("%s", describe(err, act.endpoint, timeout))
		out.sig = signalOverload // a timeout or a connection error
		return out
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, responseExcerpt))
	// Read a little more so the connection can be reused; the timeout
	// bounds a server that keeps sending.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	w.metrics.latency.Observe(time.Since(start).Seconds())

	out := outcome{code: resp.StatusCode, response: string(excerpt), sig: signalOf(resp.StatusCode)}
	code := resp.StatusCode
	status := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	switch {
	case code >= 200 && code < 300:
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		out.err, out.retry = status, true
		if d, ok := RetryAfter(resp.Header, time.Now()); ok {
			out.after, out.hasAfter = d, true
			out.err += fmt.Sprintf(" (Retry-After %s)", d.Round(time.Second))
		}
	case code == http.StatusRequestTimeout || code >= 500:
		out.err, out.retry = status, true
	case code >= 300 && code < 400:
		out.err = status + ": redirects are not followed; point the activity at the final URL"
		if loc := resp.Header.Get("Location"); loc != "" {
			out.err = status + " to " + loc + ": redirects are not followed; point the activity at the final URL"
		}
	default:
		out.err = status
	}
	return out
}

// signalOf is what a status code says about the endpoint's load.
func signalOf(code int) signal {
	switch {
	case code >= 200 && code < 300:
		return signalOK
	case code == http.StatusTooManyRequests, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		return signalOverload
	}
	return signalNeutral
}

// parkFallback is a busy endpoint's request time in handing back its runs
// before any of its requests finished.
const parkFallback = 100 * time.Millisecond

// describe says why a request got no response, naming only the endpoint (a
// URL's path and query may carry a token).
func describe(err error, endpoint string, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Sprintf("POST %s: no response within %s", endpoint, timeout.Round(time.Millisecond))
	}
	return fmt.Sprintf("POST %s: %v", endpoint, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// result names an attempt's outcome for the attempts counter.
func result(o outcome) string {
	switch {
	case o.code == 0 && o.err != "":
		return "error"
	case o.code >= 200 && o.code < 300:
		return "2xx"
	case o.code >= 300 && o.code < 400:
		return "3xx"
	case o.code >= 400 && o.code < 500:
		return "4xx"
	case o.code >= 500:
		return "5xx"
	}
	return "error"
}

// batch is what the runs claimed together need: their flows and messages,
// read once for all of them instead of once per run.
type batch struct {
	load     func() // reads what follows, once; each accessor calls it first
	flows    map[int64]store.FlowRecord
	flowErrs map[int64]error
	// open are the flows read (flow.Open) once for the batch's runs,
	// rather than once per run; openErrs what refused them.
	open     map[int64]flow.Flow
	openErrs map[int64]error
	msgs     map[int64]store.StoredMessage
	msgErr   error
}

// prepare returns the batch of runs, whose flows and messages the first of
// its deliveries to need them reads (load): the claim loop goes on to the
// next claim meanwhile, rather than wait for the reads, a round trip or
// more each with a database across a network.
func (w *Worker) prepare(ctx context.Context, runs []store.Run) *batch {
	b := &batch{}
	b.load = sync.OnceFunc(func() { w.read(ctx, b, runs) })
	return b
}

// read reads the flows and messages of runs into b.
func (w *Worker) read(ctx context.Context, b *batch, runs []store.Run) {
	b.flows, b.flowErrs = map[int64]store.FlowRecord{}, map[int64]error{}
	b.open, b.openErrs = map[int64]flow.Flow{}, map[int64]error{}
	ids := make([]int64, 0, len(runs))
	for _, r := range runs {
		ids = append(ids, r.MessageID)
		if _, ok := b.flows[r.FlowID]; ok {
			continue
		}
		if _, ok := b.flowErrs[r.FlowID]; ok {
			continue
		}
		if f, err := w.store.GetFlowByID(ctx, r.FlowID); err != nil {
			b.flowErrs[r.FlowID] = err
		} else {
			b.flows[r.FlowID] = f
			if fl, err := flow.Open(f); err != nil {
				b.openErrs[r.FlowID] = err
			} else {
				b.open[r.FlowID] = fl
			}
		}
	}
	b.msgs, b.msgErr = w.store.GetMessages(ctx, ids)
}

func (b *batch) flow(id int64) (store.FlowRecord, error) {
	b.load()
	if err := b.flowErrs[id]; err != nil {
		return store.FlowRecord{}, err
	}
	return b.flows[id], nil
}

// opened is flow id as flow.Open read it, or why it refused it.
func (b *batch) opened(id int64) (flow.Flow, error) {
	b.load()
	if err := b.openErrs[id]; err != nil {
		return flow.Flow{}, err
	}
	return b.open[id], nil
}

func (b *batch) message(id int64) (store.StoredMessage, error) {
	b.load()
	if b.msgErr != nil {
		return store.StoredMessage{}, b.msgErr
	}
	m, ok := b.msgs[id]
	if !ok {
		return m, fmt.Errorf("message %d: %w", id, store.ErrNotFound)
	}
	return m, nil
}

// finishReq asks the finisher to record one attempt, or (release) to hand
// run f.RunID back to the queue, due at f.Next; err gets the result.
type finishReq struct {
	f       store.Finish
	release bool
	err     chan error
}

// maxFinishBatch bounds the attempts one transaction records.
const maxFinishBatch = 256

// finisher records the attempts sent to it until reqs is closed, those that
// arrive together in one transaction (a group commit): with many deliveries
// finishing at once, one commit serves them all; the runs handed back to
// the queue likewise, in a second. When a batch fails, each
// of its attempts is recorded on its own, so that one bad row does not fail
// the others.
func (w *Worker) finisher(ctx context.Context, reqs <-chan finishReq) {
	for req := range reqs {
		group := []finishReq{req}
	more:
		for len(group) < maxFinishBatch {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more
				}
				group = append(group, r)
			default:
				break more
			}
		}
		var finishes, releases []finishReq
		for _, r := range group {
			if r.release {
				releases = append(releases, r)
			} else {
				finishes = append(finishes, r)
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		w.commit(fctx, finishes, func(ctx context.Context, rs []finishReq) error {
			fs := make([]store.Finish, len(rs))
			for i, r := range rs {
				fs[i] = r.f
			}
			return w.store.FinishAttempts(ctx, fs)
		})
		w.commit(fctx, releases, func(ctx context.Context, rs []finishReq) error {
			ls := make([]store.Release, len(rs))
			for i, r := range rs {
				ls[i] = store.Release{RunID: r.f.RunID, Next: r.f.Next}
			}
			return w.store.ReleaseRuns(ctx, ls)
		})
		cancel()
	}
}

// commit writes group with write in one transaction and tells each request
// the result; when that fails, each is written on its own, so that one bad
// row does not fail the others.
func (w *Worker) commit(ctx context.Context, group []finishReq, write func(context.Context, []finishReq) error) {
	if len(group) == 0 {
		return
	}
	err := write(ctx, group)
	if err != nil && len(group) > 1 {
		for _, r := range group {
			r.err <- write(ctx, []finishReq{r})
		}
		return
	}
	for _, r := range group {
		r.err <- err
	}
}
