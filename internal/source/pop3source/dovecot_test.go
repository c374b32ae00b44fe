package pop3source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
)

// TestDovecot runs the tests against one private Dovecot, each with users of
// its own.
func TestDovecot(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			t.Run("login and UIDL", func(t *testing.T) { t.Parallel(); testUIDL(t, d, mode) })
			t.Run("retr", func(t *testing.T) { t.Parallel(); testRetr(t, d, mode) })
			t.Run("dele", func(t *testing.T) { t.Parallel(); testDele(t, d, mode) })
			t.Run("sasl", func(t *testing.T) { t.Parallel(); testSASL(t, d, mode) })
		})
	}
	t.Run("Test", func(t *testing.T) { t.Parallel(); testTest(t, d) })
}

func testUIDL(t *testing.T, d *testenv.Dovecot, mode string) {
	cfg := newUser(t, d, "uidl-"+mode, mode)
	appendAll(t, d, cfg.Username, sourcetest.NewMessage(1, 10), sourcetest.NewMessage(2, 100), sourcetest.NewMessage(3, 1000))

	c := dialT(t, cfg)
	if caps := c.Capabilities(); !hasCapability(caps, "UIDL") {
		t.Errorf("got capabilities %v, want UIDL among them", caps)
	}
	count, size, err := c.Stat(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if count != 3 || size < 1000 {
		t.Errorf("got stat %d messages %d bytes, want 3 and over 1000", count, size)
	}
	first, err := c.UIDL(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 {
		t.Fatalf("got UIDL %v, want 3 entries", first)
	}
	if err := c.Quit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("got Noop after Quit %v, want ErrClosed", err)
	}

	var want []string
	for _, e := range first {
		want = append(want, e.UIDL)
	}
	// Stable across sessions, also with more mail.
	appendAll(t, d, cfg.Username, sourcetest.NewMessage(4, 10))
	got := uidls(t, cfg)
	if len(got) != 4 || !slices.Equal(got[:3], want) {
		t.Errorf("got UIDLs %v in the second session, want %v and one more", got, want)
	}
}

// dotMessage is a message whose lines start with "." (which POP3 stuffs with
// another "."), holds a line of a lone "." and a line of 20 KB.
func dotMessage() []byte {
	var b bytes.Buffer
	b.WriteString("From: Sender <sender@example.test>\r\n" +
		"To: <alice@example.test>\r\n" +
		"Subject: dots\r\n" +
		"Message-ID: <dots@example.test>\r\n" +
		"\r\n" +
		".starts with a dot\r\n" +
		"..starts with two\r\n" +
		".\r\n" +
		"..\r\n" +
		" .\r\n" +
		".\r\n.\r\n")
	b.WriteString("." + strings.Repeat("0123456789abcdef", 20<<10/16) + "\r\n")
	b.WriteString(strings.Repeat("x", 8192) + "\r\n")
	b.WriteString("the end\r\n")
	return b.Bytes()
}

func testRetr(t *testing.T, d *testenv.Dovecot, mode string) {
	cfg := newUser(t, d, "retr-"+mode, mode)
	dots := dotMessage()
	big := sourcetest.NewMessage(2, 64<<10)
	appendAll(t, d, cfg.Username, dots, big)
	c := dialT(t, cfg)

	t.Run("byte for byte", func(t *testing.T) {
		for n, want := range map[int][]byte{1: dots, 2: big} {
			m, err := c.Retr(testCtx(t), n, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Raw, want) {
				t.Errorf("message %d: got %d bytes, want %d; differ at %d", n, len(m.Raw), len(want), firstDiff(m.Raw, want))
			}
			if m.TooLarge || m.Num != n || m.Size != int64(len(want)) {
				t.Errorf("message %d: got num %d size %d tooLarge %v, want size %d", n, m.Num, m.Size, m.TooLarge, len(want))
			}
		}
	})

	t.Run("size cap with TOP", func(t *testing.T) {
		m, err := c.Retr(testCtx(t), 2, 10<<10)
		if err != nil {
			t.Fatal(err)
		}
		if !m.TooLarge || !bytes.Equal(m.Raw, header(big)) {
			t.Errorf("got tooLarge %v raw %q, want the header %q", m.TooLarge, m.Raw, header(big))
		}
	})

	t.Run("size cap without TOP", func(t *testing.T) {
		saved := c.caps
		c.caps = slices.DeleteFunc(slices.Clone(c.caps), func(s string) bool { return strings.HasPrefix(s, "TOP") })
		defer func() { c.caps = saved }()
		m, err := c.Retr(testCtx(t), 2, 10<<10)
		if err != nil {
			t.Fatal(err)
		}
		if !m.TooLarge || !bytes.Equal(m.Raw, header(big)) {
			t.Errorf("got tooLarge %v raw %q, want the header %q", m.TooLarge, m.Raw, header(big))
		}
		// The connection is still in step.
		m, err = c.Retr(testCtx(t), 1, 0)
		if err != nil || m.TooLarge || !bytes.HasPrefix(m.Raw, []byte("From: ")) {
			t.Errorf("got %v, %q…, want message 1 after a header-only read", err, m.Raw[:min(len(m.Raw), 20)])
		}
	})

	t.Run("no such message", func(t *testing.T) {
		_, err := c.Retr(testCtx(t), 99, 0)
		var re *ResponseError
		var se *StepError
		if !errors.As(err, &re) || !errors.As(err, &se) || se.Step != StepList {
			t.Fatalf("got %v, want a -ERR of step list", err)
		}
		if err := c.Noop(testCtx(t)); err != nil {
			t.Errorf("got %v after -ERR, want the connection usable", err)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testDele(t *testing.T, d *testenv.Dovecot, mode string) {
	cfg := newUser(t, d, "dele-"+mode, mode)
	appendAll(t, d, cfg.Username, sourcetest.NewMessage(1, 10), sourcetest.NewMessage(2, 10), sourcetest.NewMessage(3, 10), sourcetest.NewMessage(4, 10))
	all := uidls(t, cfg)

	// Marked, then the connection dropped: nothing is deleted.
	c := dialT(t, cfg)
	for _, n := range []int{1, 3} {
		if err := c.Dele(testCtx(t), n); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if got := uidls(t, cfg); !slices.Equal(got, all) {
		t.Fatalf("after DELE without QUIT got %v, want all of %v", got, all)
	}

	// Marked and QUIT: exactly those are deleted.
	c = dialT(t, cfg)
	for _, n := range []int{1, 3} {
		if err := c.Dele(testCtx(t), n); err != nil {
			t.Fatal(err)
		}
	}
	// A marked message cannot be read or marked again in the session.
	if err := c.Dele(testCtx(t), 1); err == nil {
		t.Error("got DELE of a deleted message accepted, want -ERR")
	}
	if err := c.Quit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{all[1], all[3]}
	if got := uidls(t, cfg); !slices.Equal(got, want) {
		t.Errorf("after DELE 1, 3 and QUIT got %v, want %v", got, want)
	}
	out := d.Doveadm(t, "search", "-u", cfg.Username, "mailbox", "INBOX", "all")
	if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 2 {
		t.Errorf("doveadm search found %d messages:\n%s\nwant 2", lines, out)
	}
}

func testSASL(t *testing.T, d *testenv.Dovecot, mode string) {
	cfg := newUser(t, d, "sasl-"+mode, mode)
	cfg.Auth = imapconf.AuthOAuth2 // the SASL hook is what logs in
	password := cfg.Password
	cfg.Password = ""
	opts := func(pw string) Options {
		return Options{SASL: func(ctx context.Context, cfg imapconf.Config) (sasl.Client, error) {
			return sasl.NewPlainClient("", cfg.Username, pw), nil
		}}
	}
	c, err := Dial(testCtx(t), cfg, opts(password))
	if err != nil {
		t.Fatalf("got %v, want login with AUTH PLAIN", err)
	}
	if _, err := c.UIDL(testCtx(t)); err != nil {
		t.Error(err)
	}
	c.Close()

	_, err = Dial(testCtx(t), cfg, opts("wrong-"+password))
	var se *StepError
	if !errors.Is(err, ErrAuth) || !errors.As(err, &se) || se.Step != StepLogin {
		t.Errorf("got %v, want ErrAuth of step login", err)
	}

	_, err = Dial(testCtx(t), cfg, Options{SASL: func(context.Context, imapconf.Config) (sasl.Client, error) {
		return nil, errors.New("no token")
	}})
	if !errors.As(err, &se) || se.Step != StepLogin || !strings.Contains(err.Error(), "no token") {
		t.Errorf("got %v, want the hook's error in step login", err)
	}
}

func testTest(t *testing.T, d *testenv.Dovecot) {
	good := newUser(t, d, "tester", imapconf.TLSImplicit)
	appendAll(t, d, good.Username, sourcetest.NewMessage(1, 10), sourcetest.NewMessage(2, 10))
	closedPort := sourcetest.FreePort(t, d.Host)
	const wrongPassword = "Wr0ng-Passw0rd-Xyz"

	tests := []struct {
		name     string
		modify   func(*imapconf.Config)
		wantStep string
		wantErr  string // in the error text
	}{
		{"ok", func(*imapconf.Config) {}, "", ""},
		{"ok stls", func(c *imapconf.Config) { c.TLS, c.Port = imapconf.TLSStartTLS, d.POP3Port }, "", ""},
		{"ok tls derived from port", func(c *imapconf.Config) { c.TLS = "" }, "", ""},
		{"connection refused", func(c *imapconf.Config) { c.Port = closedPort }, StepConnect, "connection refused"},
		{"untrusted certificate", func(c *imapconf.Config) { c.CACert = "" }, StepTLS, "caCert"},
		{"untrusted certificate stls", func(c *imapconf.Config) {
			c.CACert, c.TLS, c.Port = "", imapconf.TLSStartTLS, d.POP3Port
		}, StepTLS, "caCert"},
		{"bad caCert", func(c *imapconf.Config) { c.CACert = "not a certificate" }, StepTLS, "caCert"},
		{"implicit tls on the stls port", func(c *imapconf.Config) { c.Port = d.POP3Port }, StepTLS, "tls"},
		{"plaintext refused", func(c *imapconf.Config) { c.TLS = "none" }, StepTLS, "without TLS is refused"},
		{"wrong password", func(c *imapconf.Config) { c.Password = wrongPassword }, StepLogin, "authentication failed"},
		{"wrong password stls", func(c *imapconf.Config) {
			c.Password, c.TLS, c.Port = wrongPassword, imapconf.TLSStartTLS, d.POP3Port
		}, StepLogin, "authentication failed"},
		{"unknown user", func(c *imapconf.Config) { c.Username = "nobody@" + testenv.DovecotDomain }, StepLogin, "authentication failed"},
		{"oauth2 without SASL client", func(c *imapconf.Config) { c.Auth = imapconf.AuthOAuth2 }, StepLogin, "SASL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			got := Test(testCtx(t), cfg, Options{DialTimeout: 5 * time.Second})
			t.Logf("%+v", got)
			if tt.wantStep == "" {
				if !got.OK || got.Step != "" || got.Error != "" {
					t.Fatalf("got %+v, want OK", got)
				}
				if got.Messages != 2 || got.Size == 0 {
					t.Errorf("got %d messages of %d bytes, want 2", got.Messages, got.Size)
				}
				if !hasCapability(got.Capabilities, "UIDL") {
					t.Errorf("got capabilities %v, want UIDL among them", got.Capabilities)
				}
				return
			}
			if got.OK || got.Step != tt.wantStep {
				t.Fatalf("got ok %v step %q (%s), want step %q", got.OK, got.Step, got.Error, tt.wantStep)
			}
			if !strings.Contains(got.Error, tt.wantErr) {
				t.Errorf("got error %q, want it to mention %q", got.Error, tt.wantErr)
			}
			for _, secret := range []string{good.Password, wrongPassword} {
				if strings.Contains(got.Error, secret) {
					t.Errorf("got error %q, want it without the password", got.Error)
				}
			}
		})
	}

	t.Run("JSON", func(t *testing.T) {
		b, err := json.Marshal(TestResult{Step: StepUIDL, Error: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"ok":false,"step":"uidl","error":"x","messages":0,"size":0}`; string(b) != want {
			t.Errorf("got %s, want %s", b, want)
		}
	})

	t.Run("ErrAuth", func(t *testing.T) {
		cfg := good
		cfg.Password = wrongPassword
		_, err := Dial(testCtx(t), cfg, Options{})
		if !errors.Is(err, ErrAuth) {
			t.Errorf("got %v, want ErrAuth", err)
		}
		if strings.Contains(err.Error(), wrongPassword) {
			t.Errorf("got %v, want it without the password", err)
		}
		// The right password after a wrong one works at once.
		c, err := Dial(testCtx(t), good, Options{})
		if err != nil {
			t.Fatalf("got %v, want login", err)
		}
		c.Close()
	})
}
