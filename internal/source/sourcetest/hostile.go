package sourcetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/tlsconf/tlstest"
)

// Serve listens on 127.0.0.1 and runs serve for each connection it
// accepts, over TLS when tlsConfig is set; a connection is closed when
// serve returns, and the listener and the connections when t ends. It
// returns the port.
func Serve(t *testing.T, tlsConfig *tls.Config, serve func(conn net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// ServerTLS returns the TLS configuration of a server with a certificate
// for 127.0.0.1, and that certificate in PEM, to trust as caCert.
func ServerTLS(t *testing.T) (config *tls.Config, caPEM string) {
	t.Helper()
	pair := tlstest.NewPair(t, 1)
	cert, err := tls.X509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, string(pair.Cert)
}

// WriteLongLine writes prefix and then n bytes of "A", without a line end,
// to w, 64 KiB at a time; it stops at the first error (the client closed
// the connection). It returns how much it wrote.
func WriteLongLine(w io.Writer, prefix string, n int) int {
	written, err := io.WriteString(w, prefix)
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for err == nil && written < len(prefix)+n {
		var k int
		k, err = w.Write(chunk[:min(len(chunk), len(prefix)+n-written)])
		written += k
	}
	return written
}

// CountingDial returns a dial function for a client's Options.Dial that
// adds the bytes read from each connection it opens to read.
func CountingDial(read *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, read: read}, nil
	}
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// LongLine is how long a line the hostile servers of the tests send.
const LongLine = 2 << 20

// CheckCutShort checks what a client made of a line of LongLine bytes
// that a server sent: an error of its own that says so briefly (err, once
// the caller checked it is the line's), having read little more than the
// bound (read bytes), at once (after elapsed).
func CheckCutShort(t testing.TB, err error, read int64, elapsed time.Duration) {
	t.Helper()
	if want := "line longer than 65536 bytes"; !strings.Contains(err.Error(), want) || len(err.Error()) > 200 {
		t.Errorf("got error %.300q, want it short and saying %q", err, want)
	}
	if read > 1<<20 {
		t.Errorf("got %d bytes read of the %d sent, want the client to stop soon after 64 KiB", read, LongLine)
	}
	if elapsed > 5*time.Second {
		t.Errorf("got the error after %v, want it at once", elapsed)
	}
}
