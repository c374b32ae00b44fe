package pop3source

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
)

// fakeServer is a POP3 server over implicit TLS on 127.0.0.1 whose answers
// the test chooses: reply gets each command line and returns the response
// lines (nil: say nothing).
type fakeServer struct {
	port  int
	caPEM string
}

func startFake(t *testing.T, reply func(line string) []string) *fakeServer {
	t.Helper()
	config, caPEM := sourcetest.ServerTLS(t)
	port := sourcetest.Serve(t, config, func(conn net.Conn) {
		r := bufio.NewReader(conn)
		if _, err := conn.Write([]byte("+OK fake ready\r\n")); err != nil {
			return
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			resp := reply(strings.TrimRight(line, "\r\n"))
			if resp == nil {
				_, _ = r.ReadString('\n') // hang until closed
				return
			}
			if _, err := conn.Write([]byte(strings.Join(resp, "\r\n") + "\r\n")); err != nil {
				return
			}
		}
	})
	return &fakeServer{port: port, caPEM: caPEM}
}

func (f *fakeServer) config() imapconf.Config {
	return imapconf.Config{Host: "127.0.0.1", Port: f.port, TLS: imapconf.TLSImplicit, CACert: f.caPEM,
		Username: "u@example.test", Password: "S3cret-pw"}
}

// basic answers the login and the commands the tests do not vary.
func basic(caps ...string) func(string) []string {
	return func(line string) []string {
		cmd := strings.ToUpper(strings.Fields(line)[0])
		switch cmd {
		case "CAPA":
			return append(append([]string{"+OK"}, caps...), ".")
		case "USER", "PASS", "QUIT":
			return []string{"+OK"}
		case "STAT":
			return []string{"+OK 2 300"}
		case "NOOP":
			return nil
		}
		return []string{"-ERR unknown command"}
	}
}

func TestNoUIDL(t *testing.T) {
	t.Parallel()
	f := startFake(t, basic("USER", "TOP"))
	got := Test(context.Background(), f.config(), Options{DialTimeout: 5 * time.Second})
	if got.OK || got.Step != StepUIDL || !strings.Contains(got.Error, "UIDL") {
		t.Errorf("got %+v, want a failure of step uidl", got)
	}
	c, err := Dial(context.Background(), f.config(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.UIDL(context.Background()); !errors.Is(err, ErrNoUIDL) {
		t.Errorf("got %v, want ErrNoUIDL", err)
	}
}

func TestCommandTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	f := startFake(t, basic("USER", "UIDL"))
	c, err := Dial(context.Background(), f.config(), Options{CommandTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = c.Noop(context.Background())
	if !errors.Is(err, ErrTimeout) || time.Since(began) > 3*time.Second {
		t.Errorf("got %v after %v, want ErrTimeout after 200ms", err, time.Since(began))
	}
	if _, _, err := c.Stat(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Errorf("got %v after a timeout, want the connection closed with the timeout as cause", err)
	}

	c, err = Dial(context.Background(), f.config(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := c.Noop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestDialTimeout(t *testing.T) {
	t.Parallel()
	_, port := sourcetest.SilentServer(t)
	for _, mode := range modes {
		cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: mode, Username: "u@example.test", Password: "pw"}
		began := time.Now()
		_, err := Dial(context.Background(), cfg, Options{DialTimeout: 200 * time.Millisecond})
		var se *StepError
		wantStep := StepTLS
		if mode == imapconf.TLSStartTLS {
			wantStep = StepConnect // waiting for the greeting
		}
		if !errors.As(err, &se) || se.Step != wantStep || !errors.Is(err, ErrTimeout) {
			t.Errorf("%s: got %v, want a timeout of step %s", mode, err, wantStep)
		}
		if time.Since(began) > 3*time.Second {
			t.Errorf("%s: Dial took %v, want about 200ms", mode, time.Since(began))
		}
	}
}

func TestPasswordEchoed(t *testing.T) {
	t.Parallel()
	f := startFake(t, func(line string) []string {
		if strings.HasPrefix(line, "PASS ") {
			return []string{"-ERR [AUTH] wrong password " + strings.TrimPrefix(line, "PASS ")}
		}
		return basic("USER", "UIDL")(line)
	})
	cfg := f.config()
	_, err := Dial(context.Background(), cfg, Options{})
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), cfg.Password) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("got %v, want ErrAuth with the password redacted", err)
	}
	got := Test(context.Background(), cfg, Options{})
	if got.Step != StepLogin || strings.Contains(got.Error, cfg.Password) {
		t.Errorf("got %+v, want step login without the password", got)
	}
}

func TestReadDotBody(t *testing.T) {
	long := strings.Repeat("y", 10000)
	tests := []struct{ wire, want string }{
		{".\r\n", ""},
		{"a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"..a\r\n...\r\n..\r\n.\r\n", ".a\r\n..\r\n.\r\n"},
		{"bare\nlf\n.\n", "bare\nlf\n"},
		{"cr\rinside\r\n.\r\n", "cr\rinside\r\n"},
		{"." + long + "\r\n.\r\n", long + "\r\n"},
		{long + ".\r\n.\r\n", long + ".\r\n"},
		{"a.\r\n .\r\n.\r\n", "a.\r\n .\r\n"},
	}
	for _, tt := range tests {
		var got []byte
		err := readDotBody(bufio.NewReader(strings.NewReader(tt.wire+"NEXT")), func(p []byte) error { got = append(got, p...); return nil })
		if err != nil || string(got) != tt.want {
			t.Errorf("wire %.40q: got %.40q, %v; want %.40q", tt.wire, got, err, tt.want)
		}
	}
	err := readDotBody(bufio.NewReader(strings.NewReader("a\r\nb")), func([]byte) error { return nil })
	if err == nil {
		t.Error("got nil for a body without its end, want an error")
	}
}

func TestKeeper(t *testing.T) {
	hdr := "A: 1\r\nB: 2\r\n\r\n"
	body := strings.Repeat("body line\r\n", 10)
	split := func(s string, n int) []string {
		var parts []string
		for len(s) > n {
			parts, s = append(parts, s[:n]), s[n:]
		}
		return append(parts, s)
	}
	tests := []struct {
		name       string
		msg        string
		limit      int64
		headerOnly bool
		want       string
		tooLarge   bool
	}{
		{"fits", hdr + body, 1000, false, hdr + body, false},
		{"grows over the cap", hdr + body, 50, false, hdr, true},
		{"header only", hdr + body, 1000, true, hdr, true},
		{"lf header", "A: 1\nB: 2\n\nbody\n", 12, false, "A: 1\nB: 2\n\n", true},
		{"empty header", "\r\nbody\r\n", 3, false, "\r\n", true},
		{"header over the cap", strings.Repeat("H: x\r\n", 20) + "\r\nbody", 30, false, strings.Repeat("H: x\r\n", 5), true},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 2, 3, 7, 1000} {
			k := &keeper{limit: tt.limit, headerOnly: tt.headerOnly}
			for _, p := range split(tt.msg, n) {
				k.write([]byte(p))
			}
			if string(k.buf) != tt.want || k.headerOnly != tt.tooLarge {
				t.Errorf("%s in pieces of %d: got %q, %v; want %q, %v", tt.name, n, k.buf, k.headerOnly, tt.want, tt.tooLarge)
			}
		}
	}
}

func TestParseUIDL(t *testing.T) {
	if e, err := parseUIDL("3 abc-DEF.1"); err != nil || e != (Entry{3, "abc-DEF.1"}) {
		t.Errorf("got %v, %v", e, err)
	}
	for _, bad := range []string{"", "3", "x abc", "0 abc", "1 " + strings.Repeat("a", 71)} {
		if _, err := parseUIDL(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

// tokenClient is a SASL client like XOAUTH2: a long initial response, and
// an empty answer to the server's error challenge.
type tokenClient struct{ ir []byte }

func (c *tokenClient) Start() (string, []byte, error) { return "XOAUTH2", c.ir, nil }

func (c *tokenClient) Next([]byte) ([]byte, error) { return []byte{}, nil }

func TestAuthLongInitialResponse(t *testing.T) {
	t.Parallel()
	token := []byte("user=u@example.test\x01auth=Bearer " + strings.Repeat("t", 1500) + "\x01\x01")
	goodLine := base64.StdEncoding.EncodeToString(token)
	var mu sync.Mutex
	var state string // the fake's AUTH state; its connections are sequential
	f := startFake(t, func(line string) []string {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case line == "AUTH XOAUTH2":
			state = "ir"
			return []string{"+ "}
		case state == "ir" && line == goodLine:
			state = ""
			return []string{"+OK logged in"}
		case state == "ir":
			state = "err"
			return []string{"+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"401"}`))}
		case state == "err" && line == "":
			state = ""
			return []string{"-ERR [AUTH] invalid token"}
		}
		return basic("SASL XOAUTH2", "UIDL")(line)
	})
	cfg := f.config()
	cfg.Auth, cfg.Password = imapconf.AuthOAuth2, ""
	hook := func(ir []byte) Options {
		return Options{SASL: func(context.Context, imapconf.Config) (sasl.Client, error) {
			return &tokenClient{ir: ir}, nil
		}}
	}
	c, err := Dial(context.Background(), cfg, hook(token))
	if err != nil {
		t.Fatalf("got %v, want login", err)
	}
	c.Close()
	_, err = Dial(context.Background(), cfg, hook([]byte("user=u\x01auth=Bearer "+strings.Repeat("x", 1500)+"\x01\x01")))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "invalid token") {
		t.Errorf("got %v, want ErrAuth for a refused token", err)
	}
}
