package imapsource

import (
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

func TestDial(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	base := newUser(t, d, "dial")
	raws := [][]byte{sourcetest.NewMessage(1, 100), sourcetest.NewMessage(2, 2000)}
	uids := appendMessages(t, d, base.Username, "INBOX", raws...)

	tests := []struct {
		name string
		tls  string
		port int
	}{
		{"IMAPS", imapconf.TLSImplicit, d.IMAPSPort},
		{"STARTTLS", imapconf.TLSStartTLS, d.IMAPPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.TLS, cfg.Port = tt.tls, tt.port
			c := dialSelect(t, cfg, Options{})
			if !c.HasIdle() {
				t.Errorf("got HasIdle false, want true (capabilities %v)", c.Capabilities())
			}
			for _, want := range []string{"IMAP4rev1", "IDLE", "UIDPLUS", "MOVE"} {
				if !slices.Contains(c.Capabilities(), want) {
					t.Errorf("got capabilities %v, want %s among them", c.Capabilities(), want)
				}
			}
			if slices.Contains(c.Capabilities(), "STARTTLS") || slices.Contains(c.Capabilities(), "LOGINDISABLED") {
				t.Errorf("got capabilities %v, want those after login", c.Capabilities())
			}
			msgs := collect(t, func(fn func(Message) error) error {
				return c.FetchAfter(testCtx(t), 0, 0, fn)
			})
			if got := uidsOf(msgs); !slices.Equal(got, uids) {
				t.Fatalf("got UIDs %v, want %v", got, uids)
			}
			for i, m := range msgs {
				if want := crlf(raws[i]); string(m.Raw) != string(want) {
					t.Errorf("message %d: got %d bytes %.40q…, want %d bytes %.40q…", m.UID, len(m.Raw), m.Raw, len(want), want)
				}
			}
		})
	}
}

func TestDialSASL(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "sasl")
	oauth := cfg
	oauth.Auth, oauth.Password = imapconf.AuthOAuth2, ""
	errToken := errors.New("fetching the token failed")

	tests := []struct {
		name     string
		sasl     func(context.Context, imapconf.Config) (sasl.Client, error)
		wantErr  error // nil: logged in
		wantStep string
	}{
		{"PLAIN client", func(context.Context, imapconf.Config) (sasl.Client, error) {
			return sasl.NewPlainClient("", cfg.Username, cfg.Password), nil
		}, nil, ""},
		{"refused", func(context.Context, imapconf.Config) (sasl.Client, error) {
			return sasl.NewPlainClient("", cfg.Username, "wrong-token"), nil
		}, ErrAuth, StepLogin},
		{"client not made", func(context.Context, imapconf.Config) (sasl.Client, error) {
			return nil, errToken
		}, errToken, StepLogin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(testCtx(t), oauth, Options{SASL: tt.sasl})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got %v, want login", err)
				}
				defer c.Close()
				if _, err := c.Select(testCtx(t), "INBOX"); err != nil {
					t.Errorf("select after SASL login: %v", err)
				}
				return
			}
			var se *StepError
			if !errors.Is(err, tt.wantErr) || !errors.As(err, &se) || se.Step != tt.wantStep {
				t.Errorf("got %v, want %v in step %s", err, tt.wantErr, tt.wantStep)
			}
		})
	}
}

func TestTest(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	good := newUser(t, d, "tester")
	appendMessages(t, d, good.Username, "INBOX", sourcetest.NewMessage(1, 10), sourcetest.NewMessage(2, 10), sourcetest.NewMessage(3, 10))
	closedPort := sourcetest.FreePort(t, d.Host)
	const wrongPassword = "Wr0ng-Passw0rd-Xyz"

	tests := []struct {
		name     string
		modify   func(*imapconf.Config)
		wantStep string
		wantErr  string // in the error text
	}{
		{"ok", func(*imapconf.Config) {}, "", ""},
		{"ok starttls", func(c *imapconf.Config) { c.TLS, c.Port = imapconf.TLSStartTLS, d.IMAPPort }, "", ""},
		{"ok tls derived from port 993", func(c *imapconf.Config) { c.TLS = "" }, "", ""},
		{"connection refused", func(c *imapconf.Config) { c.Port = closedPort }, StepConnect, "connection refused"},
		{"untrusted certificate", func(c *imapconf.Config) { c.CACert = "" }, StepTLS, "caCert"},
		{"untrusted certificate starttls", func(c *imapconf.Config) {
			c.CACert, c.TLS, c.Port = "", imapconf.TLSStartTLS, d.IMAPPort
		}, StepTLS, "certificate"},
		{"bad caCert", func(c *imapconf.Config) { c.CACert = "not a certificate" }, StepTLS, "caCert"},
		{"implicit tls on the starttls port", func(c *imapconf.Config) { c.Port = d.IMAPPort }, StepTLS, "tls"},
		{"plaintext refused", func(c *imapconf.Config) { c.TLS = "none" }, StepTLS, "without TLS is refused"},
		{"wrong password", func(c *imapconf.Config) { c.Password = wrongPassword }, StepLogin, "AUTHENTICATIONFAILED"},
		{"unknown user", func(c *imapconf.Config) { c.Username = "nobody@" + testenv.DovecotDomain }, StepLogin, "authentication failed"},
		{"oauth2 without SASL client", func(c *imapconf.Config) { c.Auth = imapconf.AuthOAuth2 }, StepLogin, "SASL"},
		{"missing folder", func(c *imapconf.Config) { c.Folder = "NoSuchFolder" }, StepSelect, "NoSuchFolder"},
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
				if got.Messages != 3 {
					t.Errorf("got %d messages, want 3", got.Messages)
				}
				if got.UIDValidity == 0 {
					t.Errorf("got UIDValidity 0, want it set")
				}
				if !slices.Contains(got.Capabilities, "IDLE") {
					t.Errorf("got capabilities %v, want IDLE among them", got.Capabilities)
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
		b, err := json.Marshal(TestResult{OK: false, Step: StepLogin, Error: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"ok":false,"step":"login","error":"x","messages":0}`; string(b) != want {
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
		var se *StepError
		if !errors.As(err, &se) || se.Step != StepLogin {
			t.Errorf("got %#v, want a StepError of step login", err)
		}
		// The right password after a wrong one works at once.
		c, err := Dial(testCtx(t), good, Options{})
		if err != nil {
			t.Fatalf("got %v, want login", err)
		}
		c.Close()
	})
}

// TestDialTimeout checks that a server that accepts and then says nothing
// fails Dial after DialTimeout, naming the step it hung in.
func TestDialTimeout(t *testing.T) {
	t.Parallel()
	_, port := sourcetest.SilentServer(t)

	tests := []struct {
		name     string
		tls      string
		wantStep string
	}{
		{"implicit", imapconf.TLSImplicit, StepTLS},
		{"starttls", imapconf.TLSStartTLS, StepTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: tt.tls, Username: "u@example.test", Password: "secret-pw"}
			began := time.Now()
			_, err := Dial(context.Background(), cfg, Options{DialTimeout: 300 * time.Millisecond})
			elapsed := time.Since(began)
			var se *StepError
			if !errors.As(err, &se) || se.Step != tt.wantStep || !errors.Is(err, ErrTimeout) {
				t.Errorf("got %v, want a %s step timeout", err, tt.wantStep)
			}
			if elapsed > 3*time.Second {
				t.Errorf("got Dial returning after %v, want about 300ms", elapsed)
			}
		})
	}

	t.Run("context canceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: imapconf.TLSImplicit}
		_, err := Dial(ctx, cfg, Options{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

func TestRedact(t *testing.T) {
	auth := &StepError{Step: StepLogin, Err: errors.Join(ErrAuth, errors.New("server said: bad password hunter2"))}
	tests := []struct {
		name     string
		err      error
		secrets  []string
		wantText string
		wantAuth bool
	}{
		{"no secret in text", &StepError{Step: StepConnect, Err: errors.New("refused")}, []string{"hunter2"}, "connect: refused", false},
		{"secret replaced", auth, []string{"hunter2"}, "login: authentication failed\nserver said: bad password [redacted]", true},
		{"empty secret ignored", &StepError{Step: StepConnect, Err: errors.New("refused")}, []string{""}, "connect: refused", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redact(tt.err, tt.secrets...)
			if got.Error() != tt.wantText {
				t.Errorf("got %q, want %q", got.Error(), tt.wantText)
			}
			if errors.Is(got, ErrAuth) != tt.wantAuth {
				t.Errorf("got errors.Is(ErrAuth) %v, want %v", errors.Is(got, ErrAuth), tt.wantAuth)
			}
			var se *StepError
			if !errors.As(got, &se) {
				t.Errorf("got %T, want a *StepError", got)
			}
		})
	}
}
