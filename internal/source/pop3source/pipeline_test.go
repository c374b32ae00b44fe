package pop3source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
)

// tripDialer dials TCP and counts the round trips of its connections: the
// times the client writes after it has read.
type tripDialer struct {
	mu       sync.Mutex
	trips    int
	lastRead bool
}

func (d *tripDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &tripConn{Conn: c, d: d}, nil
}

func (d *tripDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trips
}

type tripConn struct {
	net.Conn
	d *tripDialer
}

func (c *tripConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.mu.Lock()
	c.d.lastRead = true
	c.d.mu.Unlock()
	return n, err
}

func (c *tripConn) Write(p []byte) (int, error) {
	c.d.mu.Lock()
	if c.d.lastRead {
		c.d.trips++
		c.d.lastRead = false
	}
	c.d.mu.Unlock()
	return c.Conn.Write(p)
}

// TestRetrManyPipelined: against Dovecot, which offers PIPELINING, 40
// messages are read with their sizes from one LIST in a few round trips
// (one each, and one more for LIST n, before), byte for byte and in order,
// and deleted in one more.
func TestRetrManyPipelined(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "pipelined", modes[0])
	const n = 40
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = sourcetest.NewMessage(i, 2000)
	}
	appendAll(t, d, cfg.Username, raws...)
	var dialer tripDialer
	c, err := Dial(testCtx(t), cfg, Options{Dial: dialer.Dial})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Pipelining() {
		t.Fatalf("Dovecot's capabilities %v: no PIPELINING", c.Capabilities())
	}
	before := dialer.count()
	sizes, err := c.Sizes(testCtx(t))
	if err != nil || len(sizes) != n {
		t.Fatalf("got %d sizes, %v; want %d", len(sizes), err, n)
	}
	msgs := make([]Sized, n)
	for i := range msgs {
		msgs[i] = Sized{Num: i + 1, Size: sizes[i+1]}
	}
	var got []Message
	if err := c.RetrMany(testCtx(t), msgs, 0, nil, func(m Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Num != i+1 || !bytes.Equal(m.Raw, crlfOf(raws[i])) {
			t.Errorf("message %d: got number %d and %d bytes, want %d and %d bytes", i, m.Num, len(m.Raw), i+1, len(crlfOf(raws[i])))
		}
	}
	nums := make([]int, n)
	for i := range nums {
		nums[i] = i + 1
	}
	if err := c.DeleMany(testCtx(t), nums); err != nil {
		t.Fatal(err)
	}
	// LIST, the RETRs, the DELEs: three round trips (four with a TLS
	// record the server sends on its own).
	if trips := dialer.count() - before; trips > 4 {
		t.Errorf("%d round trips for LIST, %d RETR and %d DELE, want at most 4", trips, n, n)
	}
	if err := c.Quit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if left := len(uidls(t, cfg)); left != 0 {
		t.Errorf("%d messages left after DELE and QUIT, want 0", left)
	}
}

// crlfOf is raw with bare line feeds turned into CRLF, as the server
// stores and sends it.
func crlfOf(raw []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// TestRetrManyRefused: a -ERR for one of the messages sent together ends
// RetrMany with that error, the messages before it handed on and the
// answers after it read, so that the next command gets its own answer.
func TestRetrManyRefused(t *testing.T) {
	t.Parallel()
	base := basic("USER", "UIDL", "PIPELINING")
	f := startFake(t, func(line string) []string {
		switch line {
		case "RETR 1", "RETR 3":
			return []string{"+OK", "Subject: " + line, "", "..dot-stuffed", "."}
		case "RETR 2":
			return []string{"-ERR no such message"}
		}
		return base(line)
	})
	c, err := Dial(context.Background(), f.config(), Options{CommandTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	err = c.RetrMany(context.Background(), []Sized{{1, 40}, {2, 40}, {3, 40}}, 0, nil, func(m Message) error {
		got = append(got, string(m.Raw))
		return nil
	})
	var re *ResponseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("got error %v, want the -ERR of RETR 2", err)
	}
	if want := []string{"Subject: RETR 1\r\n\r\n.dot-stuffed\r\n"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handed on %q, want %q", got, want)
	}
	if count, _, err := c.Stat(context.Background()); err != nil || count != 2 {
		t.Errorf("STAT after: %d, %v; want 2 (its own answer)", count, err)
	}
}
