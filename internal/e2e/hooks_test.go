package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/run"
)

// signatureTolerance is how far a webhook-timestamp may be from the
// listener's clock, as the Standard Webhooks libraries allow by default.
const signatureTolerance = 5 * time.Minute

// hookResponse is what the listener answers one request on a path.
type hookResponse struct {
	status int
	header map[string]string
	body   string
	delay  time.Duration // before answering
}

// hookPath is one webhook endpoint of the listener: the secret its
// deliveries must be signed with, and how it answers.
type hookPath struct {
	secret string
	// respond returns the answer to the path's n-th request (1-based); nil
	// answers 200.
	respond func(n int) hookResponse
	n       int
}

// hookPayload is the webhook body as DESIGN.md §4 and docs/webhooks.md
// describe it; unknown fields are ignored, as a receiver does.
type hookPayload struct {
	Version int    `json:"version"`
	Type    string `json:"type"`
	Run     struct {
		ID          string    `json:"id"`
		Flow        string    `json:"flow"`
		Attempt     int       `json:"attempt"`
		TriggeredAt time.Time `json:"triggeredAt"`
	} `json:"run"`
	IMAP    string `json:"imap"`
	Message struct {
		ID        int64  `json:"id"`
		MessageID string `json:"messageId"`
		Subject   string `json:"subject"`
		From      []struct {
			Name    string `json:"name"`
			Address string `json:"address"`
		} `json:"from"`
		Text string `json:"text"`
	} `json:"message"`
}

// delivery is one request the listener took whole.
type delivery struct {
	path       string
	at         time.Time // when the request arrived
	id, ts     string    // webhook-id, webhook-timestamp
	idemKey    string    // Idempotency-Key
	body       []byte
	payload    hookPayload
	payloadErr error // the body is not the documented JSON
	sigErr     error // nil when the signature verified
	answered   int   // the status code the listener answered
}

// hookListener is the tests' own webhook endpoint on 127.0.0.1: every
// request it takes is verified against its path's secret with the
// documented algorithm and recorded.
type hookListener struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	paths      map[string]*hookPath
	deliveries []delivery
	incomplete int // requests whose body did not arrive whole (the sender was killed)
	unknown    int // requests on a path without a hookPath
}

func newHookListener(t *testing.T) *hookListener {
	t.Helper()
	l := &hookListener{t: t, paths: map[string]*hookPath{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

// handle registers path with the secret its deliveries are signed with and
// how it answers (nil: 200), and returns its URL.
func (l *hookListener) handle(path, secret string, respond func(n int) hookResponse) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths[path] = &hookPath{secret: secret, respond: respond}
	return l.srv.URL + path
}

// setSecret sets the secret of path (a generated one, learnt from the flow's
// create response).
func (l *hookListener) setSecret(path, secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths[path].secret = secret
}

// setResponder replaces how path answers from its next request on.
func (l *hookListener) setResponder(path string, respond func(n int) hookResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths[path].respond = respond
}

func (l *hookListener) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil || r.Method != http.MethodPost {
		// The service died while sending: not a delivery.
		l.mu.Lock()
		l.incomplete++
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	p := l.paths[r.URL.Path]
	if p == nil {
		l.unknown++
		l.mu.Unlock()
		http.Error(w, "no such hook", http.StatusNotFound)
		return
	}
	p.n++
	resp := hookResponse{status: http.StatusOK, body: "ok"}
	if p.respond != nil {
		resp = p.respond(p.n)
	}
	secret := p.secret
	l.mu.Unlock()

	d := delivery{path: r.URL.Path, at: at, id: r.Header.Get("webhook-id"), ts: r.Header.Get("webhook-timestamp"),
		idemKey: r.Header.Get("Idempotency-Key"), body: body, answered: resp.status}
	d.sigErr = verifySignature(secret, r.Header, body, at)
	// The service's own Verify must agree with the documented algorithm.
	if err := run.Verify(secret, r.Header, body, signatureTolerance); (err == nil) != (d.sigErr == nil) {
		d.sigErr = fmt.Errorf("run.Verify says %v, the documented algorithm says %v", err, d.sigErr)
	}
	d.payloadErr = json.Unmarshal(body, &d.payload)
	if ct := r.Header.Get("Content-Type"); d.payloadErr == nil && !strings.HasPrefix(ct, "application/json") {
		d.payloadErr = fmt.Errorf("Content-Type %q, want application/json", ct)
	}

	if resp.delay > 0 {
		time.Sleep(resp.delay)
	}
	// Recorded before the answer, so that a run the service records as
	// delivered is always among the deliveries.
	l.mu.Lock()
	l.deliveries = append(l.deliveries, d)
	l.mu.Unlock()
	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.status)
	io.WriteString(w, resp.body)
}

// verifySignature checks a delivery per the Standard Webhooks convention as
// DESIGN.md §4 and docs/webhooks.md state it, without the service's code:
// the secret is whsec_ and base64, the HMAC key is its decoded bytes, and
// webhook-signature holds (among space-separated others) "v1," and the
// base64 HMAC-SHA256 of "webhook-id.webhook-timestamp.body"; the timestamp
// is within signatureTolerance of now.
func verifySignature(secret string, h http.Header, body []byte, now time.Time) error {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return fmt.Errorf("the test's secret %q has no whsec_ prefix", secret)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("the test's secret is not base64: %v", err)
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("headers webhook-id %q, webhook-timestamp %q, webhook-signature %q: one is missing", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > signatureTolerance || d < -signatureTolerance {
		return fmt.Errorf("webhook-timestamp %s is %v from now", ts, d)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for s := range strings.FieldsSeq(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("webhook-signature %q holds no valid v1 signature", sigs)
}

// all returns a copy of the deliveries so far.
func (l *hookListener) all() []delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]delivery(nil), l.deliveries...)
}

// on returns the deliveries on path so far.
func (l *hookListener) on(path string) []delivery {
	var out []delivery
	for _, d := range l.all() {
		if d.path == path {
			out = append(out, d)
		}
	}
	return out
}

// counts returns the incomplete requests and those on unknown paths.
func (l *hookListener) counts() (incomplete, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.incomplete, l.unknown
}

// checkDelivery reports what is wrong with d as a delivery of a run of flow
// from mailbox imap: a signature that does not verify, a body that is not the
// documented payload, a run id that is not the webhook-id.
func checkDelivery(d delivery, flow, imap string) error {
	var errs []error
	if d.sigErr != nil {
		errs = append(errs, fmt.Errorf("signature: %w", d.sigErr))
	}
	if d.payloadErr != nil {
		errs = append(errs, fmt.Errorf("payload: %w", d.payloadErr))
	}
	p := d.payload
	if p.Run.ID == "" || p.Run.ID != d.id {
		errs = append(errs, fmt.Errorf("run.id %q, webhook-id %q: want equal and not empty", p.Run.ID, d.id))
	}
	if d.idemKey != d.id {
		errs = append(errs, fmt.Errorf("Idempotency-Key %q, want the webhook-id %q", d.idemKey, d.id))
	}
	if p.Version != 1 {
		errs = append(errs, fmt.Errorf("version %d, want 1", p.Version))
	}
	if p.Run.Flow != flow {
		errs = append(errs, fmt.Errorf("run.flow %q, want %q", p.Run.Flow, flow))
	}
	if p.IMAP != imap {
		errs = append(errs, fmt.Errorf("imap %q, want %q", p.IMAP, imap))
	}
	if p.Run.Attempt < 1 {
		errs = append(errs, fmt.Errorf("run.attempt %d, want at least 1", p.Run.Attempt))
	}
	if p.Run.TriggeredAt.IsZero() || p.Message.ID == 0 {
		errs = append(errs, fmt.Errorf("run.triggeredAt %v, message.id %d: want both set", p.Run.TriggeredAt, p.Message.ID))
	}
	return errors.Join(errs...)
}

// bareID is a Message-ID without its angle brackets.
func bareID(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// fastRetryEnv makes the service retry failed deliveries within about a
// second, and take up again within 3 s a run that a killed incarnation left
// "delivering".
var fastRetryEnv = []string{
	"MAILTRIGGER_RETRY_BASE=300ms",
	"MAILTRIGGER_RETRY_MAX=1s",
	"MAILTRIGGER_RUN_LEASE=3s",
}

// flowSpec is a flow the tests create.
type flowSpec struct {
	name, imap, subject, match string
	ignoreReplyPrefixes        bool
	url                        string
	secret                     string // "": generated by the service
}

// createFlow creates f and returns its signing secret: f.secret, or the one
// the service generated and showed once in its answer.
func createFlow(s *service, c *client.Client, f flowSpec) string {
	s.t.Helper()
	act := map[string]any{"type": "webhook", "url": f.url, "headers": map[string]string{"X-E2E-Flow": f.name}, "timeout": "10s"}
	if f.secret != "" {
		act["secret"] = f.secret
	}
	body := map[string]any{
		"name": f.name, "enabled": true,
		"start": map[string]any{"emailTrigger": map[string]any{
			"imap": f.imap, "subject": f.subject, "match": f.match, "ignoreReplyPrefixes": f.ignoreReplyPrefixes}},
		"activities": []any{act},
	}
	var v api.FlowView
	if err := c.Do(context.Background(), http.MethodPost, "/api/v1/flows", body, &v); err != nil {
		s.fatalf("creating flow %s: %v", f.name, err)
	}
	if len(v.Activities) != 1 || !v.Activities[0].HasSecret {
		s.fatalf("flow %s created with activities %+v, want one with a secret", f.name, v.Activities)
	}
	got := v.Activities[0].Secret
	switch {
	case f.secret == "" && !strings.HasPrefix(got, "whsec_"):
		s.fatalf("flow %s saved without a secret: the answer shows secret %q, want a generated whsec_… shown once", f.name, got)
	case f.secret != "" && got != "":
		s.fatalf("flow %s saved with a secret: the answer shows it again", f.name)
	case f.secret != "":
		return f.secret
	}
	// Shown once: reading the flow again does not show it.
	var again api.FlowView
	if err := c.Do(context.Background(), http.MethodGet, "/api/v1/flows/"+url.PathEscape(f.name), nil, &again); err != nil {
		s.fatalf("reading flow %s: %v", f.name, err)
	}
	if len(again.Activities) != 1 || again.Activities[0].Secret != "" || !again.Activities[0].HasSecret {
		s.fatalf("flow %s read again shows activities %+v, want hasSecret and no secret", f.name, again.Activities)
	}
	return got
}

// listRuns returns every run matching query (flow, imap, status), newest
// first, following the cursor.
func listRuns(s *service, c *client.Client, query url.Values) []api.RunView {
	s.t.Helper()
	var out []api.RunView
	cursor := ""
	for range 100 {
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("limit", "500")
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page client.List[api.RunView]
		if err := c.Do(context.Background(), http.MethodGet, "/api/v1/runs?"+q.Encode(), nil, &page); err != nil {
			s.fatalf("listing runs %v: %v", query, err)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	s.fatalf("listing runs %v: more than 100 pages", query)
	return nil
}

// getRun returns run id with its attempts.
func getRun(s *service, c *client.Client, id string) api.RunView {
	s.t.Helper()
	var v api.RunView
	if err := c.Do(context.Background(), http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, &v); err != nil {
		s.fatalf("reading run %s: %v", id, err)
	}
	return v
}

// listMessages returns every recorded message of mailbox imap ("": all).
func listMessages(s *service, c *client.Client, imap string) []client.Message {
	s.t.Helper()
	var out []client.Message
	cursor := ""
	for range 100 {
		page, err := c.ListMessages(context.Background(), imap, 500, cursor)
		if err != nil {
			s.fatalf("listing messages of %q: %v", imap, err)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	s.fatalf("listing messages of %q: more than 100 pages", imap)
	return nil
}

// mailMessage returns a plain-text message; subject is the raw header value
// (RFC 2047 encoded words as they are).
func mailMessage(messageID, to, subject, text string) []byte {
	return fmt.Appendf(nil, "From: Sender <sender@example.org>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n"+
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		to, subject, messageID, text)
}

// poll is waitFor with a longer interval, for conditions that read lists
// through the API.
func poll(s *service, within, every time.Duration, what string, cond func() (ok bool, detail any)) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.fatalf("waiting for %s: not within %v; last: %+v", what, within, detail)
		}
		time.Sleep(every)
	}
}

// TestVerifySignatureVector checks the listener's own verification against
// the Standard Webhooks test vector that docs/webhooks.md quotes.
func TestVerifySignatureVector(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9ub3RoaXM= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	secret, body, at := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)
	if err := verifySignature(secret, h, body, at); err != nil {
		t.Errorf("the test vector: %v, want valid", err)
	}
	if err := verifySignature(secret, h, []byte(`{"test": 2432232315}`), at); err == nil {
		t.Errorf("the test vector with another body: valid, want invalid")
	}
	if err := verifySignature(secret, h, body, at.Add(6*time.Minute)); err == nil {
		t.Errorf("the test vector 6 minutes later: valid, want a timestamp outside the tolerance")
	}
}
