package golden_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/run"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var update = flag.Bool("update", false, "rewrite testdata/golden from what the code produces (SQLite)")

// seen is the receive time of every message: the views carry it.
var seen = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// baseURL makes the payloads' attachment URLs absolute.
const baseURL = "https://mailtrigger.example"

// sample is one message of the corpus, as ingest prepares it.
type sample struct {
	name string
	in   store.Incoming
}

// corpus returns the messages of testdata/messages (the mail package's
// test corpus: bodies, malformed, awkward, fuzz seeds, bench messages)
// and generated ones: a message over the size cap (only its header kept)
// and two above the spool threshold.
func corpus(t *testing.T) []sample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "messages", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []sample
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sample{strings.TrimSuffix(filepath.Base(f), ".eml"), ingest.Prepare(0, raw, int64(len(raw)), false)})
	}
	over := []byte("From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: Scans =?utf-8?q?f=C3=BCr?= you\r\n" +
		"Date: Tue, 24 Nov 2026 09:00:00 +0100\r\nMessage-ID: <scans@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	out = append(out, sample{"gen-over-cap", ingest.Prepare(0, over, 60<<20, true)})
	out = append(out, sample{"gen-big-multipart", big(t, bigMultipart())})
	// A multipart left unclosed: ParseFile reports it as Parse does.
	out = append(out, sample{"gen-big-malformed", big(t, bigMalformed())})
	return out
}

// spooled is a message in a file, as the spool holds one.
type spooled struct {
	*os.File
	size int64
}

func (f spooled) Size() int64 { return f.size }

// big prepares a message above the spool threshold as ingest does one a
// source handed over in a spool file: parsed from the file (ParseFile),
// recorded from it (Big), in chunks.
func big(t *testing.T, raw []byte) store.Incoming {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "big.eml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(raw); err != nil {
		t.Fatal(err)
	}
	return ingest.PrepareFile(0, spooled{f, int64(len(raw))})
}

// oldWay returns in as the code before each message was stored once
// prepared and recorded it: parsed in memory, with the decoded copies and
// no layout.
func oldWay(t *testing.T, in store.Incoming) store.Incoming {
	t.Helper()
	if in.Big != nil {
		raw := make([]byte, in.Big.Size())
		if _, err := in.Big.ReadAt(raw, 0); err != nil {
			t.Fatal(err)
		}
		in = ingest.Prepare(0, raw, int64(len(raw)), false)
	}
	m := *in.Msg
	m.Layout = nil
	in.Msg = &m
	return in
}

// lines wraps s at 76 columns with CRLF.
func lines(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

// noise returns n reproducible pseudo-random bytes.
func noise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// bigMultipart is a 3.5 MB message: quoted-printable Latin-1 text, HTML,
// a 2.5 MB base64 attachment and a quoted-printable text attachment.
func bigMultipart() []byte {
	var b strings.Builder
	b.WriteString("From: =?iso-8859-1?Q?J=FCrgen?= <j@example.org>\r\nTo: a@example.com\r\nSubject: Scans\r\n" +
		"Date: Tue, 24 Nov 2026 09:00:00 +0100\r\nMessage-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"==outer==\"\r\n\r\n--==outer==\r\n" +
		"Content-Type: multipart/alternative; boundary=\"==inner==\"\r\n\r\n--==inner==\r\n" +
		"Content-Type: text/plain; charset=\"iso-8859-1\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(strings.Repeat("Gr=FC=DFe aus M=FCnchen, anbei die Scans. Ein langer Satz, der umbrochen w=\r\nird.\r\n", 2000))
	b.WriteString("--==inner==\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(lines(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("<p>Gr\u00fc\u00dfe &amp; Scans</p>\n", 3000)))))
	b.WriteString("--==inner==--\r\n--==outer==\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(lines(base64.StdEncoding.EncodeToString(noise(1, 2500<<10))))
	b.WriteString("--==outer==\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(strings.Repeat("caf=C3=A9 =3D 1\r\n", 1000))
	b.WriteString("--==outer==--\r\n")
	return []byte(b.String())
}

// bigMalformed is a 2 MB message whose attachment's base64 is broken and
// whose closing boundary never comes.
func bigMalformed() []byte {
	var b strings.Builder
	b.WriteString("From: b@example.org\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" +
		"--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--x\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Disposition: attachment; filename=data.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(noise(2, 1500<<10))
	b.WriteString(lines(enc[:len(enc)/2] + "~~!!" + enc[len(enc)/2:]))
	return []byte(b.String())
}

// blob is one response as the golden files keep it: its status, the
// headers that matter, and its body (in full when short and text, else by
// length and hash).
type blob struct {
	Status int               `json:"status,omitempty"`
	Header map[string]string `json:"header,omitempty"`
	Len    int               `json:"len"`
	SHA256 string            `json:"sha256"`
	Body   *string           `json:"body,omitempty"`
}

func newBlob(status int, h http.Header, body []byte) blob {
	sum := sha256.Sum256(body)
	b := blob{Status: status, Len: len(body), SHA256: hex.EncodeToString(sum[:])}
	if h != nil {
		b.Header = map[string]string{}
		for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Security-Policy", "X-Content-Type-Options"} {
			if v := h.Get(k); v != "" {
				b.Header[k] = v
			}
		}
	}
	if len(body) <= 16<<10 && utf8.Valid(body) {
		s := string(body)
		b.Body = &s
	}
	return b
}

// record is everything the golden file of one message holds.
type record struct {
	Name                   string `json:"name"`
	View                   blob   `json:"view"`
	Raw                    blob   `json:"raw"`
	Attachments            []blob `json:"attachments"`
	Webhook                blob   `json:"webhook"`
	WebhookWithAttachments blob   `json:"webhookWithAttachments"`
}

// hook receives the webhooks of the two activities: /plain and /full.
type hook struct {
	mu     sync.Mutex
	bodies map[string]map[int64][]byte // path → message id → body
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	var p struct{ Message struct{ ID int64 } }
	if err := json.Unmarshal(body, &p); err != nil {
		w.WriteHeader(400)
		return
	}
	h.mu.Lock()
	h.bodies[r.URL.Path][p.Message.ID] = body
	h.mu.Unlock()
	io.WriteString(w, "ok")
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies["/plain"]) + len(h.bodies["/full"])
}

// volatile is what differs from run to run in a payload: the run's id
// and creation time.
var volatile = regexp.MustCompile(`^\{"version":1,"type":"email.received","run":\{"id":"[^"]*","flow":"f","attempt":1,"triggeredAt":"[^"]*"\}`)

func normalise(t *testing.T, body []byte) []byte {
	t.Helper()
	loc := volatile.FindIndex(body)
	if loc == nil {
		t.Fatalf("payload does not start as expected: %.200s", body)
	}
	return append([]byte(`{"version":1,"type":"email.received","run":{"id":"RUN","flow":"f","attempt":1,"triggeredAt":"T"}`), body[loc[1]:]...)
}

// env is a store with the corpus's flow, the API on a real listener and
// the webhook receiver.
type env struct {
	st    *store.Store
	flow  store.FlowRecord
	api   string
	token string
	hook  *hook
	hookS *httptest.Server
}

func newEnv(t *testing.T, st *store.Store) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{st: st, hook: &hook{bodies: map[string]map[int64][]byte{"/plain": {}, "/full": {}}}}
	e.hookS = httptest.NewServer(e.hook)
	t.Cleanup(e.hookS.Close)
	c := imapconf.Config{Name: "inbox", ServerType: "imaps", Type: "generic", Enabled: true,
		Host: "imap.example.com", Port: 993, Username: "support@example.com", Password: "pw", Folder: "INBOX",
		TLS: "implicit", AfterProcessing: "none", PollInterval: 60, Backlog: "new", Auth: "password"}
	if err := st.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	def, _ := json.Marshal(map[string]any{"name": "f", "enabled": true,
		"start": map[string]any{"emailTrigger": map[string]any{"imap": "inbox", "subject": "x"}},
		"activities": []map[string]any{
			{"type": "webhook", "url": e.hookS.URL + "/plain"},
			{"type": "webhook", "url": e.hookS.URL + "/full", "includeAttachments": true},
		}})
	e.flow = store.FlowRecord{Name: "f", IMAPID: c.ID, IMAPName: c.Name, Enabled: true, Definition: string(def),
		Secrets: []string{run.NewSecret(), run.NewSecret()}}
	if err := st.CreateFlow(ctx, &e.flow); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.Handler(server.Deps{Store: st, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	e.api = srv.URL
	tok, hash := auth.NewToken()
	if err := st.CreateToken(ctx, "golden", hash); err != nil {
		t.Fatal(err)
	}
	e.token = tok
	return e
}

// record records the samples as ingest does, in batches, each message
// starting one run of the flow; it returns the message ids in order.
func (e *env) record(t *testing.T, samples []sample) []int64 {
	t.Helper()
	var ids []int64
	for start := 0; start < len(samples); start += 50 {
		b := store.Batch{IMAPID: e.flow.IMAPID, IMAPName: e.flow.IMAPName, Epoch: 1}
		for i, s := range samples[start:min(start+50, len(samples))] {
			in := s.in
			in.UID, in.Seen = uint32(start+i+1), seen
			b.Messages = append(b.Messages, in)
		}
		rec, skipped, err := e.st.RecordBatch(context.Background(), b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
			r := store.Run{FlowID: e.flow.ID, FlowName: e.flow.Name, MessageID: id, IMAPName: e.flow.IMAPName, ReceivedAt: in.Seen}
			_, err := tx.CreateRun(ctx, &r)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if skipped != 0 || len(rec) != len(b.Messages) {
			t.Fatalf("recorded %d of %d messages, skipped %d", len(rec), len(b.Messages), skipped)
		}
		for _, r := range rec {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func (e *env) get(t *testing.T, path string) (blob, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.api+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return newBlob(resp.StatusCode, resp.Header, body), body
}

// deliver runs the worker until every message's two webhooks arrived.
func (e *env) deliver(t *testing.T, n int) {
	t.Helper()
	w := run.New(run.Deps{Store: e.st, Logger: slog.New(slog.DiscardHandler),
		Options: run.Options{BaseURL: baseURL, PollInterval: 50 * time.Millisecond, BackoffBase: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	testwait.Until(t, 2*time.Minute, func() error {
		if got := e.hook.count(); got < 2*n {
			return fmt.Errorf("%d of %d webhooks arrived; runs not delivered: %s", got, 2*n, e.undelivered())
		}
		return nil
	})
}

// undelivered describes the runs not delivered yet (why a delivery is
// missing when the wait gives up).
func (e *env) undelivered() string {
	runs, err := e.st.ListRuns(context.Background(), store.RunFilter{}, 0, 1000)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, r := range runs {
		if r.Status != store.RunDelivered && len(out) < 5 {
			out = append(out, fmt.Sprintf("run %d %s after %d attempts (%q)", r.ID, r.Status, r.Attempts, r.LastError))
		}
	}
	return strings.Join(out, "; ")
}

// collect returns every message's record.
func (e *env) collect(t *testing.T, samples []sample, ids []int64) []record {
	t.Helper()
	e.deliver(t, len(ids))
	var out []record
	for i, id := range ids {
		r := record{Name: samples[i].name, Attachments: []blob{}}
		var view []byte
		r.View, view = e.get(t, fmt.Sprintf("/api/v1/messages/%d", id))
		r.Raw, _ = e.get(t, fmt.Sprintf("/api/v1/messages/%d/raw", id))
		var v struct{ Attachments []struct{ URL string } }
		if err := json.Unmarshal(view, &v); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		for _, a := range v.Attachments {
			b, _ := e.get(t, a.URL)
			r.Attachments = append(r.Attachments, b)
		}
		e.hook.mu.Lock()
		plain, full := e.hook.bodies["/plain"][id], e.hook.bodies["/full"][id]
		e.hook.mu.Unlock()
		r.Webhook = newBlob(0, nil, normalise(t, plain))
		r.WebhookWithAttachments = newBlob(0, nil, normalise(t, full))
		out = append(out, r)
	}
	return out
}

// compare checks recs against the golden files (or writes them with
// -update).
func compare(t *testing.T, recs []record, write bool) {
	t.Helper()
	dir := filepath.Join("testdata", "golden")
	if write {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs {
		got, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		file := filepath.Join(dir, r.Name+".json")
		if write {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (run with -update to record)", r.Name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n%s", r.Name, file, firstDiff(string(want), string(got)))
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); !write && len(files) != len(recs) {
		t.Errorf("%d golden files, %d messages", len(files), len(recs))
	}
}

// firstDiff shows the first line where got differs from want.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  want %.600s\n  got  %.600s", i+1, a, b)
		}
	}
	return ""
}

// openStore opens a fresh store of dialect d and, beside it, a connection
// to its database, to look at its rows.
func openStore(t *testing.T, d store.Dialect) (*store.Store, *sql.DB) {
	t.Helper()
	o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
	if d == store.Postgres {
		o.DatabaseURL = testenv.PostgresURL(t)
	}
	st, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var db *sql.DB
	if d == store.Postgres {
		db, err = sql.Open("pgx", o.DatabaseURL)
	} else {
		db, err = sql.Open("sqlite", "file:"+st.SQLitePath()+"?_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return st, db
}

// storedOnce counts the messages stored once (with a layout) and those
// stored in chunks.
func storedOnce(t *testing.T, db *sql.DB) (once, chunked int) {
	t.Helper()
	if err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM messages WHERE layout <> ''),
		(SELECT COUNT(DISTINCT message_id) FROM message_chunks)`).Scan(&once, &chunked); err != nil {
		t.Fatal(err)
	}
	return once, chunked
}

// TestGolden records the corpus and compares what the API and the
// webhooks show of it with testdata/golden, on SQLite and PostgreSQL.
func TestGolden(t *testing.T) {
	samples := corpus(t)
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			st, db := openStore(t, d)
			e := newEnv(t, st)
			ids := e.record(t, samples)
			once, chunked := storedOnce(t, db)
			t.Logf("%d of %d messages stored once, %d in chunks", once, len(ids), chunked)
			if once == 0 || chunked != 2 {
				t.Errorf("%d messages stored once and %d in chunks, want some and 2", once, chunked)
			}
			compare(t, e.collect(t, samples, ids), *update && d == store.SQLite)
		})
	}
}

// TestGoldenConverted records the corpus as the code before each message
// was stored once did (the decoded copies, no layout), has the store
// convert those rows as it does after migration 00011, and compares with
// the same golden files.
func TestGoldenConverted(t *testing.T) {
	samples := corpus(t)
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			st, db := openStore(t, d)
			e := newEnv(t, st)
			old := make([]sample, len(samples))
			for i, s := range samples {
				old[i] = sample{s.name, oldWay(t, s.in)}
			}
			ids := e.record(t, old)
			if once, _ := storedOnce(t, db); once != 0 {
				t.Fatalf("%d messages stored once by the old way", once)
			}
			// As migration 00011 leaves a database with messages.
			if _, err := db.ExecContext(ctx, `UPDATE message_conversion SET done_through = 0, upto = (SELECT MAX(id) FROM messages)`); err != nil {
				t.Fatal(err)
			}
			if _, err := st.ConvertMessages(ctx); err != nil {
				t.Fatal(err)
			}
			var through, upto int64
			if err := db.QueryRowContext(ctx, `SELECT done_through, upto FROM message_conversion`).Scan(&through, &upto); err != nil {
				t.Fatal(err)
			}
			if through != upto {
				t.Errorf("converted through %d of %d", through, upto)
			}
			once, _ := storedOnce(t, db)
			t.Logf("%d of %d messages converted", once, len(ids))
			if once == 0 {
				t.Error("no message converted")
			}
			compare(t, e.collect(t, samples, ids), false)
		})
	}
}
