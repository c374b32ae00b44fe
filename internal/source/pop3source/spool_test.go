package pop3source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/spool"
	"mailtrigger/internal/testenv"
)

// spoolSpy is a spooler in a directory of its own that counts the files it
// creates.
type spoolSpy struct {
	*spool.Spooler
	mu      sync.Mutex
	created int
}

func newSpoolSpy(t *testing.T, threshold int64) *spoolSpy {
	t.Helper()
	s := &spoolSpy{}
	s.Spooler = &spool.Spooler{Dir: t.TempDir(), Threshold: threshold, Created: func(string) {
		s.mu.Lock()
		s.created++
		s.mu.Unlock()
	}}
	return s
}

func (s *spoolSpy) Created() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
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

// bigDotMessage is dotMessage grown to about size bytes with lines that
// start with "." (stuffed on the wire) all the way.
func bigDotMessage(size int) []byte {
	b := bytes.NewBuffer(dotMessage())
	line := "." + strings.Repeat("z", 70) + "\r\n..\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("the very end\r\n")
	return b.Bytes()
}

// cutDialer dials TCP and closes a connection once cutAt bytes were read
// from it (if cutAt > 0).
type cutDialer struct {
	read  atomic.Int64
	cutAt atomic.Int64
}

func (d *cutDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, d: d}, nil
}

type cutConn struct {
	net.Conn
	d *cutDialer
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	total := c.d.read.Add(int64(n))
	if cut := c.d.cutAt.Load(); cut > 0 && total >= cut {
		_ = c.Conn.Close()
	}
	return n, err
}

// longCtx is a context for reading megabytes, which takes long under the
// race detector on a busy machine.
func longCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRetrSpooled reads a 5 MB dot-stuffed message with a threshold of
// 1 MB into a spool file, byte for byte; over the size cap only the header
// is kept, without a spool file; a connection cut in the middle of the
// message leaves no spool file.
func TestRetrSpooled(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "spooled", modes[0])
	big := bigDotMessage(5 << 20)
	small := dotMessage()
	appendAll(t, d, cfg.Username, big, small)
	c := dialT(t, cfg)

	t.Run("whole", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		m, err := c.RetrSpooled(longCtx(t), 1, 0, sp.Spooler)
		if err != nil {
			t.Fatal(err)
		}
		if m.Spool == nil || m.Raw != nil || m.TooLarge {
			t.Fatalf("got spool %v, %d bytes in memory, tooLarge %v; want the message spooled", m.Spool, len(m.Raw), m.TooLarge)
		}
		if n := len(sp.left(t)); n != 1 || sp.Created() != 1 {
			t.Errorf("got %d spool files (%d created), want 1", n, sp.Created())
		}
		got, err := io.ReadAll(m.Spool.Reader())
		if err != nil || !bytes.Equal(got, big) || m.Size != int64(len(big)) {
			t.Errorf("got %d bytes (%v), size %d, want %d; differ at %d", len(got), err, m.Size, len(big), firstDiff(got, big))
		}
		if err := m.Spool.Close(); err != nil {
			t.Fatal(err)
		}
		if left := sp.left(t); len(left) != 0 {
			t.Errorf("got %v left after Close, want nothing", left)
		}

		m, err = c.RetrSpooled(longCtx(t), 2, 0, sp.Spooler)
		if err != nil || m.Spool != nil || !bytes.Equal(m.Raw, small) {
			t.Errorf("small: got %v, spool %v, %d bytes, want the message in memory", err, m.Spool, len(m.Raw))
		}
	})

	for _, top := range []bool{true, false} {
		t.Run("over the cap, TOP "+map[bool]string{true: "on", false: "off"}[top], func(t *testing.T) {
			sp := newSpoolSpy(t, 1<<20)
			if !top {
				saved := c.caps
				c.caps = slices.DeleteFunc(slices.Clone(c.caps), func(s string) bool { return strings.HasPrefix(s, "TOP") })
				defer func() { c.caps = saved }()
			}
			m, err := c.RetrSpooled(longCtx(t), 1, 3<<20, sp.Spooler)
			if err != nil {
				t.Fatal(err)
			}
			if !m.TooLarge || m.Spool != nil || !bytes.Equal(m.Raw, header(big)) {
				t.Errorf("got tooLarge %v spool %v raw %.80q, want the header %q", m.TooLarge, m.Spool, m.Raw, header(big))
			}
			if n := sp.Created(); n != 0 {
				t.Errorf("got %d spool files created, want none", n)
			}
		})
	}

	t.Run("connection cut in the middle", func(t *testing.T) {
		sp := newSpoolSpy(t, 1<<20)
		var dialer cutDialer
		c, err := Dial(longCtx(t), cfg, Options{Dial: dialer.Dial})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dialer.cutAt.Store(dialer.read.Load() + 3<<20)
		m, err := c.RetrSpooled(longCtx(t), 1, 0, sp.Spooler)
		if !errors.Is(err, ErrClosed) || m.Spool != nil {
			t.Errorf("got %v, spool %v, want ErrClosed and no message", err, m.Spool)
		}
		if n := sp.Created(); n != 1 {
			t.Errorf("got %d spool files created, want 1 (the cut one)", n)
		}
		if left := sp.left(t); len(left) != 0 {
			t.Errorf("got %v left in the spool directory, want nothing", left)
		}
	})
}

// TestKeeperSpooled: a message written to a spool file that turns out to
// be above the cap keeps its header, and its file is removed.
func TestKeeperSpooled(t *testing.T) {
	hdr := "A: 1\r\nB: 2\r\n\r\n"
	body := strings.Repeat("body line\r\n", 100)
	tests := []struct {
		name     string
		limit    int64
		want     string
		tooLarge bool
	}{
		{"fits", 10000, hdr + body, false},
		{"grows over the cap", 500, hdr, true},
		{"header over the cap", 5, hdr[:5], true},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 7, 100, 5000} {
			sp := newSpoolSpy(t, 1)
			w, err := sp.Create()
			if err != nil {
				t.Fatal(err)
			}
			k := &keeper{limit: tt.limit, w: w}
			msg := hdr + body
			for len(msg) > 0 {
				p := msg[:min(n, len(msg))]
				msg = msg[len(p):]
				if err := k.write([]byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			got := string(k.buf)
			if k.w != nil {
				f := k.w.Done()
				b, _ := io.ReadAll(f.Reader())
				got = string(b)
				_ = f.Close()
			}
			if got != tt.want || k.headerOnly != tt.tooLarge {
				t.Errorf("%s in pieces of %d: got %.40q (%d bytes), %v; want %.40q, %v", tt.name, n, got, len(got), k.headerOnly, tt.want, tt.tooLarge)
			}
			if left := sp.left(t); len(left) != 0 {
				t.Errorf("%s in pieces of %d: got %v left, want nothing", tt.name, n, left)
			}
		}
	}
}
