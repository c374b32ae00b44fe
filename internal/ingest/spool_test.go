package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source/sourcefake"
	"mailtrigger/internal/spool"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// spoolEnv is a fake mailbox handing over messages above 64 KB in spool
// files, read through the ingest pipeline into a SQLite store; the hook
// notes what each message was recorded from.
type spoolEnv struct {
	st  *store.Store
	cfg imapconf.Config
	src *sourcefake.Source
	in  *ingest.Ingester
	sp  *spool.Spooler

	mu      sync.Mutex
	created int
	fail    func(uid uint32) error
	got     map[uint32][]byte // the raw bytes each message was recorded from
	big     map[uint32]bool   // recorded from a spool file
	inSpool map[uint32]int    // spool files present while it was recorded
	subject map[uint32]string
}

func newSpoolEnv(t *testing.T) *spoolEnv {
	t.Helper()
	e := &spoolEnv{st: storetest.Open(t, store.SQLite), got: map[uint32][]byte{}, big: map[uint32]bool{},
		inSpool: map[uint32]int{}, subject: map[uint32]string{}}
	e.cfg = imapconf.Config{Name: "fake", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
		Host: "fake.invalid", Enabled: true, Folder: "INBOX", AfterProcessing: imapconf.AfterSeen, Backlog: imapconf.BacklogAll}
	if err := e.st.CreateIMAP(context.Background(), &e.cfg); err != nil {
		t.Fatal(err)
	}
	e.sp = &spool.Spooler{Dir: t.TempDir(), Threshold: 64 << 10, Created: func(string) {
		e.mu.Lock()
		e.created++
		e.mu.Unlock()
	}}
	e.src = sourcefake.New(7, 0, imapconf.AfterSeen)
	e.src.UseSpool(e.sp)
	e.in = ingest.New(ingest.Deps{Store: e.st, Hook: func(_ context.Context, _ *store.Tx, _ *store.Batch, _ int64, in store.Incoming) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.fail != nil {
			if err := e.fail(in.UID); err != nil {
				return err
			}
		}
		raw := in.Raw
		if in.Big != nil {
			raw = make([]byte, in.Big.Size())
			if _, err := in.Big.ReadAt(raw, 0); err != nil && err != io.EOF {
				return err
			}
			e.big[in.UID] = true
		}
		e.got[in.UID] = raw
		e.inSpool[in.UID] = len(e.left(t))
		e.subject[in.UID] = in.Msg.Subject
		return nil
	}})
	return e
}

func (e *spoolEnv) sync(t *testing.T, p *progress) error {
	t.Helper()
	ctx := context.Background()
	if err := e.src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.src.Close()
	return e.src.Sync(ctx, e.in.Ledger(e.cfg, ingest.Limits{BatchMessages: 25, BatchBytes: 1 << 20}, p))
}

// left returns the files in the spool directory.
func (e *spoolEnv) left(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(e.sp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range entries {
		names = append(names, d.Name())
	}
	return names
}

func bigRaw(i, size int) []byte {
	b := bytes.NewBufferString(fmt.Sprintf("Subject: m%d\r\nFrom: a@example.test\r\n\r\n", i))
	for b.Len() < size {
		fmt.Fprintf(b, "line %d of message %d\r\n", b.Len(), i)
	}
	return b.Bytes()
}

// TestPipelineSpooled: a message in a spool file is parsed from the file,
// recorded from it (Incoming.Big) in a batch of its own, and its file is
// removed once the batch is recorded.
func TestPipelineSpooled(t *testing.T) {
	e := newSpoolEnv(t)
	raws := [][]byte{bigRaw(1, 100), bigRaw(2, 100), bigRaw(3, 300<<10), bigRaw(4, 100), bigRaw(5, 200<<10), bigRaw(6, 100)}
	for _, raw := range raws {
		e.src.Add(string(raw))
	}
	var p progress
	if err := e.sync(t, &p); err != nil {
		t.Fatal(err)
	}
	if want := [][2]int{{2, 2}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}; !slices.Equal(p.counted, want) {
		t.Errorf("batches %v, want %v (each spooled message alone)", p.counted, want)
	}
	for i, raw := range raws {
		uid := uint32(i + 1)
		big := len(raw) > 64<<10
		if !bytes.Equal(e.got[uid], raw) || e.big[uid] != big {
			t.Errorf("uid %d: recorded %d bytes (from a file: %v), want %d (from a file: %v)", uid, len(e.got[uid]), e.big[uid], len(raw), big)
		}
		if want := fmt.Sprintf("m%d", i+1); e.subject[uid] != want {
			t.Errorf("uid %d: parsed subject %q, want %q", uid, e.subject[uid], want)
		}
		// Its own, and at most the next one, read while it is recorded.
		if big && (e.inSpool[uid] < 1 || e.inSpool[uid] > 2) {
			t.Errorf("uid %d: %d spool files while it was recorded, want its own and at most one more", uid, e.inSpool[uid])
		}
	}
	if e.created != 2 {
		t.Errorf("got %d spool files created, want 2", e.created)
	}
	if left := e.left(t); len(left) != 0 {
		t.Errorf("got %v left in the spool directory, want nothing", left)
	}
	if got := e.src.Applied(); !slices.Equal(got, seq(1, 6)) {
		t.Errorf("after-processing applied to %v, want 1..6", got)
	}
}

// TestPipelineSpooledFailure: when recording fails, the spool files of the
// failed batch, and of one handed over after it, are removed all the same.
func TestPipelineSpooledFailure(t *testing.T) {
	for _, failAt := range []uint32{1, 2} {
		t.Run(fmt.Sprintf("failing uid %d", failAt), func(t *testing.T) {
			e := newSpoolEnv(t)
			e.src.Add(string(bigRaw(1, 100)))
			e.src.Add(string(bigRaw(2, 300<<10)))
			e.src.Add(string(bigRaw(3, 300<<10)))
			boom := errors.New("boom")
			e.fail = func(uid uint32) error {
				if uid == failAt {
					return boom
				}
				return nil
			}
			if err := e.sync(t, &progress{}); !errors.Is(err, boom) {
				t.Fatalf("sync: got %v, want the failure", err)
			}
			if left := e.left(t); len(left) != 0 {
				t.Errorf("got %v left in the spool directory, want nothing", left)
			}
			// The next round records them.
			e.fail = nil
			if err := e.sync(t, &progress{}); err != nil {
				t.Fatal(err)
			}
			msgs, err := e.st.ListMessages(context.Background(), e.cfg.Name, 0, 10)
			if err != nil || len(msgs) != 3 {
				t.Errorf("got %d messages recorded (%v), want 3", len(msgs), err)
			}
			if left := e.left(t); len(left) != 0 {
				t.Errorf("got %v left in the spool directory, want nothing", left)
			}
		})
	}
}
