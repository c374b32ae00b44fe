package alert

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wneessen/go-mail"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
)

// SMTPConfig is the mail server alert e-mails go through.
type SMTPConfig struct {
	Host     string
	Port     int // default 587 (465 with TLS "tls")
	Username string
	Password string // a secret: never logged, never in an error
	From     string
	TLS      string // "starttls" (default), "tls" or "none"
	// AllowedDomains, when not empty, are the only domains (lower case)
	// alert e-mails may be sent to; a subscription with another recipient
	// fails its deliveries, naming it.
	AllowedDomains []string
}

// allowed reports whether address may receive alert e-mails under c.
func (c *SMTPConfig) allowed(address string) bool {
	if len(c.AllowedDomains) == 0 {
		return true
	}
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return false
	}
	domain := strings.ToLower(strings.TrimSuffix(address[at+1:], ">"))
	return slices.Contains(c.AllowedDomains, domain)
}

// SMTP TLS modes.
const (
	SMTPStartTLS = "starttls"
	SMTPTLS      = "tls"
	SMTPNone     = "none"
)

// ErrSMTPNotConfigured fails the delivery of an email subscription when no
// mail server is set.
var ErrSMTPNotConfigured = errors.New("SMTP is not configured (MAILTRIGGER_SMTP_HOST)")

// SenderOptions tune the Sender. Zero values take the defaults.
type SenderOptions struct {
	// MaxAttempts is how many attempts a delivery gets before it fails;
	// default 12.
	MaxAttempts int
	// BackoffBase is the wait after the first failed attempt (default
	// 30 s, as runs: MAILTRIGGER_RETRY_BASE); each next wait is three times
	// longer, capped at BackoffMax (default 1 h), each spread by ±25 %.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Rate is how many deliveries one subscription gets per minute at most
	// (MAILTRIGGER_ALERT_RATE); default 30. The rest wait in the queue.
	Rate int
	// Timeout bounds one attempt (a webhook request or an e-mail);
	// default 30 s.
	Timeout time.Duration
	// Lease is how long a claimed delivery belongs to this sender; default
	// 2 min. A delivery whose sender died is claimed again after it. An
	// attempt is cut off at nine tenths of it when Timeout is longer.
	Lease time.Duration
	// Workers bounds the deliveries in flight; default 8.
	Workers int
	// PollInterval is the longest the sender sleeps before it looks at the
	// queue again (alerts queued by other replicas); default 1 s.
	PollInterval time.Duration
	// UserAgent is sent with every webhook; default "mailtrigger".
	UserAgent string
}

func (o *SenderOptions) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.Rate <= 0 {
		o.Rate = 30
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	def(&o.BackoffBase, 30*time.Second)
	def(&o.BackoffMax, time.Hour)
	def(&o.Timeout, 30*time.Second)
	def(&o.Lease, 2*time.Minute)
	def(&o.PollInterval, time.Second)
	if o.Timeout > o.Lease-o.Lease/10 {
		// The attempt ends within the lease, as a run's does: a short
		// lease (MAILTRIGGER_RUN_LEASE) shortens the attempt rather than
		// leave a delivery a dead sender held waiting longer than asked.
		o.Timeout = o.Lease - o.Lease/10
	}
	if o.UserAgent == "" {
		o.UserAgent = "mailtrigger"
	}
}

// SenderDeps are what a Sender needs.
type SenderDeps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: metrics are not exported
	// Dial opens the webhooks' connections (the egress policy's dialer,
	// as the run worker's); nil: the default dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// SMTP is the mail server of email subscriptions; nil: their
	// deliveries fail with ErrSMTPNotConfigured.
	SMTP *SMTPConfig
	// BaseURL (https://mailtrigger.example.com) makes the payload link to
	// the object in the UI; "": no link.
	BaseURL string
	Options SenderOptions
}

// Sender delivers the queued alerts: it claims due deliveries with a lease
// (so that each is sent by one replica, and taken up again after a
// crash), posts signed webhooks or sends e-mails, records each attempt,
// and retries with backoff. Create it with NewSender, start it with Run.
type Sender struct {
	store   *store.Store
	log     *slog.Logger
	client  *http.Client
	smtp    *SMTPConfig
	base    string
	opts    SenderOptions
	limit   *rateLimit
	metrics *prometheus.CounterVec // attempts by kind and result
	delayed prometheus.Counter     // deliveries put back by the rate limit
	wake    chan struct{}
	done    chan struct{} // a delivery finished: a worker is free
}

// NewSender returns a Sender.
func NewSender(d SenderDeps) *Sender {
	d.Options.defaults()
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	egress.Fence(t, d.Dial)
	t.MaxIdleConnsPerHost = 2
	client := &http.Client{Transport: t,
		// A redirect is never followed: a POST would turn into a GET,
		// and the signed body would go where nobody configured it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	m := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtrigger_alert_deliveries_total",
		Help: "Alert delivery attempts by kind (webhook, email) and result (delivered, retrying, failed)."},
		[]string{"kind", "result"})
	delayed := prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtrigger_alert_deliveries_delayed_total",
		Help: "Alert deliveries put back in the queue by their subscription's rate limit (MAILTRIGGER_ALERT_RATE)."})
	if d.Registry != nil {
		d.Registry.MustRegister(m, delayed)
	}
	var smtp *SMTPConfig
	if d.SMTP != nil && d.SMTP.Host != "" {
		c := *d.SMTP
		smtp = &c
	}
	return &Sender{store: d.Store, log: d.Logger, client: client, smtp: smtp, base: strings.TrimRight(d.BaseURL, "/"),
		opts: d.Options, limit: newRateLimit(d.Options.Rate, time.Minute), metrics: m, delayed: delayed,
		wake: make(chan struct{}, 1), done: make(chan struct{}, d.Options.Workers)}
}

// Notify wakes the sender to look for due deliveries now (call it after
// queueing alerts).
func (s *Sender) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// recoverEvery is how often the sender claims even when nothing is due, so
// that deliveries whose lease ran out (their sender died) are taken up.
const recoverEvery = 15 * time.Second

// Run delivers alerts until ctx ends, then waits for the deliveries in
// flight (each bounded by the timeout).
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := 0
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		wait := s.opts.PollInterval
		if free := s.opts.Workers - busy; free > 0 {
			now := time.Now()
			due, ok, err := s.store.NextAlertDue(ctx)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					s.log.Error("reading the alert queue", "err", err)
				}
			case (ok && !due.After(now)) || now.Sub(lastClaim) >= min(recoverEvery, s.opts.Lease/2):
				lastClaim = now
				ds, err := s.store.ClaimAlertDeliveries(ctx, now, free, s.opts.Lease)
				if err != nil {
					if ctx.Err() == nil {
						s.log.Error("claiming alert deliveries", "err", err)
					}
					break
				}
				for _, d := range ds {
					if !s.allow(ctx, d, now) {
						continue
					}
					busy++
					wg.Go(func() {
						s.deliver(ctx, d)
						s.done <- struct{}{}
					})
				}
				if len(ds) == free {
					wait = 0 // more may be due
				}
			case ok:
				wait = min(wait, due.Sub(now))
			}
		}
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-s.wake:
			case <-timer.C:
			case <-s.done:
				busy--
			}
			timer.Stop()
		}
		for drained := false; !drained; {
			select {
			case <-s.done:
				busy--
			default:
				drained = true
			}
		}
	}
}

// allow takes a place in d's subscription's rate; over it, d goes back to
// the queue, due when the subscription has room again.
func (s *Sender) allow(ctx context.Context, d store.AlertDelivery, now time.Time) bool {
	ok, next := s.limit.take(d.SubscriptionID, now)
	if ok {
		return true
	}
	s.delayed.Inc()
	if err := s.store.ReleaseAlertDelivery(ctx, d.ID, next); err != nil {
		s.logger(d).Error("handing back a rate-limited alert delivery failed; it is taken up again when its lease ends", "err", err)
		return false
	}
	s.logger(d).Info("alert delivery delayed: the subscription's rate limit is reached",
		"rate_per_minute", s.opts.Rate, "next_attempt_at", next.UTC().Format(time.RFC3339))
	return false
}

func (s *Sender) logger(d store.AlertDelivery) *slog.Logger {
	return s.log.With("delivery", d.PublicID, "subscription", d.Subscription, "event", d.Event.Type)
}

// outcome is what one attempt came to.
type outcome struct {
	code     int
	err      string // "" on success
	retry    bool
	after    time.Duration // Retry-After, when hasAfter
	hasAfter bool
	response string
}

// deliver makes one attempt at d and records it.
func (s *Sender) deliver(ctx context.Context, d store.AlertDelivery) {
	log := s.logger(d)
	n := d.Attempts + 1
	start := time.Now()
	kind := ""
	var out outcome
	sub, err := s.store.GetAlertByID(ctx, d.SubscriptionID)
	kind = sub.Kind
	switch {
	case errors.Is(err, store.ErrNotFound):
		return // deleted, and its deliveries with it
	case errors.As(err, new(*store.SecretError)):
		out = outcome{err: "the subscription's signing secret does not open (wrong MAILTRIGGER_SECRET_KEY?)"}
	case err != nil:
		if ctx.Err() == nil {
			log.Error("reading the alert subscription; the delivery is taken up again when its lease ends", "err", err)
		}
		return
	default:
		p := s.payload(d, n)
		actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		switch sub.Kind {
		case store.AlertWebhook:
			out = s.post(actx, sub, d, p)
		case store.AlertEmail:
			out = s.mail(actx, sub, d, p)
		default:
			out = outcome{err: fmt.Sprintf("unknown subscription kind %q", sub.Kind)}
		}
		cancel()
	}
	if ctx.Err() != nil && out.err != "" {
		return // shutting down: the attempt did not finish; taken up again later
	}
	a := store.Attempt{StartedAt: start, Duration: time.Since(start), StatusCode: out.code, Error: out.err, Response: out.response}
	status, next := store.RunDelivered, time.Now()
	switch {
	case out.err == "":
	case !out.retry:
		status = store.RunFailed
	case n >= s.opts.MaxAttempts:
		status = store.RunFailed
		a.Error += fmt.Sprintf(" (giving up after %d attempts)", n)
	default:
		status = store.RunRetrying
		wait := run.Jitter(run.Backoff(n, s.opts.BackoffBase, s.opts.BackoffMax))
		if out.hasAfter {
			wait = min(out.after, s.opts.BackoffMax)
		}
		next = next.Add(wait)
	}
	// Recorded even when ctx ended meanwhile (a delivered alert must not
	// be sent again).
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.store.FinishAlertAttempt(fctx, d.ID, a, status, next); err != nil {
		log.Error("recording an alert delivery attempt failed; the delivery is taken up again when its lease ends",
			"attempt", n, "err", err)
		return
	}
	s.metrics.WithLabelValues(kind, status).Inc()
	switch status {
	case store.RunDelivered:
		log.Info("alert delivered", "kind", kind, "attempt", n, "status_code", out.code, "duration", a.Duration.Round(time.Millisecond))
	case store.RunFailed:
		log.Warn("alert delivery failed", "kind", kind, "attempt", n, "status_code", out.code, "err", a.Error)
	default:
		log.Info("alert delivery attempt failed; retrying", "kind", kind, "attempt", n, "status_code", out.code,
			"err", a.Error, "next_attempt_at", next.UTC().Format(time.RFC3339))
	}
}

// payload is what delivery d (attempt n) sends.
func (s *Sender) payload(d store.AlertDelivery, n int) Payload {
	ev := d.Event
	p := Payload{Version: PayloadVersion, Type: ev.Type, ID: ev.ID, Test: ev.Test, OccurredAt: ev.OccurredAt.UTC(),
		Object:   Object{Kind: ev.ObjectKind, Name: ev.ObjectName, URL: s.objectURL(ev)},
		Previous: ev.Previous, Current: ev.Current, Error: ev.Error, Details: ev.Details,
		Delivery: Delivery{ID: d.PublicID, Subscription: d.Subscription, Attempt: n}}
	if !ev.Since.IsZero() {
		since := ev.Since.UTC()
		p.Since = &since
	}
	return p
}

// objectURL links ev's object in the UI ("" without a base URL).
func (s *Sender) objectURL(ev store.AlertEvent) string {
	if s.base == "" {
		return ""
	}
	switch ev.ObjectKind {
	case "mailbox":
		return s.base + "/imap/" + url.PathEscape(ev.ObjectName)
	case "run":
		return s.base + "/runs/" + url.PathEscape(ev.ObjectName)
	case "runs":
		return s.base + "/runs?status=" + store.RunPending
	case "replica", "alert":
		return s.base + "/settings"
	}
	return ""
}

// responseExcerpt is how much of a response body an attempt records.
const responseExcerpt = 1024

// post sends p to the webhook of sub, signed.
func (s *Sender) post(ctx context.Context, sub store.AlertSubscription, d store.AlertDelivery, p Payload) outcome {
	body, err := json.Marshal(p)
	if err != nil {
		return outcome{err: fmt.Sprintf("encoding the payload: %v", err)}
	}
	u, err := url.Parse(sub.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return outcome{err: "the subscription's url is not an http(s) URL"}
	}
	endpoint := u.Scheme + "://" + u.Host // no path nor query: they may hold a token
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{err: "the subscription's url cannot be requested"}
	}
	ts := time.Now()
	sig, err := run.Sign(sub.Secret, d.PublicID, ts, body)
	if err != nil {
		return outcome{err: "signing: " + err.Error()}
	}
	req.Header.Set(run.HeaderID, d.PublicID)
	req.Header.Set(run.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(run.HeaderSignature, sig)
	req.Header.Set("Idempotency-Key", d.PublicID)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.opts.UserAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the URL, which may hold a token
		}
		if egress.IsDenied(err) {
			return outcome{err: fmt.Sprintf("POST %s: %v", endpoint, err)}
		}
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return outcome{err: fmt.Sprintf("POST %s: no response within %s", endpoint, s.opts.Timeout), retry: true}
		}
		return outcome{err: fmt.Sprintf("POST %s: %v", endpoint, err), retry: true}
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, responseExcerpt))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	out := outcome{code: code, response: string(excerpt)}
	status := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	switch {
	case code >= 200 && code < 300:
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		out.err, out.retry = status, true
		if d, ok := run.RetryAfter(resp.Header, time.Now()); ok {
			out.after, out.hasAfter = d, true
			out.err += fmt.Sprintf(" (Retry-After %s)", d.Round(time.Second))
		}
	case code == http.StatusRequestTimeout || code >= 500:
		out.err, out.retry = status, true
	case code >= 300 && code < 400:
		out.err = status + ": redirects are not followed; point the subscription at the final URL"
	default:
		out.err = status
	}
	return out
}

// mail sends p by e-mail to sub's recipients.
func (s *Sender) mail(ctx context.Context, sub store.AlertSubscription, d store.AlertDelivery, p Payload) outcome {
	c := s.smtp
	if c == nil {
		return outcome{err: ErrSMTPNotConfigured.Error()}
	}
	if len(sub.To) == 0 {
		return outcome{err: "the subscription has no recipients"}
	}
	for i, to := range sub.To {
		if !c.allowed(to) {
			return outcome{err: fmt.Sprintf("to[%d] %s is not in a domain alert e-mails may go to (MAILTRIGGER_SMTP_ALLOWED_DOMAINS): nothing was sent", i, to)}
		}
	}
	m := mail.NewMsg()
	if err := m.From(c.From); err != nil {
		return outcome{err: fmt.Sprintf("the sender address (MAILTRIGGER_SMTP_FROM): %v", err)}
	}
	if err := m.To(sub.To...); err != nil {
		return outcome{err: fmt.Sprintf("the recipients: %v", err)}
	}
	m.Subject(Subject(p))
	// The same Message-ID on every attempt, so that a receiver can tell
	// a retry from a new alert.
	m.SetMessageIDWithValue(d.PublicID + "@mailtrigger")
	m.SetDate()
	m.SetBulk() // no out-of-office replies to the alert sender
	m.SetGenHeader("X-Mailtrigger-Delivery", d.PublicID)
	m.SetGenHeader("X-Mailtrigger-Event", p.Type)
	m.SetBodyString(mail.TypeTextPlain, Text(p))

	port := c.Port
	if port == 0 {
		port = 587
		if c.TLS == SMTPTLS {
			port = 465
		}
	}
	opts := []mail.Option{mail.WithPort(port), mail.WithTimeout(s.opts.Timeout)}
	switch c.TLS {
	case SMTPTLS:
		opts = append(opts, mail.WithSSL())
	case SMTPNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if c.Username != "" {
		auth := mail.SMTPAuthAutoDiscover
		if c.TLS == SMTPNone {
			auth = mail.SMTPAuthPlainNoEnc // "none" is for a server on loopback only
		}
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(c.Username), mail.WithPassword(c.Password))
	}
	// go-mail leaves the connection open when the greeting, STARTTLS or
	// the login fails: connections are dialled here and closed after the
	// attempt, whatever happened. (With implicit TLS go-mail dials itself,
	// or it would not know the connection is encrypted.)
	var conns connSet
	defer conns.closeAll()
	if c.TLS != SMTPTLS {
		opts = append(opts, mail.WithDialContextFunc(conns.dial))
	}
	client, err := mail.NewClient(c.Host, opts...)
	if err != nil {
		return outcome{err: "SMTP " + c.Host + ": " + s.redact(err)}
	}
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		// A 5xx reply refuses this message for good; anything else (no
		// connection, a 4xx) may pass later.
		var se *mail.SendError
		retry := !(errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500)
		return outcome{err: fmt.Sprintf("SMTP %s:%d: %s", c.Host, port, s.redact(err)), retry: retry}
	}
	return outcome{}
}

// connSet dials connections and closes them all at the end.
type connSet struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (cs *connSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	cs.conns = append(cs.conns, c)
	cs.mu.Unlock()
	return c, nil
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.conns {
		c.Close() // closed already when the attempt ended well
	}
}

// redact is err's text without the SMTP password (nor the forms an
// authentication exchange carries it in).
func (s *Sender) redact(err error) string {
	msg := err.Error()
	if s.smtp == nil || s.smtp.Password == "" {
		return msg
	}
	pw := s.smtp.Password
	for _, v := range []string{
		base64.StdEncoding.EncodeToString([]byte("\x00" + s.smtp.Username + "\x00" + pw)),
		base64.StdEncoding.EncodeToString([]byte(s.smtp.Username + "\x00" + s.smtp.Username + "\x00" + pw)),
		base64.StdEncoding.EncodeToString([]byte(pw)),
		pw,
	} {
		msg = strings.ReplaceAll(msg, v, "[redacted]")
	}
	return msg
}

// Subject is the subject line of an alert e-mail.
func Subject(p Payload) string {
	var b strings.Builder
	b.WriteString("[mailtrigger] ")
	if p.Test {
		b.WriteString("Test: ")
	}
	b.WriteString(p.Type)
	if p.Object.Name != "" {
		b.WriteString(" " + p.Object.Kind + " " + p.Object.Name)
	}
	if p.Current != "" {
		b.WriteString(" (" + p.Current + ")")
	}
	return b.String()
}

// Text is the text body of an alert e-mail: the payload's fields.
func Text(p Payload) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-12s %s\n", k+":", indented(v))
		}
	}
	if p.Test {
		b.WriteString("This is a test alert sent from mailtrigger's settings.\n\n")
	}
	line("Event", p.Type)
	line("Object", strings.TrimSpace(p.Object.Kind+" "+p.Object.Name))
	line("Link", p.Object.URL)
	if p.Previous != "" || p.Current != "" {
		line("State", strings.TrimPrefix(p.Previous+" → "+p.Current, " → "))
	}
	if p.Since != nil {
		line("Since", p.Since.UTC().Format(time.RFC3339))
	}
	line("Error", p.Error)
	line("Occurred at", p.OccurredAt.UTC().Format(time.RFC3339))
	line("Event id", p.ID)
	line("Delivery", fmt.Sprintf("%s (subscription %s, attempt %d)", p.Delivery.ID, p.Delivery.Subscription, p.Delivery.Attempt))
	if len(p.Details) > 0 {
		var out bytes.Buffer
		if json.Indent(&out, p.Details, "", "  ") == nil {
			b.WriteString("\nDetails:\n" + out.String() + "\n")
		}
	}
	return b.String()
}

// indented is v (which may come from a server: an error text) with its
// line breaks, of whatever kind, followed by an indent, and its other
// control characters made spaces: it cannot begin a line of the e-mail,
// such as a Link of its own.
func indented(v string) string {
	v = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n").Replace(v)
	v = strings.Map(func(r rune) rune {
		if r != '\n' && (r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
			return ' '
		}
		return r
	}, v)
	return strings.ReplaceAll(v, "\n", "\n"+strings.Repeat(" ", 13))
}

// rateLimit allows each key at most n events per window.
type rateLimit struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	seen   map[int64][]time.Time // the times taken in the last window, oldest first
}

func newRateLimit(n int, window time.Duration) *rateLimit {
	return &rateLimit{n: n, window: window, seen: map[int64][]time.Time{}}
}

// take records an event of key at now if the key has room; otherwise it
// says when it will have.
func (r *rateLimit) take(key int64, now time.Time) (ok bool, next time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := r.seen[key]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-r.window)) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= r.n {
		r.seen[key] = ts
		return false, ts[len(ts)-r.n].Add(r.window)
	}
	r.seen[key] = append(ts, now)
	for k, v := range r.seen { // forget idle keys
		if len(v) == 0 || !v[len(v)-1].After(now.Add(-r.window)) {
			delete(r.seen, k)
		}
	}
	return true, time.Time{}
}
