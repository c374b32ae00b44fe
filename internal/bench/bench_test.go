package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"mailtrigger/internal/bench"
	"mailtrigger/internal/run"
)

// TestSmoke runs every scenario of the bench with tiny sizes, on SQLite and
// on a private PostgreSQL, against the real binary, and fails if any of
// them breaks: an error, a missing result, messages or runs missing, a run
// delivered twice, a webhook unsigned, a request inside a Retry-After. It
// writes no docs/benchmarks.md. The full run is manual (see that file).
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The service the bench measures by default: the product, built apart.
	bin, err := bench.BuildService(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	o := bench.Options{Binary: bin, Postgres: "private", WorkDir: t.TempDir(), Log: &log,
		LatencyMessages: 5, GapMin: 5 * time.Millisecond, GapMax: 20 * time.Millisecond,
		BacklogMessages: 30, Mailboxes: 20, Rest: 500 * time.Millisecond, Probes: 3, Runs: 200, BigSize: 1 << 20,
		Delays: []time.Duration{20 * time.Millisecond}, RemoteRuns: []int{30}, RetryRuns: 15, FairRuns: 20, SlowDelay: 300 * time.Millisecond}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, log.String())
	}
	for _, e := range rep.Errors {
		t.Errorf("scenario failed: %s", e)
	}
	want := map[string]int{"1 trigger latency": 4, "2 backlog ingest": 4, "3 idle mailboxes": 3, "4 delivery": 2, "5 big message": 3,
		"6 remote endpoint": 2, "7 Retry-After": 2, "8 fairness": 2}
	got := map[string]int{}
	for _, r := range rep.Results {
		got[r.Scenario]++
		if r.Value == "" {
			t.Errorf("%s %s: no value", r.Scenario, r.Metric)
		}
	}
	for s, n := range want {
		if got[s] != n {
			t.Errorf("scenario %s: %d results, want %d", s, got[s], n)
		}
	}
	var table strings.Builder
	if err := rep.Table(&table); err != nil {
		t.Fatal(err)
	}
	md := rep.Markdown("mailtrigger bench (smoke)")
	if !strings.Contains(md, "| 4 delivery | postgres |") || !strings.Contains(md, "<!-- bench:end -->") {
		t.Errorf("markdown section lacks the delivery result on postgres or its end marker:\n%s", md)
	}
	if t.Failed() {
		t.Logf("progress:\n%s\ntable:\n%s", log.String(), table.String())
	}
}

// TestWriteDoc checks that the generated section replaces only the one
// between the markers and keeps the hand-written rest.
func TestWriteDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\n## Micro-benchmarks\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &bench.Report{Results: []bench.Result{{Scenario: "4 delivery", Database: "sqlite", Metric: "m", Value: "v1"}}}
	if err := bench.WriteDoc(path, rep.Markdown("cmd")); err != nil {
		t.Fatal(err)
	}
	rep.Results[0].Value = "v2"
	if err := bench.WriteDoc(path, rep.Markdown("cmd")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "bench:begin") != 1 || strings.Contains(s, "v1") || !strings.Contains(s, "v2") || !strings.Contains(s, "## Micro-benchmarks\n\nkept") {
		t.Errorf("got\n%s\nwant one generated section with v2 and the hand-written section kept", s)
	}
	if !strings.HasPrefix(s, "# Benchmarks\n\n<!-- bench:begin") {
		t.Errorf("the generated section is not right after the title:\n%s", s)
	}
}

// TestReadHead: the webhook listener reads a real payload's run id and
// subject from its head alone, read from the request body a byte at a time
// (the text field's key split between reads) or in one go, and reads the
// body to its end.
func TestReadHead(t *testing.T) {
	p := run.Payload{Run: run.PayloadRun{ID: "run_1"}, Message: run.PayloadMessage{Subject: `Invoice ,"text": 1`,
		Text: strings.Repeat("body ", 20000)}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var heads [][]byte
	for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(b)), bytes.NewReader(b)} {
		head, err := bench.ReadHead(r)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Run struct {
				ID string `json:"id"`
			} `json:"run"`
			Message struct {
				Subject string `json:"subject"`
				Text    string `json:"text"`
			} `json:"message"`
		}
		if err := json.Unmarshal(head, &d); err != nil {
			t.Fatalf("%s: %v", head, err)
		}
		if d.Run.ID != "run_1" || d.Message.Subject != `Invoice ,"text": 1` || d.Message.Text != "" {
			t.Errorf("read %+v from %s", d, head)
		}
		if n, _ := r.Read(make([]byte, 1)); n != 0 {
			t.Error("ReadHead left the rest of the body unread")
		}
		heads = append(heads, head)
	}
	if !bytes.Equal(heads[0], heads[1]) {
		t.Errorf("a byte at a time gave %s, in one go %s", heads[0], heads[1])
	}
}
