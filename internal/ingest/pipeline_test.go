package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sourcefake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// progress records what a pipeline reports.
type progress struct {
	mu      sync.Mutex
	states  []string
	backlog []int
	counted [][2]int
}

func (p *progress) State(s string) { p.mu.Lock(); p.states = append(p.states, s); p.mu.Unlock() }
func (p *progress) Backlog(n int)  { p.mu.Lock(); p.backlog = append(p.backlog, n); p.mu.Unlock() }
func (p *progress) Counted(read, recorded int) {
	p.mu.Lock()
	p.counted = append(p.counted, [2]int{read, recorded})
	p.mu.Unlock()
}

// pipelineEnv is a fake mailbox read through the ingest pipeline into a
// SQLite store; fail, when set, fails the recording of a message.
type pipelineEnv struct {
	st   *store.Store
	cfg  imapconf.Config
	src  *sourcefake.Source
	in   *ingest.Ingester
	mu   sync.Mutex
	fail func(uid uint32) error
}

func newPipelineEnv(t *testing.T, action string) *pipelineEnv {
	t.Helper()
	return newPipelineEnvOn(t, store.SQLite, action)
}

// newPipelineEnvOn is newPipelineEnv on the database d.
func newPipelineEnvOn(t *testing.T, d store.Dialect, action string) *pipelineEnv {
	t.Helper()
	e := &pipelineEnv{st: storetest.Open(t, d)}
	e.cfg = imapconf.Config{Name: "fake", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
		Host: "fake.invalid", Enabled: true, Folder: "INBOX", AfterProcessing: action, Backlog: imapconf.BacklogAll}
	if err := e.st.CreateIMAP(context.Background(), &e.cfg); err != nil {
		t.Fatal(err)
	}
	e.src = sourcefake.New(7, 0, action)
	e.in = ingest.New(ingest.Deps{Store: e.st, Hook: func(_ context.Context, _ *store.Tx, _ *store.Batch, _ int64, in store.Incoming) error {
		e.mu.Lock()
		fail := e.fail
		e.mu.Unlock()
		if fail != nil {
			return fail(in.UID)
		}
		return nil
	}})
	return e
}

// sync runs one Sync of the fake source through a ledger batching by 25.
func (e *pipelineEnv) sync(t *testing.T, p *progress) error {
	t.Helper()
	ctx := context.Background()
	if err := e.src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.src.Close()
	return e.src.Sync(ctx, e.in.Ledger(e.cfg, ingest.Limits{BatchMessages: 25, BatchBytes: 1 << 20}, p))
}

// recorded returns the UIDs recorded, in the order of their ids.
func (e *pipelineEnv) recorded(t *testing.T) []uint32 {
	t.Helper()
	msgs, err := e.st.ListMessages(context.Background(), e.cfg.Name, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for i := len(msgs) - 1; i >= 0; i-- { // newest first
		uids = append(uids, msgs[i].UID)
	}
	return uids
}

func (e *pipelineEnv) checkpoint(t *testing.T) store.Checkpoint {
	t.Helper()
	cp, _, err := e.st.GetCheckpoint(context.Background(), e.cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func seq(from, to uint32) []uint32 {
	var s []uint32
	for u := from; u <= to; u++ {
		s = append(s, u)
	}
	return s
}

func TestPipelineRecordsInOrderWithTheCheckpoint(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testRecordsInOrder(t, newPipelineEnvOn(t, d, imapconf.AfterSeen)) })
	}
}

func testRecordsInOrder(t *testing.T, e *pipelineEnv) {
	for i := range 60 {
		e.src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))
	}
	var p progress
	if err := e.sync(t, &p); err != nil {
		t.Fatal(err)
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, 60)) {
		t.Errorf("recorded %v, want 1..60 in order", got)
	}
	if cp := e.checkpoint(t); cp != (store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 60}) {
		t.Errorf("checkpoint %+v, want 7/60", cp)
	}
	if want := [][2]int{{25, 25}, {25, 25}, {10, 10}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v", p.counted, want)
	}
	if !slices.Equal(p.backlog, []int{60}) {
		t.Errorf("backlog %v, want [60]", p.backlog)
	}
	if got := e.src.Applied(); !slices.Equal(got, seq(1, 60)) {
		t.Errorf("after-processing applied to %v, want 1..60", got)
	}

	// Only what is new is read next time.
	e.src.Add("Subject: late\r\n\r\nx\r\n")
	p = progress{}
	if err := e.sync(t, &p); err != nil {
		t.Fatal(err)
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, 61)) {
		t.Errorf("recorded %v, want 1..61", got)
	}
	if want := [][2]int{{1, 1}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v", p.counted, want)
	}
	if got := e.src.Applied(); !slices.Equal(got, seq(1, 61)) {
		t.Errorf("after-processing applied to %v, want 1..61 once each", got)
	}
}

func TestPipelineStopsAtAFailedBatch(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testStopsAtAFailedBatch(t, newPipelineEnvOn(t, d, imapconf.AfterSeen)) })
	}
}

func testStopsAtAFailedBatch(t *testing.T, e *pipelineEnv) {
	for i := range 60 {
		e.src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))
	}
	boom := errors.New("boom")
	e.fail = func(uid uint32) error {
		if uid == 30 {
			return boom
		}
		return nil
	}
	if err := e.sync(t, &progress{}); !errors.Is(err, boom) {
		t.Fatalf("sync: got %v, want the failure of the second batch", err)
	}
	// The first batch committed with its checkpoint; nothing after the
	// failed one was recorded, and nothing was acted on.
	if got := e.recorded(t); !slices.Equal(got, seq(1, 25)) {
		t.Errorf("recorded %v, want 1..25", got)
	}
	if cp := e.checkpoint(t); cp.Last != 25 {
		t.Errorf("checkpoint at %d, want 25", cp.Last)
	}
	if got := e.src.Applied(); len(got) != 0 {
		t.Errorf("after-processing applied to %v before the round ended, want none", got)
	}

	// The next round owes the first batch its after-processing, and reads
	// on from the checkpoint.
	e.fail = nil
	if err := e.sync(t, &progress{}); err != nil {
		t.Fatal(err)
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, 60)) {
		t.Errorf("recorded %v, want 1..60", got)
	}
	applied := e.src.Applied()
	slices.Sort(applied)
	if !slices.Equal(applied, seq(1, 60)) {
		t.Errorf("after-processing applied to %v, want 1..60 once each", applied)
	}
}

func TestPipelineBatchesByBytes(t *testing.T) {
	e := newPipelineEnv(t, imapconf.AfterNone)
	big := fmt.Sprintf("Subject: big\r\n\r\n%0600000d\r\n", 0) // 600 kB: two fill the 1 MiB batch
	for range 5 {
		e.src.Add(big)
	}
	var p progress
	if err := e.sync(t, &p); err != nil {
		t.Fatal(err)
	}
	if want := [][2]int{{2, 2}, {2, 2}, {1, 1}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v", p.counted, want)
	}
}

// addCounter is a ledger whose pipelines count the messages added, and
// hold the 26th (the first of the second batch of 25) until recording is
// closed.
type addCounter struct {
	*ingest.Ledger
	added     *atomic.Int32
	recording chan struct{}
}

func (l addCounter) Pipeline(ctx context.Context, o source.PipelineOptions) (source.Pipeline, error) {
	p, err := l.Ledger.Pipeline(ctx, o)
	return countedPipeline{p, l}, err
}

type countedPipeline struct {
	source.Pipeline
	l addCounter
}

func (p countedPipeline) Add(m source.Message) error {
	if p.l.added.Add(1) == 26 {
		<-p.l.recording
	}
	return p.Pipeline.Add(m)
}

// syncHoldingFirst reads n messages from a fake mailbox through a pipeline
// batching by 25, running during inside the first batch's transaction (on
// SQLite it holds the one writer connection) with the count of messages
// the source handed over so far; during's error fails the test. The
// messages must be recorded 1..n in order.
func syncHoldingFirst(t *testing.T, e *pipelineEnv, n int, during func(added *atomic.Int32) error) *progress {
	t.Helper()
	for i := range n {
		e.src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))
	}
	var added atomic.Int32
	var duringErr error
	recording := make(chan struct{})
	e.fail = func(uid uint32) error {
		if uid == 1 {
			close(recording)
			duringErr = during(&added)
		}
		return nil
	}
	ctx := context.Background()
	if err := e.src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.src.Close()
	var p progress
	l := addCounter{e.in.Ledger(e.cfg, ingest.Limits{BatchMessages: 25, BatchBytes: 1 << 20}, &p), &added, recording}
	if err := e.src.Sync(ctx, l); err != nil {
		t.Fatal(err)
	}
	if duringErr != nil {
		t.Error(duringErr)
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, uint32(n))) {
		t.Errorf("recorded %v, want 1..%d in order", got, n)
	}
	return &p
}

// readAtLeast waits until the source handed over n messages.
func readAtLeast(added *atomic.Int32, n int32) error {
	return testwait.UntilErr(10*time.Second, func() error {
		if got := added.Load(); got < n {
			return fmt.Errorf("%d messages read while the first batch was recorded, want %d", got, n)
		}
		return nil
	})
}

// TestPipelineReadsWhileRecording: while a batch is recorded (its
// transaction holding SQLite's one writer connection), the next batch is
// read; it used to wait for the record to note it.
func TestPipelineReadsWhileRecording(t *testing.T) {
	e := newPipelineEnv(t, imapconf.AfterSeen)
	p := syncHoldingFirst(t, e, 60, func(added *atomic.Int32) error { return readAtLeast(added, 40) })
	if want := [][2]int{{25, 25}, {25, 25}, {10, 10}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v", p.counted, want)
	}
}

// TestPipelineThreeStages: while the first batch is recorded (its
// transaction holding SQLite's one writer connection), the second is parsed
// and the third read, without a crash-loop note of their own (the standing
// note of the round covers all three), and no more is read until the first
// is recorded. The pipeline before read two batches (the second's note
// waited for the writer), and parsed the second only once its note was
// written. Once the round is recorded, no note is left.
func TestPipelineThreeStages(t *testing.T) {
	e := newPipelineEnv(t, imapconf.AfterSeen)
	ctx := context.Background()
	syncHoldingFirst(t, e, 100, func(added *atomic.Int32) error {
		if err := readAtLeast(added, 75); err != nil {
			return err
		}
		// Bounded: the source waits while two batches are pending.
		time.Sleep(200 * time.Millisecond)
		if n := added.Load(); n > 75 {
			return fmt.Errorf("%d messages read while the first batch was recorded, want at most 75", n)
		}
		a, ok, err := e.st.GetAttempt(ctx, e.cfg.ID)
		switch {
		case err != nil:
			return err
		case !ok || a.Key != ingest.KeyUID(7, 1) || a.Span != 75:
			return fmt.Errorf("crash-loop note %+v (%v) while the round is recorded, want key %s for 75 messages",
				a, ok, ingest.KeyUID(7, 1))
		}
		return nil
	})
	if a, ok, err := e.st.GetAttempt(ctx, e.cfg.ID); err != nil || ok {
		t.Errorf("crash-loop note after the round: %+v, %v, %v; want none", a, ok, err)
	}
}

// overlapEnv fills a PostgreSQL pipelineEnv with 75 messages (three batches
// of 25) whose hook holds the second batch (at UID 26) until the third
// batch's hook runs, that is until the third is written inside its own
// transaction while the second's is open, or 10 s pass; then the second
// batch's hook returns fail(). entered reports whether the third began.
func overlapEnv(t *testing.T, fail func() error) (e *pipelineEnv, entered *atomic.Bool) {
	t.Helper()
	e = newPipelineEnvOn(t, store.Postgres, imapconf.AfterSeen)
	for i := range 75 {
		e.src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))
	}
	third := make(chan struct{})
	var once sync.Once
	entered = &atomic.Bool{}
	e.fail = func(uid uint32) error {
		switch uid {
		case 51:
			entered.Store(true)
			once.Do(func() { close(third) })
		case 26:
			select {
			case <-third:
			case <-time.After(10 * time.Second):
			}
			return fail()
		}
		return nil
	}
	return e, entered
}

// TestPipelineOverlapsOnPostgres: on PostgreSQL the batch after one being
// written is written at once in a transaction of its own, and still
// commits after it: the messages, their ids and the checkpoint are in order.
func TestPipelineOverlapsOnPostgres(t *testing.T) {
	e, entered := overlapEnv(t, func() error { return nil })
	var p progress
	if err := e.sync(t, &p); err != nil {
		t.Fatal(err)
	}
	if !entered.Load() {
		t.Error("the third batch was not written while the second was")
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, 75)) {
		t.Errorf("recorded %v, want 1..75 with ids in that order", got)
	}
	if want := [][2]int{{25, 25}, {25, 25}, {25, 25}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v in order", p.counted, want)
	}
	if cp := e.checkpoint(t); cp.Last != 75 {
		t.Errorf("checkpoint at %d, want 75", cp.Last)
	}
}

// TestPipelineOverlapStopsAtAFailedBatch: when a batch fails while the one
// after it is written, that one is rolled back too: nothing after the
// failed batch is recorded, and the checkpoint stays before it.
func TestPipelineOverlapStopsAtAFailedBatch(t *testing.T) {
	boom := errors.New("boom")
	e, entered := overlapEnv(t, func() error { return boom })
	if err := e.sync(t, &progress{}); !errors.Is(err, boom) {
		t.Fatalf("sync: got %v, want the failure of the second batch", err)
	}
	if !entered.Load() {
		t.Error("the third batch was not written while the second was")
	}
	if got := e.recorded(t); !slices.Equal(got, seq(1, 25)) {
		t.Errorf("recorded %v, want 1..25", got)
	}
	if cp := e.checkpoint(t); cp.Last != 25 {
		t.Errorf("checkpoint at %d, want 25", cp.Last)
	}
}
