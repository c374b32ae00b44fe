package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// delayProxy forwards TCP connections to target on loopback, holding the
// bytes of each direction for half of rtt: a mail server across a network,
// as a user's is (a hosted mailbox is tens of milliseconds away), where
// every command the client waits for costs a round trip. It delays without
// limiting throughput: bytes are read as they come and written once their
// time has come.
type delayProxy struct {
	ln     net.Listener
	target string
	half   time.Duration

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// newDelayProxy listens on host (a loopback address) at a free port.
func newDelayProxy(host, target string, rtt time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("starting the delay proxy: %w", err)
	}
	p := &delayProxy{ln: ln, target: target, half: rtt / 2}
	p.wg.Go(p.serve)
	return p, nil
}

// port is the port the proxy listens on.
func (p *delayProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *delayProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.carry(s, c) })
		p.wg.Go(func() { p.carry(c, s) })
	}
}

// chunk is bytes read, due to be written at due.
type chunk struct {
	due time.Time
	b   []byte
}

// carry copies src to dst, each chunk half a round trip after it was read;
// at src's end it closes dst for writing.
func (p *delayProxy) carry(dst, src net.Conn) {
	ch := make(chan chunk, 4096) // at most 4096 × 32 KB in flight
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{due: time.Now().Add(p.half), b: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			for range ch { // let the reader finish
			}
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// close stops the proxy and every connection through it.
func (p *delayProxy) close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		if cerr := c.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
