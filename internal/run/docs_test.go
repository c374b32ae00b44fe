package run_test

import (
	"bytes"
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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

const docsPath = "../../docs/webhooks.md"

// docBlock returns the fenced code block that follows the marker
// <!-- test:name --> in docs/webhooks.md.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- test:"+name+" -->\n")
	if !ok {
		t.Fatalf("%s: no <!-- test:%s --> marker", docsPath, name)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s: no code block after the %s marker", docsPath, name)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the info string
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s: the %s block is not closed", docsPath, name)
	}
	return block
}

// The Go example of docs/webhooks.md, verbatim: TestGoExampleIsTheDocs
// keeps the two the same.

// docs:begin
// verifyWebhook checks that a request comes from mailtrigger: body is the
// raw request body, secret the activity's whsec_… secret.
func verifyWebhook(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("bad secret: %w", err)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("missing or bad webhook-timestamp")
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook-timestamp too old or too new")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		version, b64, _ := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// handleMail receives mailtrigger's webhooks; process must do nothing
// when it sees a run id a second time.
func handleMail(secret string, process func(runID string, body []byte) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 100<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := verifyWebhook(secret, r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized) // fails the run
			return
		}
		if err := process(r.Header.Get("webhook-id"), body); err != nil {
			http.Error(w, "try again later", http.StatusServiceUnavailable) // retried
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// docs:end

func TestGoExampleIsTheDocs(t *testing.T) {
	src, err := os.ReadFile("docs_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "// docs:"+"begin\n")
	mirror, _, ok := strings.Cut(rest, "\n// docs:"+"end")
	if !ok || !strings.Contains(mirror, "func verifyWebhook") {
		t.Fatal("docs_test.go: no example between the docs markers")
	}
	if doc := docBlock(t, "verify.go"); strings.TrimSpace(doc) != strings.TrimSpace(mirror) {
		t.Errorf("the Go example in %s and the code between the docs markers in docs_test.go differ; make them the same", docsPath)
	}
}

// signed returns headers of a delivery of body signed with secret at ts.
func signed(t *testing.T, secret, id string, ts time.Time, body []byte, extra ...string) http.Header {
	t.Helper()
	sig, err := run.Sign(secret, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Webhook-Id", id)
	h.Set("Webhook-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("Webhook-Signature", strings.Join(append(extra, sig), " "))
	return h
}

func TestGoExampleVerifies(t *testing.T) {
	secret, other := run.NewSecret(), run.NewSecret()
	body := []byte(`{"version":1,"type":"email.received","message":{"subject":"Ünïcode & <html>"}}`)
	now := time.Now()
	cases := []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		ok     bool
	}{
		{"valid", secret, signed(t, secret, "run_a", now, body), body, true},
		{"several signatures", secret, signed(t, secret, "run_a", now, body, "v1,bm90IGl0", "v2,whatever"), body, true},
		{"other secret", other, signed(t, secret, "run_a", now, body), body, false},
		{"tampered body", secret, signed(t, secret, "run_a", now, body), append(bytes.Clone(body), ' '), false},
		{"other id", secret, func() http.Header {
			h := signed(t, secret, "run_a", now, body)
			h.Set("Webhook-Id", "run_b")
			return h
		}(), body, false},
		{"old", secret, signed(t, secret, "run_a", now.Add(-6*time.Minute), body), body, false},
		{"future", secret, signed(t, secret, "run_a", now.Add(6*time.Minute), body), body, false},
		{"no headers", secret, http.Header{}, body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verifyWebhook(c.secret, c.header, c.body)
			if (err == nil) != c.ok {
				t.Errorf("docs example: got %v, want ok %v", err, c.ok)
			}
			err = run.Verify(c.secret, c.header, c.body, 5*time.Minute)
			if (err == nil) != c.ok {
				t.Errorf("run.Verify: got %v, want ok %v", err, c.ok)
			}
		})
	}
}

// TestGoExampleReceivesDeliveries points a flow at the docs' handler: real
// deliveries verify, and a retried delivery carries the same webhook-id.
func TestGoExampleReceivesDeliveries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		var mu sync.Mutex
		seen := map[string]int{}
		calls := 0
		var secret string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handleMail(secret, func(runID string, body []byte) error {
				var p run.Payload
				if err := json.Unmarshal(body, &p); err != nil || p.Run.ID != runID {
					t.Errorf("got %v %s, want run %s", err, body, runID)
				}
				mu.Lock()
				defer mu.Unlock()
				calls++
				seen[runID]++
				if calls == 1 {
					return errors.New("busy") // 503: retried
				}
				return nil
			})(w, r)
		}))
		defer srv.Close()
		f := newFlow(t, s, "invoices", flowDef(webhook(srv.URL)))
		secret = f.Secrets[0]
		r := newRun(t, s, f)
		startWorker(t, s, fastOptions())
		got, attempts := waitRun(t, s, r.PublicID, store.RunDelivered, store.RunFailed)
		if got.Status != store.RunDelivered || len(attempts) != 2 || attempts[0].StatusCode != 503 || attempts[1].StatusCode != 204 {
			t.Errorf("got %s %+v, want delivered at the second attempt", got.Status, attempts)
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[r.PublicID] != 2 {
			t.Errorf("got %v, want run %s twice", seen, r.PublicID)
		}

		// A request not from mailtrigger gets 401.
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got %d for an unsigned request, want 401", resp.StatusCode)
		}
	})
}

// TestShellExampleVerifies runs the shell example of docs/webhooks.md with
// bash and openssl against bodies signed by Sign.
func TestShellExampleVerifies(t *testing.T) {
	for _, prog := range []string{"bash", "openssl", "base64", "od"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("the shell example needs %s: apt-get install bash openssl coreutils", prog)
		}
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "verify-webhook.sh")
	if err := os.WriteFile(script, []byte(docBlock(t, "verify-webhook.sh")), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := run.NewSecret()
	// A body with what a shell might mangle: %, backslashes, quotes, a
	// trailing newline, UTF-8, a NUL-free binary-ish run.
	body := []byte("{\"subject\":\"100% \\\\ \\\"quoted\\\" $HOME `x` Ünïcode\",\"text\":\"a\\nb\"}\n\n")
	now := time.Now()
	cases := []struct {
		name   string
		secret string
		id     string
		ts     time.Time
		sig    string // "" means: signed properly
		body   []byte
		ok     bool
	}{
		{"valid", secret, "run_abc", now, "", body, true},
		{"several signatures", secret, "run_abc", now, "v1,bm90IGl0 *", body, true},
		{"other secret", run.NewSecret(), "run_abc", now, "", body, false},
		{"tampered body", secret, "run_abc", now, "", append(bytes.Clone(body), 'x'), false},
		{"old", secret, "run_abc", now.Add(-10 * time.Minute), "", body, false},
		{"future", secret, "run_abc", now.Add(10 * time.Minute), "", body, false},
		{"no signature", secret, "run_abc", now, "-", body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig, err := run.Sign(secret, c.id, c.ts, body) // always over the original body
			if err != nil {
				t.Fatal(err)
			}
			switch c.sig {
			case "":
			case "-":
				sig = ""
			default:
				sig = c.sig + " " + sig
			}
			file := filepath.Join(t.TempDir(), "body.json")
			if err := os.WriteFile(file, c.body, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", script, c.id, strconv.FormatInt(c.ts.Unix(), 10), sig, file)
			cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+c.secret)
			out, err := cmd.CombinedOutput()
			if (err == nil) != c.ok {
				t.Errorf("got %v, want ok %v; output:\n%s", err, c.ok, out)
			}
			if c.ok && strings.TrimSpace(string(out)) != "valid" {
				t.Errorf("got output %q, want valid", out)
			}
		})
	}
}

// TestStandardWebhooksVector checks Sign, Verify and the docs' examples
// against the Standard Webhooks test vector that the docs quote.
func TestStandardWebhooksVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	body := []byte(`{"test": 2432232314}`)
	got, err := run.Sign(secret, id, time.Unix(1614265330, 0), body)
	if err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, id, "1614265330", string(body), want} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("the docs do not quote %s", s)
		}
	}
}
