package testenv

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// proxyDialTimeout bounds the proxy's connection to its upstream.
const proxyDialTimeout = 5 * time.Second

// Proxy is a TCP proxy on 127.0.0.1 that forwards each connection to an
// upstream address and injects the faults of a bad network on command:
// connections reset (ResetAll), traffic that stops without the connection
// closing (Stall), and connections closed as soon as they are accepted
// (Refuse); AfterBytes times a fault to strike in the middle of a large
// response. It forwards bytes as they come and knows nothing of the
// protocol, so it works as well under TLS.
//
// Its methods may be called from any goroutine.
type Proxy struct {
	// Host and Port are where the proxy listens; Addr is Host:Port.
	Host string
	Port int
	Addr string
	// Upstream is the address connections are forwarded to.
	Upstream string

	ln net.Listener
	wg sync.WaitGroup // the accept loop and the connections' goroutines

	mu      sync.Mutex
	conns   map[*proxyConn]struct{}
	closed  bool
	refuse  bool
	stalled bool
	resume  chan struct{} // closed when the current stall ends
	fault   func()        // armed by AfterBytes, nil when none is
	faultIn int64         // bytes from upstream left before fault runs
	stats   ProxyStats
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	Accepted int   // connections accepted and forwarded (not Refused)
	Active   int   // connections open now
	Refused  int   // connections closed at once because of Refuse
	Failed   int   // connections closed because the upstream could not be reached
	Reset    int   // connections reset by ResetAll
	Stalls   int   // stalls begun
	BytesUp  int64 // bytes forwarded from clients to the upstream
	// BytesDown is the bytes forwarded from the upstream to clients.
	BytesDown int64
}

// proxyConn is one forwarded connection.
type proxyConn struct {
	client net.Conn
	done   chan struct{} // closed by close

	mu       sync.Mutex
	upstream net.Conn // nil until dialled
	closed   bool
}

// StartProxy starts a proxy to upstream (host:port) on a free port of
// 127.0.0.1. It is closed, with every connection, when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: starting proxy: %v", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	p := &Proxy{
		Host:     addr.IP.String(),
		Port:     addr.Port,
		Addr:     ln.Addr().String(),
		Upstream: upstream,
		ln:       ln,
		conns:    map[*proxyConn]struct{}{},
	}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// ResetAll closes every open connection with a TCP reset (SO_LINGER 0) on
// both sides: the client and the upstream each see "connection reset by
// peer" rather than an orderly end. It returns how many it reset.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	n := 0
	for _, c := range conns {
		if p.closeConn(c, true) {
			n++
		}
	}
	return n
}

// Stall stops (on) or resumes (off) forwarding in both directions on every
// connection, open or new, without closing any: reads at either end block
// as on a network path that went black. Bytes held during the stall are
// delivered when it ends, unless the connection is closed first.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setStalled(on)
}

// AfterBytes arms fault (such as ResetAll, or Stall(true)) to run once n
// more bytes have come from the upstream, counted over all connections,
// so that it strikes in the middle of a large response such as the FETCH
// of a message body. It runs once, on a forwarding goroutine, before the
// chunk of bytes that reached n is forwarded (a stall holds it, a reset
// drops it). A later call replaces an armed fault; a nil fault disarms.
func (p *Proxy) AfterBytes(n int64, fault func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.faultIn = fault, max(n, 1)
}

// Stalled reports whether the proxy is stalled now.
func (p *Proxy) Stalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// setStalled changes the stall state; p.mu is held.
func (p *Proxy) setStalled(on bool) {
	switch {
	case on && !p.stalled:
		p.stalled = true
		p.resume = make(chan struct{})
		p.stats.Stalls++
	case !on && p.stalled:
		p.stalled = false
		close(p.resume)
	}
}

// Refuse makes the proxy close new connections as soon as it accepts them
// (on), or forward them again (off). Open connections are not affected.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Stats returns the counts so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Active = len(p.conns)
	return s
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end. It may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.setStalled(false)
	p.mu.Unlock()
	if !already {
		_ = p.ln.Close()
	}
	for _, c := range conns {
		p.closeConn(c, false)
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (too many open files): try again shortly
			// rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.closed || p.refuse {
			if !p.closed {
				p.stats.Refused++
			}
			p.mu.Unlock()
			_ = client.Close()
			continue
		}
		c := &proxyConn{client: client, done: make(chan struct{})}
		p.conns[c] = struct{}{}
		p.stats.Accepted++
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward connects c to the upstream and copies both ways until either
// side ends or the proxy closes c.
func (p *Proxy) forward(c *proxyConn) {
	upstream, err := net.DialTimeout("tcp", p.Upstream, proxyDialTimeout)
	if err != nil {
		p.mu.Lock()
		p.stats.Failed++
		p.mu.Unlock()
		p.closeConn(c, false)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = upstream.Close()
		return
	}
	c.upstream = upstream
	c.mu.Unlock()
	p.wg.Go(func() { p.pipe(c, upstream, c.client, false) })
	p.pipe(c, c.client, upstream, true)
}

// pipe copies from src to dst, holding each chunk while the proxy is
// stalled; when either end fails or ends, it closes c.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn, down bool) {
	defer p.closeConn(c, false)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.count(n, down)
			if !p.waitUnstalled(c.done) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			// An end or a reset at one side closes the other normally:
			// only ResetAll sends resets.
			return
		}
	}
}

// count adds n bytes read to be forwarded and runs the armed fault when
// they reach its count.
func (p *Proxy) count(n int, down bool) {
	p.mu.Lock()
	if !down {
		p.stats.BytesUp += int64(n)
		p.mu.Unlock()
		return
	}
	p.stats.BytesDown += int64(n)
	var fault func()
	if p.fault != nil {
		p.faultIn -= int64(n)
		if p.faultIn <= 0 {
			fault, p.fault = p.fault, nil
		}
	}
	p.mu.Unlock()
	if fault != nil {
		fault()
	}
}

// waitUnstalled returns when no stall is on (true) or when done is closed
// (false).
func (p *Proxy) waitUnstalled(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		stalled, resume := p.stalled, p.resume
		p.mu.Unlock()
		if !stalled {
			return true
		}
		select {
		case <-resume:
		case <-done:
			return false
		}
	}
}

// closeConn closes both ends of c, with a reset when reset is set, and
// reports whether it was open. The counts change first, so that they are
// current for whoever sees the connection end.
func (p *Proxy) closeConn(c *proxyConn, reset bool) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	upstream := c.upstream
	c.mu.Unlock()
	p.mu.Lock()
	delete(p.conns, c)
	if reset {
		p.stats.Reset++
	}
	p.mu.Unlock()
	for _, conn := range []net.Conn{c.client, upstream} {
		if conn == nil {
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}
	close(c.done)
	return true
}

// String returns the proxy's address and upstream, for failure messages.
func (p *Proxy) String() string { return "proxy " + p.Addr + " → " + p.Upstream }
