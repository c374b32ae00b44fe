package run_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

func TestDeliveredSigned(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t, response{code: 200, body: `{"received":true}`})
		act := webhook(h.URL + "/hooks/mail?token=abc")
		act["headers"] = map[string]string{"X-A": "b", "Authorization": "Bearer t0ken", "webhook-id": "forged",
			"Webhook-Signature": "v1,forged", "content-type": "text/plain"}
		act["timeout"] = "5s"
		f := newFlow(t, s, "invoices", flowDef(act))
		r := newRun(t, s, f)

		reg := prometheus.NewRegistry()
		o := fastOptions()
		o.BaseURL = "https://mt.example.com/"
		w := run.New(run.Deps{Store: s, Logger: testLogger(t), Registry: reg, Options: o})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		defer func() { cancel(); <-done }()

		got, attempts := waitRun(t, s, r.PublicID, store.RunDelivered)
		cancel()
		<-done // the metrics are counted once the attempt is recorded
		if len(attempts) != 1 || attempts[0].StatusCode != 200 || attempts[0].Error != "" || attempts[0].Response != `{"received":true}` {
			t.Errorf("got attempts %+v, want one 200 with the response", attempts)
		}
		if got.DeliveredAt == nil || got.LastError != "" || got.Attempts != 1 {
			t.Errorf("got run %+v", got)
		}

		reqs := h.got()
		if len(reqs) != 1 {
			t.Fatalf("got %d requests, want 1", len(reqs))
		}
		req := reqs[0]
		if err := run.Verify(f.Secrets[0], req.header, req.body, 5*time.Minute); err != nil {
			t.Errorf("verifying the delivery: %v", err)
		}
		for k, want := range map[string]string{
			"Webhook-Id": r.PublicID, "Idempotency-Key": r.PublicID, "Content-Type": "application/json",
			"User-Agent": "mailtrigger", "X-A": "b", "Authorization": "Bearer t0ken",
		} {
			if v := req.header.Get(k); v != want {
				t.Errorf("got header %s %q, want %q", k, v, want)
			}
		}
		if sigs := req.header.Values("Webhook-Signature"); len(sigs) != 1 || strings.Contains(sigs[0], "forged") {
			t.Errorf("got signatures %q, want ours only", sigs)
		}
		ts := req.header.Get("Webhook-Timestamp")
		if sec, err := fmt.Sscan(ts, new(int64)); err != nil || sec != 1 {
			t.Errorf("got webhook-timestamp %q", ts)
		}

		var p run.Payload
		dec := json.NewDecoder(bytes.NewReader(req.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding the payload: %v\n%s", err, req.body)
		}
		if p.Version != 1 || p.Type != "email.received" || p.Run.ID != r.PublicID || p.Run.Flow != "invoices" ||
			p.Run.Attempt != 1 || !p.Run.TriggeredAt.Equal(r.CreatedAt) || p.IMAP != f.IMAPName {
			t.Errorf("got %+v %+v", p, p.Run)
		}
		m := p.Message
		if m.ID != r.MessageID || m.MessageID != "inv42@example.com" || m.Subject != "Invoice 42" ||
			len(m.From) != 1 || m.From[0].Name != "Ann Example" || m.From[0].Address != "ann@example.com" ||
			len(m.To) != 1 || len(m.Cc) != 1 || len(m.ReplyTo) != 1 || m.Date == nil ||
			!m.Date.Equal(time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)) || !strings.Contains(m.Text, "Please pay <now> & soon.") {
			t.Errorf("got message %+v", m)
		}
		if !bytes.Contains(req.body, []byte("<now> & soon")) {
			t.Errorf("the body escapes HTML characters: %s", req.body)
		}
		if len(m.Attachments) != 2 {
			t.Fatalf("got attachments %+v, want 2", m.Attachments)
		}
		a := m.Attachments[0]
		wantURL := fmt.Sprintf("https://mt.example.com/api/v1/messages/%d/attachments/0", r.MessageID)
		if a.Filename != "invoice.pdf" || a.ContentType != "application/pdf" || a.Size != 9 || len(a.SHA256) != 64 ||
			a.URL != wantURL || a.Content != nil || a.ContentOmitted != "" {
			t.Errorf("got attachment %+v, want invoice.pdf at %s without content", a, wantURL)
		}

		// Metrics.
		if v := metricValue(t, reg, "mailtrigger_runs_total", map[string]string{"flow": "invoices", "status": "delivered"}); v != 1 {
			t.Errorf("got mailtrigger_runs_total{delivered} %v, want 1", v)
		}
		if v := metricValue(t, reg, "mailtrigger_run_attempts_total", map[string]string{"flow": "invoices", "result": "2xx"}); v != 1 {
			t.Errorf("got mailtrigger_run_attempts_total{2xx} %v, want 1", v)
		}
		if v := metricValue(t, reg, "mailtrigger_webhook_request_seconds", nil); v != 1 {
			t.Errorf("got %v webhook requests observed, want 1", v)
		}
		if v := metricValue(t, reg, "mailtrigger_run_trigger_latency_seconds", nil); v != 1 {
			t.Errorf("got %v trigger latencies observed, want 1", v)
		}
		if !hasMetric(t, reg, "mailtrigger_run_queue_depth") {
			t.Error("no mailtrigger_run_queue_depth")
		}
	})
}

// metricValue returns a counter's value or a histogram's sample count.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func hasMetric(t *testing.T, reg *prometheus.Registry, name string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 && mf.GetType() == dto.MetricType_GAUGE {
			return true
		}
	}
	return false
}

func TestRetriedUntilDelivered(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t, response{code: 503, body: "down"}, response{code: 503, body: "still down"}, response{code: 200})
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		r := newRun(t, s, f)
		startWorker(t, s, fastOptions())

		got, attempts := waitRun(t, s, r.PublicID, store.RunDelivered, store.RunFailed)
		if got.Status != store.RunDelivered || got.Attempts != 3 || len(attempts) != 3 {
			t.Fatalf("got %s after %d attempts %+v, want delivered after 3", got.Status, got.Attempts, attempts)
		}
		for i, want := range []struct {
			code     int
			err      string
			response string
		}{{503, "HTTP 503 Service Unavailable", "down"}, {503, "HTTP 503 Service Unavailable", "still down"}, {200, "", ""}} {
			a := attempts[i]
			if a.N != i+1 || a.StatusCode != want.code || a.Error != want.err || a.Response != want.response || a.StartedAt.IsZero() {
				t.Errorf("attempt %d: got %+v, want %+v", i+1, a, want)
			}
		}
		// Each attempt carries its number and the same run id; each is signed anew.
		reqs := h.got()
		for i, req := range reqs {
			var p run.Payload
			if err := json.Unmarshal(req.body, &p); err != nil || p.Run.Attempt != i+1 || p.Run.ID != r.PublicID {
				t.Errorf("request %d: got attempt %d run %s, %v", i+1, p.Run.Attempt, p.Run.ID, err)
			}
			if err := run.Verify(f.Secrets[0], req.header, req.body, time.Minute); err != nil {
				t.Errorf("request %d: %v", i+1, err)
			}
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	cases := []struct {
		name      string
		code      int
		after     func() string
		wantDelay time.Duration
	}{
		{"429 seconds", 429, func() string { return "120" }, 120 * time.Second},
		{"503 http date", 503, func() string { return time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat) }, 90 * time.Second},
		{"429 capped", 429, func() string { return "99999999" }, 6 * time.Hour},
	}
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				h := newHook(t, response{code: c.code, header: map[string]string{"Retry-After": c.after()}})
				f := newFlow(t, s, strings.ReplaceAll(c.name, " ", "_"), flowDef(webhook(h.URL)))
				r := newRun(t, s, f)
				_, stop := startWorker(t, s, fastOptions())
				got, attempts := waitRun(t, s, r.PublicID, store.RunRetrying)
				stop()
				want := attempts[0].StartedAt.Add(c.wantDelay)
				if d := got.NextAttemptAt.Sub(want); d < -3*time.Second || d > 3*time.Second {
					t.Errorf("got next attempt at %v, want about %v (off by %v)", got.NextAttemptAt, want, d)
				}
				if !strings.Contains(attempts[0].Error, "Retry-After") || attempts[0].StatusCode != c.code {
					t.Errorf("got attempt %+v", attempts[0])
				}
				if n := len(h.got()); n != 1 {
					t.Errorf("got %d requests, want 1 before Retry-After", n)
				}
			})
		}
	})
}

func TestClientErrorFailsAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		long := "invalid: field subject " + strings.Repeat("x", 2000)
		h := newHook(t, response{code: 400, body: long}, response{code: 200})
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		r := newRun(t, s, f)
		w, _ := startWorker(t, s, fastOptions())

		got, attempts := waitRun(t, s, r.PublicID, store.RunFailed)
		if len(attempts) != 1 || attempts[0].StatusCode != 400 || attempts[0].Response != long[:1024] {
			t.Fatalf("got attempts %+v, want one 400 with the first 1024 bytes of the response", attempts)
		}
		if got.LastError != "HTTP 400 Bad Request" {
			t.Errorf("got last error %q", got.LastError)
		}
		testwait.Never(t, 200*time.Millisecond, func() error {
			if n := len(h.got()); n != 1 {
				return fmt.Errorf("got %d requests, want 1: a 400 is not retried", n)
			}
			return nil
		})

		// A manual retry delivers it.
		if _, err := s.RetryRun(context.Background(), r.PublicID); err != nil {
			t.Fatal(err)
		}
		w.Notify()
		got, attempts = waitRun(t, s, r.PublicID, store.RunDelivered)
		if len(attempts) != 2 || attempts[1].StatusCode != 200 || got.LastError != "" {
			t.Errorf("got %+v %+v, want delivered at the second attempt", got, attempts)
		}
	})
}

func TestNotifyWakesAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t)
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		o := fastOptions()
		o.PollInterval = time.Hour
		w, _ := startWorker(t, s, o)
		// The worker found nothing to do and sleeps now (for an hour).
		testwait.Never(t, 50*time.Millisecond, func() error {
			if n := len(h.got()); n != 0 {
				return fmt.Errorf("got %d requests before any run", n)
			}
			return nil
		})
		r := newRun(t, s, f)
		start := time.Now()
		w.Notify()
		waitRun(t, s, r.PublicID, store.RunDelivered)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("delivered %v after Notify", d)
		}
	})
}

func TestNetworkErrorRetried(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now: connection refused
		f := newFlow(t, s, "invoices", flowDef(webhook("http://"+addr+"/hook?token=secret-token")))
		r := newRun(t, s, f)
		o := fastOptions()
		o.MaxAttempts = 3
		startWorker(t, s, o)

		got, attempts := waitRun(t, s, r.PublicID, store.RunFailed)
		if len(attempts) != 3 {
			t.Fatalf("got %d attempts %+v, want 3", len(attempts), attempts)
		}
		for _, a := range attempts {
			if a.StatusCode != 0 || !strings.Contains(a.Error, "POST http://"+addr) || !strings.Contains(a.Error, "refused") {
				t.Errorf("got attempt %+v, want connection refused", a)
			}
			if strings.Contains(a.Error, "secret-token") {
				t.Errorf("the error shows the URL's query: %s", a.Error)
			}
		}
		if !strings.HasSuffix(got.LastError, "(giving up after 3 attempts)") {
			t.Errorf("got last error %q", got.LastError)
		}
	})
}

func TestTimeoutRetried(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t)
		h.delay = 10 * time.Second
		act := webhook(h.URL)
		act["timeout"] = "1s" // the least flow.Build allows
		f := newFlow(t, s, "invoices", flowDef(act))
		r := newRun(t, s, f)
		startWorker(t, s, fastOptions())
		_, attempts := waitAttempts(t, s, r.PublicID, 1)
		if !strings.Contains(attempts[0].Error, "no response within 1s") || attempts[0].Duration > 5*time.Second {
			t.Errorf("got attempt %+v, want a timeout after 1s", attempts[0])
		}
	})
}

func TestExpiredLeaseDeliveredAgain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		h := newHook(t)
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		newRuns(t, s, f, 2)
		// A worker that claimed both and died: one lease ended, one has not.
		held, err := s.ClaimRuns(ctx, time.Now(), 1, time.Hour)
		if err != nil || len(held) != 1 {
			t.Fatalf("got %v, %v", held, err)
		}
		claimed := time.Now()
		crashed, err := s.ClaimRuns(ctx, claimed, 1, time.Millisecond)
		if err != nil || len(crashed) != 1 || crashed[0].ID == held[0].ID || crashed[0].Status != store.RunDelivering {
			t.Fatalf("got %v, %v", crashed, err)
		}
		testwait.Until(t, time.Second, func() error {
			if !time.Now().After(claimed.Add(time.Millisecond)) {
				return errors.New("the 1 ms lease has not ended")
			}
			return nil
		})
		startWorker(t, s, fastOptions())
		waitRun(t, s, crashed[0].PublicID, store.RunDelivered)
		testwait.Never(t, 300*time.Millisecond, func() error {
			if r, _, _ := s.GetRun(ctx, held[0].PublicID); r.Status != store.RunDelivering {
				return fmt.Errorf("a run under a live lease is %s, want still delivering", r.Status)
			}
			if n := len(h.got()); n != 1 {
				return fmt.Errorf("got %d requests, want 1", n)
			}
			return nil
		})
	})
}

func TestFlowDeletedFailsRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		f := newFlow(t, s, "invoices", flowDef(webhook("http://127.0.0.1:1/")))
		r := newRun(t, s, f)
		if err := s.DeleteFlow(context.Background(), "invoices"); err != nil {
			t.Fatal(err)
		}
		startWorker(t, s, fastOptions())
		got, attempts := waitRun(t, s, r.PublicID, store.RunFailed)
		if len(attempts) != 1 || !strings.Contains(got.LastError, `flow "invoices" was deleted`) {
			t.Errorf("got %q %+v", got.LastError, attempts)
		}
	})
}

func TestBadDefinitionFailsRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		// The worker reads a definition by the rules flow.Build applies
		// (flow.Parse), and names the field that breaks one.
		cases := []struct{ name, def, want string }{
			{"no_activities", flowDef(), "activities: at least one activity is required"},
			{"bad_type", flowDef(map[string]any{"type": "email", "url": "http://x"}), "activities[0].type: must be webhook"},
			{"bad_timeout", flowDef(map[string]any{"type": "webhook", "url": "http://x", "timeout": "soon"}), "activities[0].timeout: must be a duration from 1s to 2m"},
			{"bad_url", flowDef(map[string]any{"type": "webhook", "url": "ftp://x"}), "activities[0].url: must be an absolute http:// or https:// URL"},
			// The worker once took a number as seconds, and any positive
			// duration, where the API and the UI refuse both.
			{"numeric_timeout", flowDef(map[string]any{"type": "webhook", "url": "http://x", "timeout": 15}), "activities[0].timeout: must be a duration from 1s to 2m, such as 30s, in quotes; a number (15) is not one"},
			{"long_timeout", flowDef(map[string]any{"type": "webhook", "url": "http://x", "timeout": "5m"}), "activities[0].timeout: must be a duration from 1s to 2m"},
			{"short_timeout", flowDef(map[string]any{"type": "webhook", "url": "http://x", "timeout": "100ms"}), "activities[0].timeout: must be a duration from 1s to 2m"},
			{"high_concurrency", flowDef(map[string]any{"type": "webhook", "url": "http://x", "maxConcurrency": 5000}), "activities[0].maxConcurrency: must be a whole number from 1 to 1000"},
		}
		var logs lockedBuffer
		w := run.New(run.Deps{Store: s, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Options: fastOptions()})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		defer func() { cancel(); <-done }()
		for _, c := range cases {
			f := newFlow(t, s, c.name, c.def)
			r := newRun(t, s, f)
			got, attempts := waitRun(t, s, r.PublicID, store.RunFailed)
			if !strings.Contains(got.LastError, c.want) || len(attempts) != 1 {
				t.Errorf("%s: got %q after %d attempts, want it to say %q after one", c.name, got.LastError, len(attempts), c.want)
			}
			// Logged once, with the run id and the reason.
			testwait.Until(t, 5*time.Second, func() error {
				for line := range strings.Lines(logs.String()) {
					if strings.Contains(line, "run_id="+r.PublicID) && strings.Contains(line, "run failed") && strings.Contains(line, strings.ReplaceAll(c.want, `"`, `\"`)) {
						return nil
					}
				}
				return fmt.Errorf("%s: no log line with run_id=%s and %q in\n%s", c.name, r.PublicID, c.want, logs.String())
			})
		}
	})
}

func TestSeveralActivitiesInOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		first := newHook(t)
		second := newHook(t, response{code: 500, body: "oops"})
		f := newFlow(t, s, "invoices", flowDef(webhook(first.URL), webhook(second.URL)))
		r := newRun(t, s, f)
		startWorker(t, s, fastOptions())
		got, attempts := waitRun(t, s, r.PublicID, store.RunDelivered)
		if len(attempts) != 2 || attempts[0].Error != "activity 2: HTTP 500 Internal Server Error" || attempts[0].Response != "oops" {
			t.Errorf("got %+v %+v", got, attempts)
		}
		// Every attempt starts again at the first activity (at least once).
		if a, b := len(first.got()), len(second.got()); a != 2 || b != 2 {
			t.Errorf("got %d and %d requests, want 2 and 2", a, b)
		}
		for i, req := range second.got() {
			if err := run.Verify(f.Secrets[1], req.header, req.body, time.Minute); err != nil {
				t.Errorf("second activity, request %d: %v", i+1, err)
			}
			if err := run.Verify(f.Secrets[0], req.header, req.body, time.Minute); err == nil {
				t.Errorf("second activity, request %d: verified with the first activity's secret", i+1)
			}
		}
		if first.got()[0].at.After(second.got()[0].at) {
			t.Error("the second activity was called before the first")
		}
	})
}

func TestIncludeAttachments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		cases := []struct {
			name       string
			limit      int64
			wantPDF    bool
			wantCSV    bool
			wantReason bool
		}{
			{"all", 0, true, true, false},
			{"first_only", 10, true, false, true}, // the PDF is 9 bytes, the CSV 8
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				h := newHook(t)
				act := webhook(h.URL)
				act["includeAttachments"] = true
				f := newFlow(t, s, c.name, flowDef(act))
				r := newRun(t, s, f)
				o := fastOptions()
				o.MaxAttachmentBytes = c.limit
				_, stop := startWorker(t, s, o)
				waitRun(t, s, r.PublicID, store.RunDelivered)
				stop()
				var p run.Payload
				if err := json.Unmarshal(h.got()[0].body, &p); err != nil {
					t.Fatal(err)
				}
				pdf, csv := p.Message.Attachments[0], p.Message.Attachments[1]
				if (string(pdf.Content) == "%PDF-1.4\n") != c.wantPDF || (string(csv.Content) == "a,b\r\n1,2") != c.wantCSV {
					t.Errorf("got contents %q and %q", pdf.Content, csv.Content)
				}
				if (csv.ContentOmitted != "") != c.wantReason || pdf.ContentOmitted != "" {
					t.Errorf("got omitted %q and %q", pdf.ContentOmitted, csv.ContentOmitted)
				}
				var raw map[string]any
				json.Unmarshal(h.got()[0].body, &raw)
				atts := raw["message"].(map[string]any)["attachments"].([]any)
				if b64 := atts[0].(map[string]any)["content"]; b64 != base64.StdEncoding.EncodeToString([]byte("%PDF-1.4\n")) {
					t.Errorf("got content %v, want base64", b64)
				}
			})
		}
	})
}

// TestAttachmentBytesInFlight: deliveries with includeAttachments hold
// their content and its base64 payload until sent, so together they hold
// at most AttachmentBytesInFlight of content (a backlog of messages with
// 10 MB scans, 64 at once to one endpoint, would otherwise take 1-2 GB);
// the others wait for room and are delivered after, with one attempt each.
func TestAttachmentBytesInFlight(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t)
		h.delay = 200 * time.Millisecond
		act := webhook(h.URL)
		act["includeAttachments"] = true
		f := newFlow(t, s, "scans", flowDef(act))
		runs := newRuns(t, s, f, 6)
		o := fastOptions()
		// Each message's attachments are 17 bytes (a PDF of 9, a CSV
		// of 8): room for two deliveries at once.
		o.MaxAttachmentBytes, o.AttachmentBytesInFlight = 17, 34
		_, stop := startWorker(t, s, o)
		for _, r := range runs {
			waitRun(t, s, r.PublicID, store.RunDelivered)
		}
		stop()
		if m := h.maxFlight.Load(); m != 2 {
			t.Errorf("got at most %d requests with attachment content at once, want 2", m)
		}
		for i, req := range h.got() {
			var p run.Payload
			if err := json.Unmarshal(req.body, &p); err != nil {
				t.Fatal(err)
			}
			if string(p.Message.Attachments[0].Content) != "%PDF-1.4\n" || string(p.Message.Attachments[1].Content) != "a,b\r\n1,2" {
				t.Errorf("request %d: got contents %q and %q", i+1, p.Message.Attachments[0].Content, p.Message.Attachments[1].Content)
			}
		}
		for _, r := range runs {
			if _, attempts, _ := s.GetRun(context.Background(), r.PublicID); len(attempts) != 1 {
				t.Errorf("run %s: got %d attempts, want 1 (waiting for room is no attempt)", r.PublicID, len(attempts))
			}
		}
	})
}

func TestPerEndpointLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		slow := newHook(t)
		slow.delay = time.Second
		other := newHook(t)
		f := newFlow(t, s, "invoices", flowDef(webhook(slow.URL+"/a")))
		g := newFlow(t, s, "alerts", flowDef(webhook(other.URL+"/b")))
		runs := append(newRuns(t, s, f, 6), newRuns(t, s, g, 2)...)
		o := fastOptions()
		o.Workers, o.PerEndpoint = 4, 2
		startWorker(t, s, o)
		for _, r := range runs {
			waitRun(t, s, r.PublicID, store.RunDelivered)
		}
		if m := slow.maxFlight.Load(); m != 2 {
			t.Errorf("got at most %d concurrent requests at one endpoint, want 2", m)
		}
		if n := len(slow.got()); n != 6 {
			t.Errorf("got %d requests, want 6", n)
		}
		// Runs waiting for the busy endpoint do not hold the workers: the
		// other endpoint's runs, queued behind them, are delivered while
		// the first two requests to the slow one are still running.
		if third, done := slow.got()[2].at, other.got()[1].at; !done.Before(third) {
			t.Errorf("the other endpoint's runs were delivered at %v, after the slow one's third request at %v", done, third)
		}
		for _, r := range runs {
			if _, attempts, _ := s.GetRun(context.Background(), r.PublicID); len(attempts) != 1 {
				t.Errorf("run %s: got %d attempts, want 1 (waiting for an endpoint is no attempt)", r.PublicID, len(attempts))
			}
		}
	})
}

// TestWorkersShareQueue runs two workers in each of two store handles (two
// replicas) on one PostgreSQL database: no run is ever delivered twice at
// once, and with every endpoint answering 200, each is delivered once.
func TestWorkersShareQueue(t *testing.T) {
	url := testenv.PostgresURL(t)
	open := func() *store.Store {
		s, err := store.Open(context.Background(), store.Options{DatabaseURL: url, Box: storetest.Box(t), DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()

	var mu sync.Mutex
	inflight, total, overlaps := map[string]int{}, map[string]int{}, 0
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Webhook-Id")
		mu.Lock()
		inflight[id]++
		total[id]++
		if inflight[id] > 1 {
			overlaps++
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inflight[id]--
		mu.Unlock()
	}))
	defer h.Close()
	f := newFlow(t, a, "invoices", flowDef(webhook(h.URL)))
	runs := newRuns(t, a, f, 60)
	o := fastOptions()
	o.Workers, o.PerEndpoint = 4, 4
	for _, s := range []*store.Store{a, b, a, b} {
		startWorker(t, s, o)
	}
	for _, r := range runs {
		waitRun(t, a, r.PublicID, store.RunDelivered)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlaps != 0 {
		t.Errorf("got %d concurrent deliveries of one run", overlaps)
	}
	if len(total) != len(runs) {
		t.Errorf("got %d runs delivered, want %d", len(total), len(runs))
	}
	for id, n := range total {
		if n != 1 {
			t.Errorf("run %s delivered %d times", id, n)
		}
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t)
		h.delay = 300 * time.Millisecond
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		r := newRun(t, s, f)
		_, stop := startWorker(t, s, fastOptions())
		testwait.Until(t, 10*time.Second, func() error {
			if h.inflight.Load() == 0 {
				return errors.New("no delivery in flight")
			}
			return nil
		})
		stop() // returns once the delivery is done and recorded
		got, attempts, err := s.GetRun(context.Background(), r.PublicID)
		if err != nil || got.Status != store.RunDelivered || len(attempts) != 1 {
			t.Errorf("after shutdown got %s %+v, %v; want delivered", got.Status, attempts, err)
		}
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		target := newHook(t)
		h := newHook(t, response{code: 307, header: map[string]string{"Location": target.URL}})
		f := newFlow(t, s, "invoices", flowDef(webhook(h.URL)))
		r := newRun(t, s, f)
		startWorker(t, s, fastOptions())
		got, _ := waitRun(t, s, r.PublicID, store.RunFailed)
		if !strings.Contains(got.LastError, "redirects are not followed") || len(target.got()) != 0 {
			t.Errorf("got %q and %d requests at the target", got.LastError, len(target.got()))
		}
	})
}

// TestQueueStore covers the store queries the worker relies on.
func TestQueueStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, ok, err := s.NextDue(ctx); err != nil || ok {
			t.Fatalf("empty queue: got %v, %v", ok, err)
		}
		f := newFlow(t, s, "invoices", flowDef(webhook("http://127.0.0.1:1/")))
		r := newRun(t, s, f)
		due, ok, err := s.NextDue(ctx)
		if err != nil || !ok || !due.Equal(r.NextAttemptAt) {
			t.Fatalf("got %v %v %v, want %v", due, ok, err, r.NextAttemptAt)
		}
		if n, err := s.QueueDepth(ctx); err != nil || n != 1 {
			t.Errorf("got depth %d, %v", n, err)
		}

		// A claimed run is not due; released, it is again, without an attempt.
		claimed, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("got %v, %v", claimed, err)
		}
		if _, ok, err := s.NextDue(ctx); err != nil || ok {
			t.Errorf("with the run claimed: got %v, %v, want none due", ok, err)
		}
		later := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		if err := s.ReleaseRun(ctx, claimed[0].ID, later); err != nil {
			t.Fatal(err)
		}
		got, attempts, err := s.GetRun(ctx, r.PublicID)
		if err != nil || got.Status != store.RunPending || got.Attempts != 0 || len(attempts) != 0 || !got.NextAttemptAt.Equal(later) {
			t.Errorf("released: got %+v %v, %v", got, attempts, err)
		}
		if due, ok, _ := s.NextDue(ctx); !ok || !due.Equal(later) {
			t.Errorf("released: got next due %v %v, want %v", due, ok, later)
		}
		if again, _ := s.ClaimRuns(ctx, time.Now(), 10, time.Minute); len(again) != 0 {
			t.Errorf("claimed %d runs released until later", len(again))
		}

		// Several released in one transaction, each at its own time.
		more := newRuns(t, s, f, 2)
		claimed, err = s.ClaimRuns(ctx, time.Now(), 10, time.Minute)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("got %v, %v", claimed, err)
		}
		soon := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
		if err := s.ReleaseRuns(ctx, []store.Release{{RunID: claimed[0].ID, Next: soon}, {RunID: claimed[1].ID, Next: later}}); err != nil {
			t.Fatal(err)
		}
		for _, m := range more {
			got, attempts, err := s.GetRun(ctx, m.PublicID)
			if err != nil || got.Status != store.RunPending || len(attempts) != 0 || !(got.NextAttemptAt.Equal(soon) || got.NextAttemptAt.Equal(later)) {
				t.Errorf("released together: got %+v %v, %v", got, attempts, err)
			}
		}
		if due, ok, _ := s.NextDue(ctx); !ok || !due.Equal(soon) {
			t.Errorf("released together: got next due %v %v, want %v", due, ok, soon)
		}
	})
}

// lockedBuffer is a bytes.Buffer for a logger that goroutines share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
