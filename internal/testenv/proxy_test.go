package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/testwait"
)

// upstreamServer is a TCP server for the proxy tests: it echoes what it
// reads, or first sends greeting, and reports how each connection ended.
type upstreamServer struct {
	addr  string
	ended chan error // one per connection: nil for EOF, else the read error
}

func startUpstream(t *testing.T, greeting []byte) *upstreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &upstreamServer{addr: ln.Addr().String(), ended: make(chan error, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				if _, err := conn.Write(greeting); err != nil {
					s.ended <- err
					return
				}
				_, err := io.Copy(conn, conn)
				s.ended <- err
			})
		}
	})
	return s
}

// wait waits for the upstream's next connection to end and returns how.
func (s *upstreamServer) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection did not end")
		return nil
	}
}

func dialProxy(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// roundTrip writes msg and reads it back within a second.
func roundTrip(conn net.Conn, msg string) error {
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("got " + string(got) + ", want " + msg)
	}
	return conn.SetReadDeadline(time.Time{})
}

// waitStats waits until cond holds for the proxy's counts.
func waitStats(t *testing.T, p *Proxy, cond func(ProxyStats) bool) ProxyStats {
	t.Helper()
	var s ProxyStats
	testwait.Until(t, 5*time.Second, func() error {
		if s = p.Stats(); !cond(s) {
			return fmt.Errorf("got stats %+v", s)
		}
		return nil
	})
	return s
}

func TestProxyForwards(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	if p.Host != "127.0.0.1" || p.Port == 0 {
		t.Fatalf("got address %s:%d, want 127.0.0.1 and a port", p.Host, p.Port)
	}
	conn := dialProxy(t, p)
	for _, msg := range []string{"hello", "world", string(bytes.Repeat([]byte("x"), 100<<10))} {
		if err := roundTrip(conn, msg); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	if s.Accepted != 1 || s.Active != 1 || s.BytesUp != 10+100<<10 || s.BytesDown != 10+100<<10 {
		t.Errorf("got stats %+v, want 1 accepted and active, %d bytes each way", s, 10+100<<10)
	}
	_ = conn.Close()
	if err := up.wait(t); err != nil {
		t.Errorf("upstream: got %v, want an orderly end", err)
	}
	waitStats(t, p, func(s ProxyStats) bool { return s.Active == 0 })
}

func TestProxyResetAll(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	a, b := dialProxy(t, p), dialProxy(t, p)
	for _, conn := range []net.Conn{a, b} {
		if err := roundTrip(conn, "ping"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.ResetAll(); n != 2 {
		t.Errorf("ResetAll: got %d, want 2", n)
	}
	for _, conn := range []net.Conn{a, b} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read: got %v, want a connection reset", err)
		}
		if err := up.wait(t); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("upstream read: got %v, want a connection reset", err)
		}
	}
	s := p.Stats()
	if s.Reset != 2 || s.Active != 0 {
		t.Errorf("got stats %+v, want 2 reset, none active", s)
	}
	if err := roundTrip(dialProxy(t, p), "again"); err != nil {
		t.Errorf("after the reset: %v", err)
	}
}

func TestProxyStall(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	open := dialProxy(t, p)
	if err := roundTrip(open, "before"); err != nil {
		t.Fatal(err)
	}
	p.Stall(true)
	if !p.Stalled() {
		t.Error("Stalled: got false during a stall")
	}
	fresh := dialProxy(t, p) // connections made during a stall stall too
	for _, conn := range []net.Conn{open, fresh} {
		if err := roundTrip(conn, "during"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("during the stall: got %v, want the read to time out", err)
		}
	}
	if s := p.Stats(); s.Active != 2 || s.Stalls != 1 {
		t.Errorf("got stats %+v, want both connections open and 1 stall", s)
	}
	p.Stall(false)
	// The bytes held come through, in order, and the connections go on.
	for _, conn := range []net.Conn{open, fresh} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len("during"))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "during" {
			t.Errorf("after the stall: got %q, %v, want %q", got, err, "during")
		}
		if err := roundTrip(conn, "after"); err != nil {
			t.Errorf("after the stall: %v", err)
		}
	}
}

func TestProxyAfterBytesStall(t *testing.T) {
	t.Parallel()
	greeting := bytes.Repeat([]byte("0123456789"), 50<<10) // 500 KB
	up := startUpstream(t, greeting)
	p := StartProxy(t, up.addr)
	p.AfterBytes(100<<10, func() { p.Stall(true) })
	conn := dialProxy(t, p)
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	got, err := io.ReadAll(conn)
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) >= 100<<10 || !p.Stalled() {
		t.Fatalf("got %d bytes, %v, stalled %v; want fewer than %d, then a stall", len(got), err, p.Stalled(), 100<<10)
	}
	p.Stall(false)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest := make([]byte, len(greeting)-len(got))
	if _, err := io.ReadFull(conn, rest); err != nil || !bytes.Equal(append(got, rest...), greeting) {
		t.Fatalf("after the stall: %v, or the bytes differ", err)
	}
	// An armed fault strikes once.
	if err := roundTrip(conn, "on"); err != nil {
		t.Fatal(err)
	}
}

func TestProxyAfterBytesReset(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	// Armed once connected: a reset before the client's connect returned
	// would fail the dial itself.
	conn := dialProxy(t, p)
	if err := roundTrip(conn, "x"); err != nil {
		t.Fatal(err)
	}
	p.AfterBytes(100<<10, func() { p.ResetAll() })
	data := bytes.Repeat([]byte("0123456789"), 50<<10) // 500 KB, echoed
	go func() { _, _ = conn.Write(data) }()            // fails at the reset
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if !errors.Is(err, syscall.ECONNRESET) || len(got) >= 100<<10 {
		t.Fatalf("got %d bytes, %v; want fewer than %d, then a reset", len(got), err, 100<<10)
	}
	if s := p.Stats(); s.Reset != 1 {
		t.Errorf("got stats %+v, want 1 reset", s)
	}
	// Disarmed: the next connection gets everything.
	conn = dialProxy(t, p)
	go func() { _, _ = conn.Write(data) }()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all := make([]byte, len(data))
	if _, err := io.ReadFull(conn, all); err != nil || !bytes.Equal(all, data) {
		t.Fatalf("after the reset: %v, or the bytes differ", err)
	}
}

func TestProxyRefuse(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	open := dialProxy(t, p)
	if err := roundTrip(open, "x"); err != nil {
		t.Fatal(err)
	}
	p.Refuse(true)
	refused := dialProxy(t, p)
	_ = refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := refused.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("refused connection: got %v, want it closed", err)
	}
	if err := roundTrip(open, "y"); err != nil {
		t.Errorf("open connection during Refuse: %v", err)
	}
	p.Refuse(false)
	if err := roundTrip(dialProxy(t, p), "z"); err != nil {
		t.Errorf("after Refuse(false): %v", err)
	}
	if s := p.Stats(); s.Accepted != 2 || s.Refused != 1 {
		t.Errorf("got stats %+v, want 2 accepted, 1 refused", s)
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := StartProxy(t, addr)
	conn := dialProxy(t, p)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("got %v, want the connection closed", err)
	}
	waitStats(t, p, func(s ProxyStats) bool { return s.Failed == 1 && s.Active == 0 })
}

func TestProxyClose(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, nil)
	p := StartProxy(t, up.addr)
	conn := dialProxy(t, p)
	if err := roundTrip(conn, "x"); err != nil {
		t.Fatal(err)
	}
	p.Stall(true) // a stalled connection must not keep Close waiting
	p.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after Close: got %v, want the connection closed", err)
	}
	// A dial may reach another test's listener on the freed port (the
	// tests run in parallel on free ports), so what counts is whether
	// the proxy took it.
	before := p.Stats()
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		testwait.Never(t, 200*time.Millisecond, func() error {
			if s := p.Stats(); s.Accepted+s.Refused+s.Failed != before.Accepted+before.Refused+before.Failed {
				return fmt.Errorf("after Close: the proxy still accepts connections (%+v)", s)
			}
			return nil
		})
		c.Close()
	}
	p.Close() // again, as the cleanup does
}

// TestProxyIMAPS logs in to Dovecot over implicit TLS through the proxy:
// the certificate is valid for the proxy's address too.
func TestProxyIMAPS(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	address := d.AddUser(t, "proxied", "secret")
	p := StartProxy(t, d.Addr(d.IMAPSPort))
	tlsConfig := d.TLSConfig()
	tlsConfig.ServerName = p.Host
	c, err := imapclient.DialTLS(p.Addr, &imapclient.Options{TLSConfig: tlsConfig})
	if err != nil {
		t.Fatalf("dialing through the proxy: %v", err)
	}
	defer c.Close()
	if err := c.Login(address, "secret").Wait(); err != nil {
		t.Fatalf("logging in through the proxy: %v", err)
	}
	p.ResetAll()
	if err := c.Noop().Wait(); err == nil {
		t.Error("NOOP after ResetAll: got no error")
	}
}
