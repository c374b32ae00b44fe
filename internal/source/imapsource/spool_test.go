package imapsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/spool"
	"mailtrigger/internal/testenv"
)

// spoolSpy is a spooler in a directory of its own that notes the files it
// creates.
type spoolSpy struct {
	*spool.Spooler
	mu      sync.Mutex
	created []string
}

func newSpoolSpy(t *testing.T, threshold int64) *spoolSpy {
	t.Helper()
	s := &spoolSpy{}
	s.Spooler = &spool.Spooler{Dir: t.TempDir(), Threshold: threshold, Created: func(p string) {
		s.mu.Lock()
		s.created = append(s.created, p)
		s.mu.Unlock()
	}}
	return s
}

// Created returns how many spool files were created.
func (s *spoolSpy) Created() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.created)
}

// left returns the files in the spool directory.
func (s *spoolSpy) left(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// longCtx is a context for reading megabytes, which takes long under the
// race detector on a busy machine.
func longCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestFetchSpooled reads messages of 5 and 2 MB with a threshold of 1 MB: each goes
// through a spool file of its own, which holds exactly the message, and is
// gone once closed; the small ones around them stay in memory; a message
// over the size cap keeps its header, without a spool file.
func TestFetchSpooled(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "spooled")
	raws := [][]byte{sourcetest.NewMessage(1, 100), sourcetest.NewMessage(2, 5<<20), sourcetest.NewMessage(3, 2<<20),
		sourcetest.NewMessage(4, 200<<10), sourcetest.NewMessage(5, 100)}
	uids := appendMessages(t, d, cfg.Username, "INBOX", raws...)
	c := dialSelect(t, cfg, Options{})

	t.Run("whole", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		var got []uint32
		err := c.FetchSpooled(longCtx(t), uids, 0, sp.Spooler, func(m Message) error {
			got = append(got, m.UID)
			want := crlf(raws[len(got)-1])
			big := len(want) > 1<<20
			if big != (m.Spool != nil) || (m.Spool != nil && m.Raw != nil) {
				t.Errorf("uid %d (%d bytes): got spool %v and %d bytes in memory, want spooled: %v", m.UID, len(want), m.Spool, len(m.Raw), big)
			}
			if m.Spool == nil {
				if !bytes.Equal(m.Raw, want) {
					t.Errorf("uid %d: got another message's bytes", m.UID)
				}
				return nil
			}
			// The file is there while the message is handed over.
			if n := len(sp.left(t)); n != 1 {
				t.Errorf("uid %d: got %d spool files while it is read, want 1", m.UID, n)
			}
			b, err := io.ReadAll(m.Spool.Reader())
			if err != nil || !bytes.Equal(b, want) || m.Spool.Size() != int64(len(want)) || m.Size != int64(len(want)) {
				t.Errorf("uid %d: got %d bytes in the spool file (%v), size %d, want the message's %d", m.UID, len(b), err, m.Spool.Size(), len(want))
			}
			return m.Spool.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, uids) {
			t.Errorf("got UIDs %v, want %v", got, uids)
		}
		if n := sp.Created(); n != 2 {
			t.Errorf("got %d spool files created, want 2 (one per big message)", n)
		}
		if left := sp.left(t); len(left) != 0 {
			t.Errorf("got %v left in the spool directory, want nothing", left)
		}
	})

	t.Run("over the cap keeps the header", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		msgs := collect(t, func(fn func(Message) error) error {
			return c.FetchSpooled(longCtx(t), uids[1:2], 3<<20, sp.Spooler, fn)
		})
		wantHeader := raws[1][:bytes.Index(raws[1], []byte("\r\n\r\n"))+4]
		if len(msgs) != 1 || !msgs[0].TooLarge || msgs[0].Spool != nil || !bytes.Equal(msgs[0].Raw, wantHeader) {
			t.Fatalf("got %+v, want the header only", msgs)
		}
		if n := sp.Created(); n != 0 {
			t.Errorf("got %d spool files created, want none", n)
		}
	})

	t.Run("a failing fn closes what it was not handed", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		boom := errors.New("boom")
		err := c.FetchSpooled(longCtx(t), uids, 0, sp.Spooler, func(m Message) error {
			if m.Spool != nil {
				_ = m.Spool.Close()
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Errorf("got %v, want fn's error", err)
		}
		if left := sp.left(t); len(left) != 0 {
			t.Errorf("got %v left in the spool directory, want nothing", left)
		}
	})

	t.Run("connection cut in the middle of a big literal", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		var dialer countingDialer
		c := dialSelect(t, cfg, Options{Dial: dialer.Dial})
		dialer.cutAt.Store(dialer.read.Load() + 3<<20)
		var got int
		err := c.FetchSpooled(longCtx(t), uids[1:2], 0, sp.Spooler, func(m Message) error {
			got++
			if m.Spool != nil {
				_ = m.Spool.Close()
			}
			return nil
		})
		if !errors.Is(err, ErrClosed) || got != 0 {
			t.Errorf("got %v and %d messages, want ErrClosed and none", err, got)
		}
		if n := sp.Created(); n != 1 {
			t.Errorf("got %d spool files created, want 1 (the cut one)", n)
		}
		if left := sp.left(t); len(left) != 0 {
			t.Errorf("got %v left in the spool directory, want nothing", left)
		}
	})
}
