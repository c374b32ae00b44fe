package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/server"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	adminName     = "admin"
	adminPassword = "correct-horse-battery"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeStatus plays the watchers: the tests set each configuration's state.
type fakeStatus struct {
	mu sync.Mutex
	m  map[string]imapconf.Status
}

func (f *fakeStatus) set(name string, st imapconf.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[strings.ToLower(name)] = st
}

func (f *fakeStatus) status(c imapconf.Config) *imapconf.Status {
	if !c.Enabled {
		return &imapconf.Status{State: imapconf.StateDisabled}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.m[strings.ToLower(c.Name)]
	if !ok {
		return &imapconf.Status{State: imapconf.StateConnecting, Since: time.Now()}
	}
	return &st
}

// harness is the whole HTTP surface (API and UI, as serve assembles it) on a
// real listener, with a user admin.
type harness struct {
	t      *testing.T
	st     *store.Store
	ui     *UI
	url    string
	srv    *httptest.Server
	status *fakeStatus
	rt     *controlfake.Runtime
	logs   *syncBuffer
}

func newHarness(t *testing.T, st *store.Store, tlsServer bool) *harness {
	t.Helper()
	return newHarnessWith(t, st, tlsServer, nil)
}

// newHarnessWith is newHarness whose runtime tune may change (e.g. to pass
// Changed and Status on to real watchers logging to log) before the UI is
// built.
func newHarnessWith(t *testing.T, st *store.Store, tlsServer bool, tune func(log *slog.Logger, rt *controlfake.Runtime)) *harness {
	t.Helper()
	h := &harness{t: t, st: st, logs: &syncBuffer{}, status: &fakeStatus{m: map[string]imapconf.Status{}}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.rt = &controlfake.Runtime{StatusOf: h.status.status,
		TestWith: func(ctx context.Context, c imapconf.Config) any {
			return imapsource.Test(ctx, c, imapsource.Options{Logger: log})
		},
		ClusterView: func(context.Context) (store.ClusterView, error) { return sampleCluster(), nil }}
	if tune != nil {
		tune(log, h.rt)
	}
	ui, err := New(Deps{Store: st, Logger: log, Version: "test", Runtime: h.rt})
	if err != nil {
		t.Fatal(err)
	}
	h.ui = ui
	handler := server.Handler(server.Deps{Store: st, Logger: log, WebRoutes: ui.Routes})
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(handler)
	} else {
		srv = httptest.NewServer(handler)
	}
	t.Cleanup(srv.Close)
	h.url, h.srv = srv.URL, srv
	hash, err := auth.HashPassword(adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetUserPassword(context.Background(), adminName, hash); err != nil {
		t.Fatal(err)
	}
	return h
}

// client is an HTTP client with its own cookie jar that does not follow
// redirects, so that the tests see them.
func (h *harness) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login logs c in as admin.
func (h *harness) login(c *http.Client) {
	h.t.Helper()
	resp := h.post(c, "/login", url.Values{"username": {adminName}, "password": {adminPassword}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/imap" {
		h.t.Fatalf("login: got %d to %q, want 303 to /imap", resp.StatusCode, resp.Header.Get("Location"))
	}
}

type response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

func (h *harness) do(c *http.Client, req *http.Request) response {
	h.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(data)}
}

func (h *harness) get(c *http.Client, path string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(c, req)
}

// post sends a form as a browser on the same origin does.
func (h *harness) post(c *http.Client, path string, form url.Values) response {
	h.t.Helper()
	return h.postWith(c, path, form, map[string]string{"Origin": h.url, "Sec-Fetch-Site": "same-origin"})
}

func (h *harness) postWith(c *http.Client, path string, form url.Values, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return h.do(c, req)
}

func p[T any](v T) *T { return &v }

// seed holds what seedData stored, secrets included, for the tests to look for.
type seed struct {
	Secrets []string
	RunID   string
	Message int64
}

// seedData stores configurations of every kind, flows, messages and runs,
// as a real installation has them.
func seedData(t *testing.T, st *store.Store, fs *fakeStatus) seed {
	t.Helper()
	ctx := context.Background()
	var s seed
	mk := func(in imapconf.Input) imapconf.Config {
		t.Helper()
		c, err := imapconf.Build(in, nil)
		if err != nil {
			t.Fatalf("building %s: %v", *in.Name, err)
		}
		if err := st.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		s.Secrets = append(s.Secrets, c.Password, c.ClientSecret)
		return c
	}
	support := mk(imapconf.Input{Name: p("support_inbox"), Description: p("Customer tickets from the web form and the shop"),
		Host: p("imap.example.com"), Port: p(993), Username: p("support@example.com"), Password: p("Seed-Support-App-Pass-9f2c")})
	mk(imapconf.Input{Name: p("invoices_m365"), Type: p("msgraph"), Description: p("Vendor invoices (Microsoft 365)"),
		Username: p("invoices@contoso.com"), TenantID: p("contoso.onmicrosoft.com"),
		ClientID: p("11111111-2222-3333-4444-555555555555"), ClientSecret: p("Seed-Graph-Client-Secret-77ab")})
	mk(imapconf.Input{Name: p("orders"), Description: p("Order confirmations"), Host: p("imap.gmail.com"), Port: p(993),
		Username: p("orders@example.com"), Password: p("Seed-Orders-App-Pass-1d4e")})
	mk(imapconf.Input{Name: p("legacy_pop"), ServerType: p("pop3s"), Description: p("Old POP3 mailbox, kept for reference"),
		Enabled: p(false), Host: p("pop.example.net"), Port: p(995), Username: p("legacy@example.net"),
		Password: p("Seed-Legacy-Pop-Pass-5c3a")})
	mk(imapconf.Input{Name: p("oauth_gmail"), Description: p("Workspace mailbox over XOAUTH2"), Host: p("imap.gmail.com"),
		Port: p(993), Username: p("ops@example.com"), Auth: p("oauth2"), TokenURL: p("https://oauth2.googleapis.com/token"),
		ClientID: p("ops-client"), ClientSecret: p("Seed-OAuth-Client-Secret-0e9d"), Scope: p("https://mail.google.com/")})
	now := time.Now().UTC()
	ago := now.Add(-3 * time.Minute)
	fs.set("support_inbox", imapconf.Status{State: imapconf.StateIdle, Since: now.Add(-2 * time.Hour), LastMessageAt: &ago, MessagesIngested: 42})
	fs.set("invoices_m365", imapconf.Status{State: imapconf.StateSyncing, Since: now, BacklogDone: 40, BacklogTotal: 120})
	errAt := now.Add(-time.Minute)
	fs.set("orders", imapconf.Status{State: imapconf.StateAuthFailed, Since: now.Add(-10 * time.Minute),
		LastError: "login: authentication failed: [AUTHENTICATIONFAILED] Invalid credentials", LastErrorAt: &errAt, Reconnects: 3})
	fs.set("oauth_gmail", imapconf.Status{State: imapconf.StateAuthFailed, Since: now.Add(-time.Minute), LastErrorAt: &errAt,
		LastError: "token: token endpoint answered HTTP 401: invalid_client: The OAuth client was not found."})

	f, _, err := flow.Build(flow.Input{Name: p("invoice_to_erp"), Description: p("Posts vendor invoices to the ERP's intake endpoint"),
		Start: &flow.StartInput{EmailTrigger: &flow.TriggerInput{IMAP: p("support_inbox"), Subject: p("Invoice"),
			Match: p("prefix"), IgnoreReplyPrefixes: p(true)}},
		Activities: []flow.ActivityInput{{URL: p("https://erp.example.com/hooks/invoice"), Secret: p("whsec_U2VlZFdlYmhvb2tTZWNyZXQxMjM0NTY3OA=="),
			Headers: map[string]string{"Authorization": "Bearer seed-erp-header-token-3b1f"}, Timeout: p("20s")}}}, nil, flow.NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	// Header values are write-only secrets too.
	s.Secrets = append(s.Secrets, f.Activities[0].Secret, "seed-erp-header-token-3b1f")
	if err := st.CreateFlow(ctx, &store.FlowRecord{Name: f.Name, IMAPID: support.ID, Enabled: true, Definition: f.Definition(), Secrets: f.Secrets()}); err != nil {
		t.Fatal(err)
	}
	f2, _, err := flow.Build(flow.Input{Name: p("support_tickets"),
		Start:      &flow.StartInput{EmailTrigger: &flow.TriggerInput{IMAP: p("support_inbox"), Subject: p("Ticket"), Match: p("contains")}},
		Activities: []flow.ActivityInput{{URL: p("https://helpdesk.example.com/api/mail")}}}, nil, flow.NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	s.Secrets = append(s.Secrets, f2.Activities[0].Secret)
	if err := st.CreateFlow(ctx, &store.FlowRecord{Name: f2.Name, IMAPID: support.ID, Enabled: true, Definition: f2.Definition(), Secrets: f2.Secrets()}); err != nil {
		t.Fatal(err)
	}

	// A day of mail: older messages first, as a mailbox receives them.
	type msg struct {
		from, subject string
		seen          time.Time
	}
	var msgs []msg
	others := []struct{ from, subject string }{
		{`"Dana Whitfield" <dana@initech.example>`, "Out of office: back on Monday"},
		{`"Mail Delivery Subsystem" <mailer-daemon@example.com>`, "Delivery Status Notification (Failure)"},
		{`"Priya Raman" <priya.raman@example.org>`, "Ticket #55%02d: refund request"},
		{`"Shop" <no-reply@shop.example>`, "Your order has shipped"},
		{`"Initech Accounts" <ar@initech.example>`, "Invoice 2024-1%02d from Initech"},
		{`"Tom Becker" <tom@example.com>`, "Meeting notes"},
	}
	for k := 23; k >= 0; k-- {
		o := others[k%len(others)]
		subj := o.subject
		if strings.Contains(subj, "%02d") {
			subj = fmt.Sprintf(subj, 20+k)
		}
		msgs = append(msgs, msg{o.from, subj, now.Add(-time.Duration(40+k*k*2) * time.Minute)})
	}
	msgs = append(msgs,
		msg{`"Globex Billing" <billing@globex.example>`, "Invoice 2024-114 from Globex", now.Add(-31 * time.Minute)},
		msg{`"Newsletter" <news@vendor.example>`, "Newsletter: November", now.Add(-25 * time.Minute)},
		msg{`"Marco Rossi" <marco@example.net>`, "Ticket #5512: cannot log in", now.Add(-17 * time.Minute)},
		msg{`"Acme Billing" <billing@acme.example>`, "Re: Invoice 2024-108", now.Add(-9 * time.Minute)},
		msg{`"Acme Billing" <billing@acme.example>`, "Invoice 2024-113 from Acme GmbH", now.Add(-2 * time.Second)})
	var batch []store.Incoming
	for i, m := range msgs {
		raw := fmt.Sprintf("From: %s\r\nTo: support@example.com\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <seed%d@example.com>\r\n\r\n"+
			"Hello,\r\nplease find the details below.\r\n", m.from, m.subject, m.seen.Add(-time.Minute).Format(time.RFC1123Z), i)
		batch = append(batch, store.Incoming{UID: uint32(i + 1), Raw: []byte(raw), Msg: mail.Parse([]byte(raw)), Seen: m.seen})
	}
	rec, _, err := st.RecordBatch(ctx, store.Batch{IMAPID: support.ID, IMAPName: support.Name,
		Epoch: 7, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: uint32(len(batch))}, Messages: batch}, flow.Hook(st))
	if err != nil {
		t.Fatal(err)
	}
	s.Message = rec[len(rec)-1].ID // Invoice 2024-113
	runs, err := st.ClaimRuns(ctx, time.Now().Add(time.Second), 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		started := time.Now()
		switch {
		case r.MessageID == s.Message:
			// Two failures, then left retrying: the run of the screenshot.
			st.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: started, Duration: 412 * time.Millisecond, StatusCode: 503,
				Error: "HTTP 503 Service Unavailable", Response: `{"error":"maintenance","retryAfter":60}`}, store.RunRetrying, time.Now().Add(time.Minute))
			st.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: started.Add(61 * time.Second), Duration: 20 * time.Second,
				Error: "Post \"https://erp.example.com/hooks/invoice\": context deadline exceeded (timeout 20s)"}, store.RunRetrying, time.Now().Add(4*time.Minute))
			s.RunID = r.PublicID
		case r.MessageID == rec[len(rec)-3].ID:
			// The ticket: refused by the help desk, failed at once.
			st.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: started, Duration: 143 * time.Millisecond, StatusCode: 410,
				Error: "HTTP 410 Gone: not retried", Response: `{"error":"endpoint retired"}`}, store.RunFailed, time.Now())
		default:
			st.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: started, Duration: 87 * time.Millisecond, StatusCode: 202,
				Response: `{"accepted":true}`}, store.RunDelivered, time.Now())
		}
	}
	if s.RunID == "" {
		t.Fatal("seed: no run for the invoice")
	}
	return s
}

func mustStatus(state string) imapconf.Status {
	return imapconf.Status{State: state, Since: time.Now()}
}

// sampleCluster is the replica view the harness's settings page shows: two
// replicas on PostgreSQL, one of them silent.
func sampleCluster() store.ClusterView {
	t := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	return store.ClusterView{Self: "web-1-3f9a2c", Database: store.Postgres, Leasing: true, LeaseTTLSeconds: 15,
		Replicas: []store.ReplicaView{
			{Replica: store.Replica{ID: "web-1-3f9a2c", Address: "http://10.0.0.11:8080", Version: "v1.2.0", Mailboxes: 12,
				StartedAt: t.Add(-time.Hour), HeartbeatAt: t}, Live: true, Self: true},
			{Replica: store.Replica{ID: "web-2-81d0e4", Address: "http://10.0.0.12:8080", Version: "v1.2.0", Mailboxes: 11,
				StartedAt: t.Add(-time.Hour), HeartbeatAt: t.Add(-40 * time.Second)}, Live: false},
		}}
}
