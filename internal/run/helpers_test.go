package run_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testLogger writes to the test log when MAILTRIGGER_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("MAILTRIGGER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// fastOptions are options with waits small enough for tests.
func fastOptions() run.Options {
	return run.Options{BackoffBase: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond, PollInterval: 50 * time.Millisecond}
}

// startWorker runs a worker on s until the test ends (or stop is called).
func startWorker(t *testing.T, s *store.Store, o run.Options) (w *run.Worker, stop func()) {
	t.Helper()
	w = run.New(run.Deps{Store: s, Logger: testLogger(t), Options: o})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop within 30 s")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// hook is a webhook receiver: it records every request and answers with
// the responses queued, then with 200 "ok".
type hook struct {
	*httptest.Server
	mu        sync.Mutex
	requests  []received
	responses []response
	delay     time.Duration
	jitter    time.Duration // each answer waits delay plus up to this more, at random
	inflight  atomic.Int32
	maxFlight atomic.Int32
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

type response struct {
	code   int
	header map[string]string
	body   string
}

func newHook(t *testing.T, responses ...response) *hook {
	t.Helper()
	h := &hook{responses: responses}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	n := h.inflight.Add(1)
	defer h.inflight.Add(-1)
	for {
		m := h.maxFlight.Load()
		if n <= m || h.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests = append(h.requests, received{header: r.Header.Clone(), body: body, at: time.Now()})
	resp := response{code: 200, body: "ok"}
	if len(h.responses) > 0 {
		resp, h.responses = h.responses[0], h.responses[1:]
	}
	delay := h.delay
	if h.jitter > 0 {
		delay += rand.N(h.jitter)
	}
	h.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-r.Context().Done(): // the client gave up
		return
	}
	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.code)
	io.WriteString(w, resp.body)
}

func (h *hook) got() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.requests...)
}

// flowDef returns a flow definition with one webhook activity per URL.
func flowDef(activities ...map[string]any) string {
	def := map[string]any{"name": "f", "enabled": true,
		"start":      map[string]any{"emailTrigger": map[string]any{"imap": "inbox", "subject": "Invoice"}},
		"activities": activities}
	data, _ := json.Marshal(def)
	return string(data)
}

func webhook(url string) map[string]any {
	return map[string]any{"type": "webhook", "url": url}
}

var imapSeq atomic.Int64

// newFlow creates an IMAP configuration and a flow named name on it with
// definition def and one fresh secret per activity.
func newFlow(t testing.TB, s *store.Store, name, def string) store.FlowRecord {
	t.Helper()
	ctx := context.Background()
	c := imapconf.Config{Name: fmt.Sprintf("inbox_%d", imapSeq.Add(1)), ServerType: "imaps", Type: "generic", Enabled: true,
		Host: "imap.example.com", Port: 993, Username: "support@example.com", Password: "pw", Folder: "INBOX",
		TLS: "implicit", AfterProcessing: "none", PollInterval: 60, Backlog: "new", Auth: "password"}
	if err := s.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	var parsed struct{ Activities []json.RawMessage }
	if err := json.Unmarshal([]byte(def), &parsed); err != nil {
		t.Fatal(err)
	}
	f := store.FlowRecord{Name: name, IMAPID: c.ID, IMAPName: c.Name, Enabled: true, Definition: def}
	for range parsed.Activities {
		f.Secrets = append(f.Secrets, run.NewSecret())
	}
	if err := s.CreateFlow(ctx, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

var uidSeq atomic.Uint32

const sampleMessage = "From: Ann Example <ann@example.com>\r\nTo: support@example.com\r\nCc: Bob <bob@example.com>\r\n" +
	"Reply-To: billing@example.com\r\nSubject: Invoice 42\r\nDate: Mon, 02 Jun 2025 10:00:00 +0200\r\n" +
	"Message-ID: <inv42@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease pay <now> & soon.\r\n" +
	"--b\r\nContent-Type: application/pdf; name=invoice.pdf\r\nContent-Disposition: attachment; filename=invoice.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
	"--b\r\nContent-Type: text/csv; name=lines.csv\r\nContent-Disposition: attachment; filename=lines.csv\r\n\r\n" +
	"a,b\r\n1,2\r\n--b--\r\n"

// newRuns records n messages on f's mailbox, each starting one run of f,
// as ingest does, and returns the runs.
func newRuns(t testing.TB, s *store.Store, f store.FlowRecord, n int) []store.Run {
	t.Helper()
	var b store.Batch
	b.IMAPID, b.IMAPName = f.IMAPID, f.IMAPName
	for range n {
		uid := uidSeq.Add(1)
		raw := []byte(sampleMessage)
		b.Messages = append(b.Messages, store.Incoming{UID: uid, Raw: raw, Msg: mail.Parse(raw), Seen: time.Now()})
		b.Epoch, b.Checkpoint = 1, &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid}
	}
	var runs []store.Run
	_, _, err := s.RecordBatch(context.Background(), b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
		r := store.Run{FlowID: f.ID, FlowName: f.Name, MessageID: id, IMAPName: f.IMAPName, ReceivedAt: in.Seen}
		if _, err := tx.CreateRun(ctx, &r); err != nil {
			return err
		}
		runs = append(runs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func newRun(t *testing.T, s *store.Store, f store.FlowRecord) store.Run {
	t.Helper()
	return newRuns(t, s, f, 1)[0]
}

// waitRun waits until run id has a status in want, and returns it.
func waitRun(t *testing.T, s *store.Store, id string, want ...string) (store.Run, []store.Attempt) {
	t.Helper()
	var r store.Run
	var attempts []store.Attempt
	testwait.Until(t, 20*time.Second, func() error {
		var err error
		r, attempts, err = s.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(want, r.Status) {
			return nil
		}
		return fmt.Errorf("run %s is %s (attempts %+v), want %v", id, r.Status, attempts, want)
	})
	return r, attempts
}

// waitAttempts waits until run id has at least n attempts.
func waitAttempts(t *testing.T, s *store.Store, id string, n int) (store.Run, []store.Attempt) {
	t.Helper()
	var r store.Run
	var attempts []store.Attempt
	testwait.Until(t, 20*time.Second, func() error {
		var err error
		r, attempts, err = s.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(attempts) >= n {
			return nil
		}
		return fmt.Errorf("run %s has %d attempts, want %d", id, len(attempts), n)
	})
	return r, attempts
}
