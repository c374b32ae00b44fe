package graphsource_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
)

const user = "alerts@contoso.example"

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	fake *graphfake.Server
	cfg  imapconf.Config
	logs *syncBuffer
}

func setup(t *testing.T, folders ...string) *env {
	t.Helper()
	fake := graphfake.New(t)
	fake.AddUser(user, folders...)
	return &env{
		fake: fake,
		logs: &syncBuffer{},
		cfg: imapconf.Config{
			Type:            imapconf.TypeMSGraph,
			Username:        user,
			TenantID:        graphfake.TenantID,
			ClientID:        graphfake.ClientID,
			ClientSecret:    graphfake.ClientSecret,
			GraphURL:        fake.URL,
			AuthorityURL:    fake.URL,
			CACert:          fake.CACert,
			Folder:          imapconf.DefaultFolder,
			AfterProcessing: imapconf.AfterNone,
			Backlog:         imapconf.BacklogAll,
		},
	}
}

func (e *env) client(t *testing.T, opts graphsource.Options) *graphsource.Client {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := graphsource.New(e.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logs := e.logs.String()
		if strings.Contains(logs, e.cfg.ClientSecret) || strings.Contains(logs, "fake-token-") {
			t.Errorf("the logs hold a secret or a token:\n%s", logs)
		}
	})
	return c
}

// rawMessage makes a message with the awkward bytes a MIME reader must keep:
// CRLF and bare LF, 8-bit header bytes, lines starting with ".", a long line.
func rawMessage(i int) []byte {
	return fmt.Appendf(nil, "From: Sender <s@example.com>\r\nTo: %s\r\nSubject: Alert %d caf\xe9\r\n"+
		"Message-ID: <m%d@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\n"+
		".leading dot\r\n..two dots\r\n.\r\nbare lf\nlong %s\r\n\xff\xfe end\r\n",
		user, i, i, strings.Repeat("x", 9000))
}

// collect runs Delta and returns the messages fn got and the new link.
func collect(t *testing.T, c *graphsource.Client, link string, during func(n int)) ([]graphsource.Message, string) {
	t.Helper()
	var got []graphsource.Message
	next, err := c.Delta(context.Background(), link, func(m graphsource.Message) error {
		got = append(got, m)
		if during != nil {
			during(len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Delta: %v", err)
	}
	if next == "" {
		t.Fatal("Delta returned no deltaLink")
	}
	return got, next
}

func countRequests(fake *graphfake.Server, method, contains, query string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Method == method && strings.Contains(r.Path, contains) && (query == "" || r.Query.Has(query)) {
			n++
		}
	}
	return n
}

func TestDeltaPagingIncrementalAndRawMIME(t *testing.T) {
	e := setup(t)
	want := map[string][]byte{}
	for i := range 25 {
		raw := rawMessage(i)
		want[e.fake.AddMessage(user, raw)] = raw
	}
	c := e.client(t, graphsource.Options{PageSize: 10})
	got, link := collect(t, c, "", nil)
	if len(got) != 25 {
		t.Fatalf("got %d messages, want 25", len(got))
	}
	for _, m := range got {
		if !bytes.Equal(m.Raw, want[m.ID]) {
			t.Errorf("message %s: raw MIME differs (%d bytes, want %d)", m.ID, len(m.Raw), len(want[m.ID]))
		}
		if m.TooLarge || m.Size != int64(len(want[m.ID])) {
			t.Errorf("message %s: size %d too large %v", m.ID, m.Size, m.TooLarge)
		}
		delete(want, m.ID)
	}
	if len(want) != 0 {
		t.Errorf("%d messages never reported", len(want))
	}
	if n := countRequests(e.fake, "GET", "/messages/delta", ""); n != 3 {
		t.Errorf("%d delta requests, want 3 pages", n)
	}
	if n := countRequests(e.fake, "GET", "/messages/delta", "$skiptoken"); n != 2 {
		t.Errorf("%d delta requests followed a nextLink, want 2", n)
	}
	if !strings.Contains(link, "$deltatoken=") && !strings.Contains(link, "%24deltatoken=") {
		t.Errorf("deltaLink %q has no delta token", link)
	}

	// Incremental: only what arrived since.
	id1 := e.fake.AddMessage(user, rawMessage(100))
	id2 := e.fake.AddMessage(user, rawMessage(101))
	got, link2 := collect(t, c, link, nil)
	if len(got) != 2 || got[0].ID != id1 || got[1].ID != id2 {
		t.Fatalf("incremental delta got %v, want [%s %s]", ids(got), id1, id2)
	}
	got, _ = collect(t, c, link2, nil)
	if len(got) != 0 {
		t.Fatalf("nothing new, yet delta got %v", ids(got))
	}
	if n := e.fake.TokensIssued(); n != 1 {
		t.Errorf("%d tokens issued, want 1 (cached)", n)
	}
}

func ids(ms []graphsource.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestTokenExpiresMidRun(t *testing.T) {
	e := setup(t)
	for i := range 12 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	c := e.client(t, graphsource.Options{PageSize: 5})
	got, _ := collect(t, c, "", func(n int) {
		if n == 3 || n == 8 {
			e.fake.ExpireTokens()
		}
	})
	if len(got) != 12 {
		t.Fatalf("got %d messages, want 12", len(got))
	}
	if n := e.fake.TokensIssued(); n != 3 {
		t.Errorf("%d tokens issued, want 3 (one, then one per expiry)", n)
	}
	if n := countRequestsStatus(e.fake, 401); n != 2 {
		t.Errorf("%d requests refused with 401, want 2", n)
	}
}

// TestShortLivedTokens: tokens that live less than oauth2's ten-second
// margin are renewed before each use rather than sent and refused.
func TestShortLivedTokens(t *testing.T) {
	e := setup(t)
	e.fake.SetTokenLifetime(time.Second)
	for i := range 3 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	c := e.client(t, graphsource.Options{})
	// A slow reader, on purpose: tokens expire between the pages.
	got, _ := collect(t, c, "", func(int) { time.Sleep(300 * time.Millisecond) })
	if len(got) != 3 {
		t.Fatalf("got %d messages, want 3", len(got))
	}
	if n := e.fake.TokensIssued(); n < 2 {
		t.Errorf("%d tokens issued, want a renewal", n)
	}
	if n := countRequestsStatus(e.fake, 401); n != 0 {
		t.Errorf("%d requests sent with an expired token", n)
	}
}

func countRequestsStatus(fake *graphfake.Server, status int) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Status == status {
			n++
		}
	}
	return n
}

func TestThrottlingHonoursRetryAfter(t *testing.T) {
	e := setup(t)
	for i := range 3 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	e.fake.Inject(graphfake.Fault{Method: "GET", PathContains: "/messages/delta", Status: 429, RetryAfter: "1",
		Code: "TooManyRequests", Message: "Application is over its MailboxConcurrency limit."})
	e.fake.Inject(graphfake.Fault{Method: "GET", PathContains: "/$value", Status: 503, RetryAfter: "0"})
	c := e.client(t, graphsource.Options{})
	start := time.Now()
	got, _ := collect(t, c, "", nil)
	elapsed := time.Since(start)
	if len(got) != 3 {
		t.Fatalf("got %d messages, want 3", len(got))
	}
	if elapsed < time.Second {
		t.Errorf("Delta took %v: Retry-After: 1 was not honoured", elapsed)
	}
	var t429, tNext time.Time
	for _, r := range e.fake.Requests() {
		if r.Status == 429 {
			t429 = r.Time
		} else if !t429.IsZero() && tNext.IsZero() && strings.Contains(r.Path, "/messages/delta") {
			tNext = r.Time
		}
	}
	if t429.IsZero() || tNext.Sub(t429) < time.Second {
		t.Errorf("the retry came %v after the 429, want at least 1s", tNext.Sub(t429))
	}
	if countRequestsStatus(e.fake, 503) != 1 {
		t.Error("the 503 was not served")
	}

	// Throttled for good: a bounded number of retries, then ErrThrottled.
	for range 3 {
		e.fake.Inject(graphfake.Fault{PathContains: "/messages/delta", Status: 429, RetryAfter: "0"})
	}
	c2 := e.client(t, graphsource.Options{MaxRetries: 2})
	_, err := c2.Delta(context.Background(), "", func(graphsource.Message) error { return nil })
	if !errors.Is(err, graphsource.ErrThrottled) {
		t.Errorf("err = %v, want ErrThrottled", err)
	}
}

func TestExpiredDeltaTokenResyncs(t *testing.T) {
	e := setup(t)
	for i := range 4 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	c := e.client(t, graphsource.Options{})
	_, link := collect(t, c, "", nil)
	e.fake.ExpireDeltaTokens()
	_, err := c.Delta(context.Background(), link, func(graphsource.Message) error { return nil })
	if !errors.Is(err, graphsource.ErrResync) {
		t.Fatalf("err = %v, want ErrResync", err)
	}
	var se *graphsource.StepError
	if !errors.As(err, &se) || se.Step != graphsource.StepDelta || !strings.Contains(err.Error(), "syncStateNotFound") {
		t.Errorf("err = %v, want a delta step error with syncStateNotFound", err)
	}
	// The caller restarts from scratch; Known skips what it recorded.
	recorded := map[string]bool{}
	for _, m := range e.fake.Messages(user, "inbox")[:3] {
		recorded[m.ID] = true
	}
	c2 := e.client(t, graphsource.Options{Known: func(id string) bool { return recorded[id] }})
	got, _ := collect(t, c2, "", nil)
	if len(got) != 1 || recorded[got[0].ID] {
		t.Errorf("resync got %v, want only the one unrecorded message", ids(got))
	}
}

func TestPrimeSkipsExistingMail(t *testing.T) {
	e := setup(t)
	for i := range 7 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	c := e.client(t, graphsource.Options{PageSize: 3})
	link, err := c.Prime(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := countRequests(e.fake, "GET", "/$value", ""); n != 0 {
		t.Errorf("Prime fetched %d bodies", n)
	}
	id := e.fake.AddMessage(user, rawMessage(7))
	got, _ := collect(t, c, link, nil)
	if len(got) != 1 || got[0].ID != id {
		t.Errorf("after Prime got %v, want only %s", ids(got), id)
	}
}

func TestSizeCapKeepsHeader(t *testing.T) {
	e := setup(t)
	raw := rawMessage(1)
	e.fake.AddMessage(user, raw)
	c := e.client(t, graphsource.Options{SizeCap: 1024})
	got, _ := collect(t, c, "", nil)
	if len(got) != 1 {
		t.Fatalf("got %d messages", len(got))
	}
	m := got[0]
	header := raw[:bytes.Index(raw, []byte("\r\n\r\n"))+4]
	if !m.TooLarge || m.Size != int64(len(raw)) || !bytes.Equal(m.Raw, header) {
		t.Errorf("TooLarge %v Size %d Raw %q; want true, %d, the header", m.TooLarge, m.Size, m.Raw, len(raw))
	}
}

func TestApply(t *testing.T) {
	e := setup(t, "Processed")
	var idsIn []string
	for i := range 4 {
		idsIn = append(idsIn, e.fake.AddMessage(user, rawMessage(i)))
	}
	c := e.client(t, graphsource.Options{})
	ctx := context.Background()

	if err := c.Apply(ctx, imapconf.AfterSeen, "", idsIn[:1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, imapconf.AfterMove, "Processed", idsIn[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, imapconf.AfterDelete, "", idsIn[2:3]); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, imapconf.AfterNone, "", idsIn[3:]); err != nil {
		t.Fatal(err)
	}
	inbox := e.fake.Messages(user, "inbox")
	if len(inbox) != 2 || inbox[0].ID != idsIn[0] || !inbox[0].IsRead || inbox[1].ID != idsIn[3] || inbox[1].IsRead {
		t.Errorf("inbox after apply: %+v", summary(inbox))
	}
	if p := e.fake.Messages(user, "Processed"); len(p) != 1 || !bytes.Equal(p[0].Raw, rawMessage(1)) {
		t.Errorf("Processed after move: %+v", summary(p))
	}
	if d := e.fake.Messages(user, "deleteditems"); len(d) != 1 || !bytes.Equal(d[0].Raw, rawMessage(2)) {
		t.Errorf("Deleted Items after delete: %+v", summary(d))
	}
	// Redone after a crash: the messages are gone from their old ids.
	for _, a := range []string{imapconf.AfterMove, imapconf.AfterDelete} {
		if err := c.Apply(ctx, a, "Processed", idsIn[1:3]); err != nil {
			t.Errorf("redoing %s: %v", a, err)
		}
	}
	if err := c.Apply(ctx, imapconf.AfterMove, "No Such Folder", idsIn[3:]); err == nil {
		t.Error("move to a missing folder succeeded")
	}
	// The deletion is reported as a removal to the delta, which skips it.
	got, _ := collect(t, c, "", nil)
	if len(got) != 2 {
		t.Errorf("delta after apply got %v, want the 2 left in the inbox", ids(got))
	}
}

func summary(ms []graphfake.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s read=%v", m.ID, m.IsRead))
	}
	return out
}

func TestTestConnection(t *testing.T) {
	e := setup(t, "Alerts")
	e.fake.AddMessageTo(user, "Alerts", rawMessage(1))
	e.fake.AddMessageTo(user, "Alerts", rawMessage(2))
	ctx := context.Background()
	opts := graphsource.Options{}

	cfg := e.cfg
	cfg.Folder = "Alerts"
	if r := graphsource.Test(ctx, cfg, opts); !r.OK || r.Messages != 2 || r.Unread != 2 {
		t.Errorf("Test = %+v, want ok with 2 messages", r)
	}

	cases := []struct {
		name          string
		edit          func(*imapconf.Config)
		step, inError string
	}{
		{"wrong secret", func(c *imapconf.Config) { c.ClientSecret = "wrong~Secret.Value_9876543210" }, graphsource.StepToken, "AADSTS7000215"},
		{"unknown tenant", func(c *imapconf.Config) { c.TenantID = "contoso.invalid" }, graphsource.StepToken, "AADSTS90002"},
		{"unknown client", func(c *imapconf.Config) { c.ClientID = "00000000-0000-0000-0000-000000000001" }, graphsource.StepToken, "AADSTS700016"},
		{"unknown mailbox", func(c *imapconf.Config) { c.Username = "nobody@contoso.example" }, graphsource.StepMailbox, "ErrorInvalidUser"},
		{"unknown folder", func(c *imapconf.Config) { c.Folder = "Nope" }, graphsource.StepFolder, `no folder named "Nope"`},
		{"untrusted certificate", func(c *imapconf.Config) { c.CACert = "" }, graphsource.StepToken, "certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.cfg
			tc.edit(&cfg)
			r := graphsource.Test(ctx, cfg, opts)
			if r.OK || r.Step != tc.step || !strings.Contains(r.Error, tc.inError) {
				t.Errorf("Test = %+v, want step %q with %q", r, tc.step, tc.inError)
			}
			if strings.Contains(r.Error, cfg.ClientSecret) {
				t.Errorf("the error shows the secret: %s", r.Error)
			}
		})
	}

	// A wrong secret matches ErrAuth.
	cfg = e.cfg
	cfg.ClientSecret = "wrong~Secret.Value_9876543210"
	c, err := graphsource.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Prime(ctx)
	if !errors.Is(err, graphsource.ErrAuth) || strings.Contains(err.Error(), cfg.ClientSecret) {
		t.Errorf("Prime with a wrong secret: %v, want ErrAuth without the secret", err)
	}
}

// TestSecretRedacted uses a secret that Microsoft's own messages would
// repeat, to prove the errors are scrubbed.
func TestSecretRedacted(t *testing.T) {
	e := setup(t)
	secret := "nobody@contoso.example"
	e.fake.SetClientSecret(secret)
	cfg := e.cfg
	cfg.ClientSecret = secret
	cfg.Username = secret
	r := graphsource.Test(context.Background(), cfg, graphsource.Options{})
	if r.OK || r.Step != graphsource.StepMailbox || strings.Contains(r.Error, secret) || !strings.Contains(r.Error, "[redacted]") {
		t.Errorf("Test = %+v, want a mailbox failure with the secret redacted", r)
	}
	c, err := graphsource.New(cfg, graphsource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Delta(context.Background(), "", func(graphsource.Message) error { return nil })
	var se *graphsource.StepError
	if err == nil || strings.Contains(err.Error(), secret) || !errors.As(err, &se) || se.Step != graphsource.StepFolder {
		t.Errorf("Delta: %v, want a folder step error without the secret", err)
	}
}

func TestCallbackErrorStopsDelta(t *testing.T) {
	e := setup(t)
	for i := range 3 {
		e.fake.AddMessage(user, rawMessage(i))
	}
	c := e.client(t, graphsource.Options{})
	boom := errors.New("store failed")
	link, err := c.Delta(context.Background(), "", func(graphsource.Message) error { return boom })
	if err != boom || link != "" {
		t.Errorf("Delta = %q, %v; want no link and the callback's error as is", link, err)
	}
}
