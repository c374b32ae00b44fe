package graphsource_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/spool"
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

// bigMessage is rawMessage(i) grown to about size bytes.
func bigMessage(i, size int) []byte {
	b := bytes.NewBuffer(rawMessage(i))
	for b.Len() < size {
		b.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
	}
	return b.Bytes()
}

// TestSpooled reads a 5 MB message with a threshold of 1 MB through a spool
// file, byte for byte, with and without a Content-Length; over the size
// cap only the header is kept and no file is left.
func TestSpooled(t *testing.T) {
	t.Parallel()
	for _, noLength := range []bool{false, true} {
		name := map[bool]string{false: "content-length", true: "chunked"}[noLength]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.fake.OmitContentLength(noLength)
			small, big := rawMessage(1), bigMessage(2, 5<<20)
			e.fake.AddMessage(user, small)
			e.fake.AddMessage(user, big)

			sp := newSpoolSpy(t, 1<<20)
			c := e.client(t, graphsource.Options{Spool: sp.Spooler})
			var got [][]byte
			_, err := c.Delta(context.Background(), "", func(m graphsource.Message) error {
				if m.Spool == nil {
					got = append(got, m.Raw)
					return nil
				}
				defer m.Spool.Close()
				if n := len(sp.left(t)); n != 1 || m.Raw != nil {
					t.Errorf("got %d spool files and %d bytes in memory while handed over, want 1 and none", n, len(m.Raw))
				}
				b, err := io.ReadAll(m.Spool.Reader())
				if err != nil {
					t.Error(err)
				}
				if m.Size != m.Spool.Size() || m.TooLarge {
					t.Errorf("got size %d (file %d), TooLarge %v", m.Size, m.Spool.Size(), m.TooLarge)
				}
				got = append(got, b)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || !bytes.Equal(got[0], small) || !bytes.Equal(got[1], big) {
				t.Errorf("got %d messages, want the two byte for byte", len(got))
			}
			if sp.Created() != 1 || len(sp.left(t)) != 0 {
				t.Errorf("got %d spool files created, %v left; want 1 and none", sp.Created(), sp.left(t))
			}

			// Over the cap: the header.
			sp = newSpoolSpy(t, 1<<20)
			c = e.client(t, graphsource.Options{Spool: sp.Spooler, SizeCap: 3 << 20})
			msgs, _ := collect(t, c, "", nil)
			header := big[:bytes.Index(big, []byte("\r\n\r\n"))+4]
			wantSize := int64(len(big))
			if noLength {
				wantSize = -1
			}
			if len(msgs) != 2 || !msgs[1].TooLarge || msgs[1].Spool != nil || !bytes.Equal(msgs[1].Raw, header) || msgs[1].Size != wantSize {
				t.Errorf("got %+v, want the big one's header only, size %d", msgs, wantSize)
			}
			if left := sp.left(t); len(left) != 0 {
				t.Errorf("got %v left, want nothing", left)
			}
		})
	}
}

// cutDialer closes a connection once cutAt bytes were read from it (if
// cutAt > 0).
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

// TestSpooledCut cuts the connection in the middle of a big $value: no
// spool file is left.
func TestSpooledCut(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.fake.AddMessage(user, bigMessage(1, 5<<20))
	sp := newSpoolSpy(t, 1<<20)
	var dialer cutDialer
	c := e.client(t, graphsource.Options{Spool: sp.Spooler, Dial: dialer.Dial, MaxRetries: 1})
	dialer.cutAt.Store(3 << 20)
	var got int
	_, err := c.Delta(context.Background(), "", func(m graphsource.Message) error {
		got++
		if m.Spool != nil {
			_ = m.Spool.Close()
		}
		return nil
	})
	var se *graphsource.StepError
	if !errors.As(err, &se) || se.Step != graphsource.StepFetch || got != 0 {
		t.Errorf("got %v and %d messages, want a fetch error and none", err, got)
	}
	if sp.Created() != 1 {
		t.Errorf("got %d spool files created, want 1 (the cut one)", sp.Created())
	}
	if left := sp.left(t); len(left) != 0 {
		t.Errorf("got %v left, want nothing", left)
	}
}
