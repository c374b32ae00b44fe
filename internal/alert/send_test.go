package alert_test

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
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/egress"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is an alert webhook endpoint on loopback that keeps every
// request it gets and answers with the codes of answer, in turn (the last
// one from then on).
type receiver struct {
	mu     sync.Mutex
	reqs   []received
	answer []int
	srv    *http.Server
	ln     net.Listener
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, received{req.Header.Clone(), body, time.Now()})
	code := r.answer[min(len(r.reqs), len(r.answer))-1]
	r.mu.Unlock()
	w.WriteHeader(code)
	fmt.Fprintf(w, "answer %d", code)
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// startReceiver listens on addr ("127.0.0.1:0" for any port).
func startReceiver(t *testing.T, addr string, answer ...int) (*receiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{answer: answer, ln: ln}
	r.srv = &http.Server{Handler: r}
	go r.srv.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })
	return r, "http://" + ln.Addr().String() + "/hooks/alerts?token=url-token"
}

// logBuffer is a slog destination the tests read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	store  *store.Store
	sender *alert.Sender
	logs   *logBuffer
	reg    *prometheus.Registry
}

// startSender runs a sender over s until the test ends.
func startSender(t *testing.T, s *store.Store, deps alert.SenderDeps) fixture {
	t.Helper()
	f := fixture{store: s, logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	deps.Store = s
	deps.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	deps.Registry = f.reg
	if deps.Options.BackoffBase == 0 {
		deps.Options.BackoffBase = 50 * time.Millisecond
	}
	if deps.Options.PollInterval == 0 {
		deps.Options.PollInterval = 20 * time.Millisecond
	}
	if deps.Options.Timeout == 0 {
		deps.Options.Timeout = 5 * time.Second
	}
	f.sender = alert.NewSender(deps)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.sender.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f
}

func webhookSub(t *testing.T, s *store.Store, name, url string) store.AlertSubscription {
	t.Helper()
	a, err := s.CreateAlert(context.Background(), store.AlertSubscription{Name: name, Kind: store.AlertWebhook, URL: url,
		Secret: secret, Events: alert.Types, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func authFailedEvent(mailbox string) store.AlertEvent {
	return store.AlertEvent{Type: alert.TypeAuthFailed, ObjectKind: "mailbox", ObjectName: mailbox, Previous: "ok",
		Current: "auth_failed", Error: "AUTHENTICATIONFAILED Authentication failed.", Since: time.Now().Add(-time.Minute),
		Details: json.RawMessage(`{"state":"auth_failed"}`)}
}

// only returns the single delivery of subscription name.
func only(t *testing.T, s *store.Store, name string) (store.AlertDelivery, []store.Attempt) {
	t.Helper()
	ds, err := s.ListAlertDeliveries(context.Background(), name, 0, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %+v, %v; want 1", ds, err)
	}
	d, attempts, err := s.GetAlertDelivery(context.Background(), ds[0].PublicID)
	if err != nil {
		t.Fatal(err)
	}
	return d, attempts
}

func waitStatus(t *testing.T, s *store.Store, name, status string) (store.AlertDelivery, []store.Attempt) {
	t.Helper()
	testwait.Until(t, 10*time.Second, func() error {
		ds, err := s.ListAlertDeliveries(context.Background(), name, 0, 10)
		if err != nil {
			return err
		}
		if len(ds) != 1 || ds[0].Status != status {
			return fmt.Errorf("deliveries %+v, want one %s", ds, status)
		}
		return nil
	})
	return only(t, s, name)
}

// TestSenderWebhook: an alert is posted signed (Standard Webhooks, the
// delivery's id as webhook-id, the same on every attempt), retried after a
// 500, and its attempts are recorded; the payload carries the event and
// links to the UI.
func TestSenderWebhook(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.SQLite)
	rcv, url := startReceiver(t, "127.0.0.1:0", 500, 204)
	webhookSub(t, s, "pager", url)
	f := startSender(t, s, alert.SenderDeps{BaseURL: "https://mt.example.com/"})
	ev := authFailedEvent("Support Inbox")
	if n, err := s.QueueAlert(ctx, ev); err != nil || n != 1 {
		t.Fatalf("queued %d, %v", n, err)
	}
	f.sender.Notify()
	d, attempts := waitStatus(t, s, "pager", store.RunDelivered)
	if len(attempts) != 2 || attempts[0].StatusCode != 500 || attempts[0].Error != "HTTP 500 Internal Server Error" ||
		attempts[0].Response != "answer 500" || attempts[1].StatusCode != 204 {
		t.Errorf("attempts %+v", attempts)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if err := run.Verify(secret, r.header, r.body, time.Minute); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if got := r.header.Get("Webhook-Id"); got != d.PublicID {
			t.Errorf("request %d: webhook-id %q, want %q", i, got, d.PublicID)
		}
		if err := run.Verify("whsec_"+base64.StdEncoding.EncodeToString([]byte("another key")), r.header, r.body, time.Minute); !errors.Is(err, run.ErrInvalidSignature) {
			t.Errorf("request %d verifies with another secret: %v", i, err)
		}
		var p alert.Payload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Version != 1 || p.Type != alert.TypeAuthFailed || p.ID != d.Event.ID || p.Test || p.Previous != "ok" ||
			p.Current != "auth_failed" || p.Error != ev.Error || p.Since == nil || string(p.Details) != `{"state":"auth_failed"}` ||
			p.Object != (alert.Object{Kind: "mailbox", Name: "Support Inbox", URL: "https://mt.example.com/imap/Support%20Inbox"}) ||
			p.Delivery != (alert.Delivery{ID: d.PublicID, Subscription: "pager", Attempt: i + 1}) {
			t.Errorf("request %d: payload %s", i, r.body)
		}
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 30*time.Millisecond {
		t.Errorf("retried after %v, want the backoff (about 50 ms)", gap)
	}
	if got := testutil.ToFloat64(counter(t, f.reg, "webhook", store.RunDelivered)); got != 1 {
		t.Errorf("delivered counter %v", got)
	}
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		if !strings.Contains(l, "delivery="+d.PublicID) || !strings.Contains(l, "subscription=pager") {
			t.Errorf("log line without the delivery and subscription: %s", l)
		}
		if strings.Contains(l, "url-token") || strings.Contains(l, secret) {
			t.Errorf("log line with a secret: %s", l)
		}
	}
}

// counter returns the deliveries counter of kind and result.
func counter(t *testing.T, reg *prometheus.Registry, kind, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "mailtrigger_alert_deliveries_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				c.Add(m.Counter.GetValue())
			}
		}
	}
	return c
}

// TestSenderRedirectNotFollowed: a 3xx fails the delivery, and the place
// it points at is never asked.
func TestSenderRedirectNotFollowed(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	target, targetURL := startReceiver(t, "127.0.0.1:0", 204)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, targetURL, http.StatusTemporaryRedirect)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	webhookSub(t, s, "pager", "http://"+ln.Addr().String()+"/hook")
	startSender(t, s, alert.SenderDeps{})
	if _, err := s.QueueAlert(context.Background(), authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	d, attempts := waitStatus(t, s, "pager", store.RunFailed)
	if len(attempts) != 1 || attempts[0].StatusCode != 307 || !strings.Contains(d.LastError, "redirects are not followed") {
		t.Errorf("delivery %+v, attempts %+v", d, attempts)
	}
	if n := len(target.requests()); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

// TestSenderEndpointComesBack: while the endpoint is down the delivery is
// retried; once it is back, the alert arrives, once.
func TestSenderEndpointComesBack(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	webhookSub(t, s, "pager", "http://"+addr+"/hook?token=url-token")
	startSender(t, s, alert.SenderDeps{})
	if _, err := s.QueueAlert(context.Background(), authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, func() error {
		d, attempts := only(t, s, "pager")
		if d.Status != store.RunRetrying || len(attempts) < 2 {
			return fmt.Errorf("delivery %s after %d attempts, want retrying after 2", d.Status, len(attempts))
		}
		return nil
	})
	d, attempts := only(t, s, "pager")
	if strings.Contains(d.LastError, "url-token") || !strings.Contains(attempts[0].Error, "POST http://"+addr) {
		t.Errorf("error %q: want the endpoint and no token", attempts[0].Error)
	}
	rcv, _ := startReceiver(t, addr, 204)
	d, _ = waitStatus(t, s, "pager", store.RunDelivered)
	testwait.Never(t, 200*time.Millisecond, func() error {
		if n := len(rcv.requests()); n != 1 {
			return fmt.Errorf("%d requests, want 1", n)
		}
		return nil
	})
	if got := rcv.requests()[0].header.Get("Webhook-Id"); got != d.PublicID {
		t.Errorf("webhook-id %q, want %q", got, d.PublicID)
	}
}

// TestSenderEgressDenied: an endpoint the egress policy refuses fails the
// delivery at once (no retry can pass), saying why, without the URL's token.
func TestSenderEgressDenied(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	webhookSub(t, s, "pager", "http://10.0.0.5/hook?token=url-token")
	deny := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &egress.DeniedError{Addr: netip.MustParseAddr("10.0.0.5"), Reason: "a private address"}
	}
	startSender(t, s, alert.SenderDeps{Dial: deny})
	if _, err := s.QueueAlert(context.Background(), authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	d, attempts := waitStatus(t, s, "pager", store.RunFailed)
	if len(attempts) != 1 || !strings.Contains(d.LastError, "egress denied") || strings.Contains(d.LastError, "url-token") {
		t.Errorf("delivery %+v, %d attempts", d, len(attempts))
	}
}

// TestSenderTakesOverADeadClaim: a delivery claimed by a sender that died
// (its lease runs out) is sent by another, once.
func TestSenderTakesOverADeadClaim(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.SQLite)
	rcv, url := startReceiver(t, "127.0.0.1:0", 204)
	webhookSub(t, s, "pager", url)
	if _, err := s.QueueAlert(ctx, authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	if c, err := s.ClaimAlertDeliveries(ctx, time.Now(), 10, 300*time.Millisecond); err != nil || len(c) != 1 {
		t.Fatalf("claimed %d, %v", len(c), err)
	}
	f := startSender(t, s, alert.SenderDeps{Options: alert.SenderOptions{Timeout: time.Second, Lease: 1500 * time.Millisecond}})
	testwait.Never(t, 200*time.Millisecond, func() error {
		if n := len(rcv.requests()); n != 0 {
			return fmt.Errorf("%d requests while the other sender's lease holds", n)
		}
		return nil
	})
	d, _ := waitStatus(t, s, "pager", store.RunDelivered)
	if reqs := rcv.requests(); len(reqs) != 1 || reqs[0].header.Get("Webhook-Id") != d.PublicID {
		t.Errorf("%d requests, want 1; logs:\n%s", len(reqs), f.logs)
	}
}

// TestSenderGivesUp: after MaxAttempts the delivery fails, and says so.
func TestSenderGivesUp(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	rcv, url := startReceiver(t, "127.0.0.1:0", 503)
	webhookSub(t, s, "pager", url)
	startSender(t, s, alert.SenderDeps{Options: alert.SenderOptions{MaxAttempts: 3, BackoffBase: 10 * time.Millisecond}})
	if _, err := s.QueueAlert(context.Background(), authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	d, attempts := waitStatus(t, s, "pager", store.RunFailed)
	if len(attempts) != 3 || len(rcv.requests()) != 3 || !strings.Contains(d.LastError, "giving up after 3 attempts") {
		t.Errorf("delivery %+v, attempts %d, requests %d", d, len(attempts), len(rcv.requests()))
	}
}

// TestSenderRateLimit: over a subscription's rate, deliveries wait in the
// queue (a minute later), none is dropped; another subscription is not
// held up.
func TestSenderRateLimit(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.SQLite)
	rcv, url := startReceiver(t, "127.0.0.1:0", 204)
	if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "pager", Kind: store.AlertWebhook, URL: url,
		Secret: secret, Events: []string{alert.TypeAuthFailed}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	other, otherURL := startReceiver(t, "127.0.0.1:0", 204)
	if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "other", Kind: store.AlertWebhook, URL: otherURL,
		Secret: secret, Events: []string{alert.TypeRunFailed}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.QueueAlert(ctx, authFailedEvent(fmt.Sprintf("inbox%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	f := startSender(t, s, alert.SenderDeps{Options: alert.SenderOptions{Rate: 2}})
	testwait.Until(t, 10*time.Second, func() error {
		if n := len(rcv.requests()); n != 2 {
			return fmt.Errorf("%d requests, want 2", n)
		}
		return nil
	})
	if _, err := s.QueueAlert(ctx, store.AlertEvent{Type: alert.TypeRunFailed, ObjectKind: "run", ObjectName: "run_x"}); err != nil {
		t.Fatal(err)
	}
	f.sender.Notify()
	testwait.Until(t, 10*time.Second, func() error {
		if n := len(other.requests()); n != 1 {
			return fmt.Errorf("other subscription: %d requests, want 1", n)
		}
		return nil
	})
	testwait.Never(t, 300*time.Millisecond, func() error {
		if n := len(rcv.requests()); n != 2 {
			return fmt.Errorf("%d requests over the rate of 2 a minute", n)
		}
		return nil
	})
	ds, err := s.ListAlertDeliveries(ctx, "pager", 0, 10)
	if err != nil || len(ds) != 5 {
		t.Fatalf("deliveries %d, %v", len(ds), err)
	}
	waiting := 0
	for _, d := range ds {
		switch d.Status {
		case store.RunDelivered:
		case store.RunPending:
			waiting++
			if d.NextAttemptAt.Before(start.Add(50*time.Second)) || d.Attempts != 0 {
				t.Errorf("waiting delivery %+v: want due about a minute later, no attempt", d)
			}
		default:
			t.Errorf("delivery %+v", d)
		}
	}
	if waiting != 3 {
		t.Errorf("%d deliveries waiting, want 3", waiting)
	}
	if !strings.Contains(f.logs.String(), "rate limit") {
		t.Errorf("no log line says the rate limit delayed deliveries:\n%s", f.logs)
	}
}

// TestSenderEmail: an email subscription's alert goes through the SMTP
// server, authenticated, with the event in the subject and body.
func TestSenderEmail(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.SQLite)
	sink := testenv.StartSMTPSink(t, "alerts@example.com", "smtp-pässword-42")
	if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "ops-mail", Kind: store.AlertEmail,
		To: []string{"ops@example.com", "oncall@example.com"}, Events: []string{alert.TypeAuthFailed}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	startSender(t, s, alert.SenderDeps{BaseURL: "https://mt.example.com", SMTP: &alert.SMTPConfig{Host: sink.Host, Port: sink.Port,
		Username: "alerts@example.com", Password: "smtp-pässword-42", From: "mailtrigger@example.com", TLS: alert.SMTPNone}})
	if _, err := s.QueueAlert(ctx, authFailedEvent("inbox")); err != nil {
		t.Fatal(err)
	}
	d, _ := waitStatus(t, s, "ops-mail", store.RunDelivered)
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "mailtrigger@example.com" || strings.Join(m.To, ",") != "ops@example.com,oncall@example.com" || m.User != "alerts@example.com" {
		t.Errorf("envelope %+v", m)
	}
	if got := m.Header("Subject"); got != "[mailtrigger] mailbox.auth_failed mailbox inbox (auth_failed)" {
		t.Errorf("subject %q", got)
	}
	if got := m.Header("Message-Id"); got != "<"+d.PublicID+"@mailtrigger>" {
		t.Errorf("message-id %q", got)
	}
	body := m.Body()
	for _, want := range []string{"mailbox.auth_failed", "mailbox inbox", "https://mt.example.com/imap/inbox",
		"ok → auth_failed", "AUTHENTICATIONFAILED Authentication failed.", d.PublicID, `"state": "auth_failed"`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

// TestSenderEmailErrors: a refused login retries without the password in
// the error or the logs; a refused recipient (5xx) fails for good; without
// SMTP settings the delivery fails saying so.
func TestSenderEmailErrors(t *testing.T) {
	ctx := context.Background()
	const password = "Sup3r-Secret-SMTP-pw"
	newSub := func(s *store.Store) {
		if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "ops-mail", Kind: store.AlertEmail,
			To: []string{"ops@example.com"}, Events: []string{alert.TypeAuthFailed}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.QueueAlert(ctx, authFailedEvent("inbox")); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("bad login", func(t *testing.T) {
		s := storetest.Open(t, store.SQLite)
		sink := testenv.StartSMTPSink(t, "alerts@example.com", "another password")
		newSub(s)
		f := startSender(t, s, alert.SenderDeps{SMTP: &alert.SMTPConfig{Host: sink.Host, Port: sink.Port,
			Username: "alerts@example.com", Password: password, From: "mailtrigger@example.com", TLS: alert.SMTPNone}})
		testwait.Until(t, 10*time.Second, func() error {
			d, attempts := only(t, s, "ops-mail")
			if d.Status != store.RunRetrying || len(attempts) < 2 {
				return fmt.Errorf("delivery %s after %d attempts", d.Status, len(attempts))
			}
			return nil
		})
		if !strings.Contains(sink.Transcript(), "AUTH") {
			t.Fatal("the client never tried to log in")
		}
		_, attempts := only(t, s, "ops-mail")
		enc := base64.StdEncoding.EncodeToString([]byte("\x00alerts@example.com\x00" + password))
		for _, a := range attempts {
			if !strings.Contains(a.Error, "535") {
				t.Errorf("error %q: want the server's refusal", a.Error)
			}
			if strings.Contains(a.Error, password) || strings.Contains(a.Error, enc) {
				t.Errorf("error with the password: %q", a.Error)
			}
		}
		if l := f.logs.String(); strings.Contains(l, password) || strings.Contains(l, enc) {
			t.Errorf("logs with the password:\n%s", l)
		}
		if len(sink.Messages()) != 0 {
			t.Error("a message got through")
		}
	})
	t.Run("recipient outside the allowed domains", func(t *testing.T) {
		// MAILTRIGGER_SMTP_ALLOWED_DOMAINS: a subscription writing to
		// another domain sends nothing, to anyone, and fails saying why.
		s := storetest.Open(t, store.SQLite)
		sink := testenv.StartSMTPSink(t, "alerts@example.com", password)
		if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "leak-mail", Kind: store.AlertEmail,
			To: []string{"ops@Example.com", "someone@elsewhere.example.net"}, Events: []string{alert.TypeAuthFailed}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateAlert(ctx, store.AlertSubscription{Name: "ok-mail", Kind: store.AlertEmail,
			To: []string{"oncall@EXAMPLE.com"}, Events: []string{alert.TypeAuthFailed}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.QueueAlert(ctx, authFailedEvent("inbox")); err != nil {
			t.Fatal(err)
		}
		startSender(t, s, alert.SenderDeps{SMTP: &alert.SMTPConfig{Host: sink.Host, Port: sink.Port,
			Username: "alerts@example.com", Password: password, From: "mailtrigger@example.com", TLS: alert.SMTPNone,
			AllowedDomains: []string{"example.com"}}})
		waitStatus(t, s, "ok-mail", store.RunDelivered)
		d, _ := waitStatus(t, s, "leak-mail", store.RunFailed)
		if !strings.Contains(d.LastError, "to[1] someone@elsewhere.example.net") || !strings.Contains(d.LastError, "MAILTRIGGER_SMTP_ALLOWED_DOMAINS") {
			t.Errorf("error %q: want it to name the recipient and the setting", d.LastError)
		}
		msgs := sink.Messages()
		if len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "oncall@EXAMPLE.com" {
			t.Errorf("sent %+v, want one message to oncall@EXAMPLE.com", msgs)
		}
	})
	t.Run("starttls required", func(t *testing.T) {
		// The sink offers no STARTTLS: nothing is sent, the password
		// least of all.
		s := storetest.Open(t, store.SQLite)
		sink := testenv.StartSMTPSink(t, "alerts@example.com", password)
		newSub(s)
		startSender(t, s, alert.SenderDeps{SMTP: &alert.SMTPConfig{Host: sink.Host, Port: sink.Port,
			Username: "alerts@example.com", Password: password, From: "mailtrigger@example.com"}})
		testwait.Until(t, 10*time.Second, func() error {
			d, _ := only(t, s, "ops-mail")
			if d.Status != store.RunRetrying || d.Attempts < 3 {
				return fmt.Errorf("delivery %s after %d attempts", d.Status, d.Attempts)
			}
			return nil
		})
		d, _ := only(t, s, "ops-mail")
		if !strings.Contains(strings.ToLower(d.LastError), "starttls") {
			t.Errorf("error %q: want it to say STARTTLS is missing", d.LastError)
		}
		if tr := sink.Transcript(); strings.Contains(tr, "AUTH") || strings.Contains(tr, "MAIL FROM") {
			t.Errorf("sent in the clear:\n%s", tr)
		}
		if len(sink.Messages()) != 0 {
			t.Error("a message got through")
		}
		// The failed attempts left no connection open.
		testwait.Until(t, 5*time.Second, func() error {
			if n := sink.OpenConns(); n != 0 { // between attempts
				return fmt.Errorf("%d connections open", n)
			}
			return nil
		})
	})
	t.Run("recipient refused", func(t *testing.T) {
		s := storetest.Open(t, store.SQLite)
		sink := testenv.StartSMTPSink(t, "", "")
		sink.RejectRecipients(550)
		newSub(s)
		startSender(t, s, alert.SenderDeps{SMTP: &alert.SMTPConfig{Host: sink.Host, Port: sink.Port,
			From: "mailtrigger@example.com", TLS: alert.SMTPNone}})
		d, attempts := waitStatus(t, s, "ops-mail", store.RunFailed)
		if len(attempts) != 1 || !strings.Contains(d.LastError, "550") {
			t.Errorf("delivery %+v, %d attempts", d, len(attempts))
		}
	})
	t.Run("no smtp", func(t *testing.T) {
		s := storetest.Open(t, store.SQLite)
		newSub(s)
		startSender(t, s, alert.SenderDeps{})
		d, attempts := waitStatus(t, s, "ops-mail", store.RunFailed)
		if len(attempts) != 1 || d.LastError != "SMTP is not configured (MAILTRIGGER_SMTP_HOST)" {
			t.Errorf("delivery %+v, %d attempts", d, len(attempts))
		}
	})
}

// TestSendersShareTheQueue: two replicas' senders over one PostgreSQL
// database send each alert once.
func TestSendersShareTheQueue(t *testing.T) {
	ctx := context.Background()
	o := store.Options{DatabaseURL: testenv.PostgresURL(t), Box: storetest.Box(t)}
	var stores []*store.Store
	for range 2 {
		s, err := store.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	rcv, url := startReceiver(t, "127.0.0.1:0", 204)
	webhookSub(t, stores[0], "pager", url)
	for _, s := range stores {
		startSender(t, s, alert.SenderDeps{Options: alert.SenderOptions{Rate: 1000}})
	}
	const n = 20
	for i := range n {
		if _, err := stores[i%2].QueueAlert(ctx, authFailedEvent(fmt.Sprintf("inbox%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 20*time.Second, func() error {
		if got := len(rcv.requests()); got < n {
			return fmt.Errorf("%d requests, want %d", got, n)
		}
		return nil
	})
	testwait.Never(t, 200*time.Millisecond, func() error {
		seen := map[string]bool{}
		for _, r := range rcv.requests() {
			id := r.header.Get("Webhook-Id")
			if seen[id] {
				return fmt.Errorf("delivery %s sent twice", id)
			}
			seen[id] = true
		}
		return nil
	})
}

// TestTypesMatchTheStore: the event types the store queues itself.
func TestTypesMatchTheStore(t *testing.T) {
	if alert.TypeRunFailed != "run.failed" || alert.TypeReplicaLost != "replica.lost" {
		t.Error("the store queues run.failed and replica.lost under these names")
	}
}
