package bench

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestDelayProxy: a round trip through the proxy takes at least its rtt,
// and what goes through arrives whole and in order, both ways.
func TestDelayProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	const rtt = 40 * time.Millisecond
	p, err := newDelayProxy("127.0.0.1", ln.Addr().String(), rtt)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("got %q, %v; want ping", got, err)
	}
	if d := time.Since(start); d < rtt {
		t.Errorf("a round trip took %v, want at least %v", d, rtt)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	go func() { _, _ = c.Write(want) }()
	back := make([]byte, len(want))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, want) {
		t.Fatalf("4 MiB through the proxy: %v, equal %v", err, bytes.Equal(back, want))
	}
}
