package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// spooled is a message in a file, as the spool holds it.
type spooled struct {
	*os.File
	size int64
}

func (f spooled) Size() int64 { return f.size }

// bigMessage writes a message of about size bytes (a base64 attachment)
// into a temporary file and returns it and its SHA-256.
func bigMessage(t *testing.T, size int) (spooled, [32]byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "big.eml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h := sha256.New()
	w := io.MultiWriter(f, h)
	io.WriteString(w, "From: a@example.com\r\nSubject: scans\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"+
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"+
		"Content-Disposition: attachment; filename=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0"), 1)
	line = append(line, '\r', '\n')
	var n int
	for n < size {
		// Vary the lines a little, so that a chunk misplaced shows.
		line[0] = 'A' + byte(n/len(line)%26)
		w.Write(line)
		n += len(line)
	}
	io.WriteString(w, "--b--\r\n")
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return spooled{f, st.Size()}, sum
}

// heapPeak samples the live heap until stop is called and returns the
// highest value it saw above the heap at the start.
func heapPeak(t *testing.T) (stop func() int64) {
	t.Helper()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() int64 {
		metrics.Read(sample)
		return int64(sample[0].Value.Uint64())
	}
	runtime.GC()
	base := read()
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			peak = max(peak, read())
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return max(peak, read()) - base
	}
}

// TestRecordBigMessageInChunks records a 50 MB spooled message: it is
// stored in 1 MiB chunks, read one at a time, so that recording it and
// reading it back grow the Go heap by a few MB, not by the message.
func TestRecordBigMessageInChunks(t *testing.T) {
	const size = 50 << 20
	const bound = 12 << 20
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		f, sum := bigMessage(t, size)
		// The collector runs often, so that the heap measured is what is
		// held, not garbage waiting for the next cycle.
		defer debug.SetGCPercent(debug.SetGCPercent(10))
		m := &mail.Message{Subject: "scans", Size: f.Size()}
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Messages: []store.Incoming{{UID: 1, Big: f, Msg: m, Seen: time.Now()}}}
		stop := heapPeak(t)
		rec, _, err := s.RecordBatch(ctx, b, nil)
		grew := stop()
		if err != nil || len(rec) != 1 {
			t.Fatalf("recording: %v %v", rec, err)
		}
		t.Logf("recording %d bytes grew the heap by %.1f MB at most", f.Size(), float64(grew)/(1<<20))
		if grew > bound {
			t.Errorf("recording %d bytes grew the heap by %d bytes, want at most %d", f.Size(), grew, bound)
		}
		var inline, chunks int64
		if err := store.DB(s).QueryRowContext(ctx, `SELECT length(raw), (SELECT COUNT(*) FROM message_chunks WHERE message_id = $1)
			FROM messages WHERE id = $1`, rec[0].ID).Scan(&inline, &chunks); err != nil {
			t.Fatal(err)
		}
		if want := (f.Size() + 1<<20 - 1) >> 20; inline != 0 || chunks != want {
			t.Errorf("raw column %d bytes and %d chunks, want 0 and %d", inline, chunks, want)
		}

		stop = heapPeak(t)
		r, err := s.OpenRaw(ctx, rec[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Reader())
		grew = stop()
		if err != nil || n != f.Size() || r.Size() != f.Size() || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatalf("read back %d of %d bytes (size %d), same: %v, %v", n, f.Size(), r.Size(), bytes.Equal(h.Sum(nil), sum[:]), err)
		}
		t.Logf("reading it back grew the heap by %.1f MB at most", float64(grew)/(1<<20))
		if grew > bound {
			t.Errorf("reading %d bytes back grew the heap by %d bytes, want at most %d", f.Size(), grew, bound)
		}
		// ReadAt across chunk boundaries, and MessageRaw whole.
		whole, err := s.MessageRaw(ctx, rec[0].ID)
		if err != nil || sha256.Sum256(whole) != sum {
			t.Fatalf("MessageRaw: %d bytes, %v", len(whole), err)
		}
		for _, off := range []int64{0, 1<<20 - 3, 5<<20 - 1, f.Size() - 10} {
			p := make([]byte, 20)
			k, err := r.ReadAt(p, off)
			want := whole[off:min(off+20, int64(len(whole)))]
			if k != len(want) || !bytes.Equal(p[:k], want) || (k < 20) != (err == io.EOF) {
				t.Errorf("ReadAt(20, %d) = %d %q, %v; want %q", off, k, p[:k], err, want)
			}
		}
		// The chunks go with the message.
		if _, err := store.DB(s).ExecContext(ctx, `DELETE FROM messages WHERE id = $1`, rec[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := store.DB(s).QueryRowContext(ctx, `SELECT COUNT(*) FROM message_chunks`).Scan(&chunks); err != nil || chunks != 0 {
			t.Errorf("%d chunks left after the message was deleted, %v", chunks, err)
		}
	})
}

// TestPruneChunked: Prune drops a chunked message's chunks with its bodies.
func TestPruneChunked(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		f, _ := bigMessage(t, 3<<20)
		m := &mail.Message{Subject: "scans", Size: f.Size()}
		old := time.Now().Add(-40 * 24 * time.Hour)
		rec, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1,
			Messages: []store.Incoming{{UID: 1, Big: f, Msg: m, Seen: old}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Prune(ctx, time.Now().Add(-30*24*time.Hour))
		if err != nil || p.Messages != 1 {
			t.Fatalf("got %+v, %v", p, err)
		}
		var chunks int
		if err := store.DB(s).QueryRowContext(ctx, `SELECT COUNT(*) FROM message_chunks`).Scan(&chunks); err != nil || chunks != 0 {
			t.Errorf("%d chunks left, %v", chunks, err)
		}
		if raw, err := s.MessageRaw(ctx, rec[0].ID); err != nil || len(raw) != 0 {
			t.Errorf("raw message after pruning: %d bytes, %v", len(raw), err)
		}
		if got, err := s.GetMessage(ctx, rec[0].ID); err != nil || got.Subject != "scans" {
			t.Errorf("got %+v, %v, want its summary kept", got, err)
		}
	})
}
