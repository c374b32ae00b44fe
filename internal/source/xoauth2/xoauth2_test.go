package xoauth2_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/source/xoauth2/oauthfake"
)

func TestClient(t *testing.T) {
	c := xoauth2.NewClient("someone@example.test", "tok.en-123")
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	want := "user=someone@example.test\x01auth=Bearer tok.en-123\x01\x01"
	if mech != "XOAUTH2" || string(ir) != want {
		t.Errorf("got %q, %q, want XOAUTH2, %q", mech, ir, want)
	}
	if c.Failure() != "" {
		t.Errorf("got failure %q before any challenge", c.Failure())
	}
	resp, err := c.Next([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Errorf("answering the error challenge: got %q, %v, want an empty response", resp, err)
	}
	if f := c.Failure(); !strings.Contains(f, "401") || !strings.Contains(f, "https://mail.google.com/") {
		t.Errorf("got failure %q", f)
	}
	c = xoauth2.NewClient("someone@example.test", "t")
	if _, _ = c.Next([]byte("not json")); !strings.Contains(c.Failure(), "not json") {
		t.Errorf("got failure %q", c.Failure())
	}

	for _, bad := range []struct{ user, token string }{
		{"", "t"}, {"u@example.test", ""}, {"u@example.test\x01", "t"}, {"u@example.test", "t\r\nA1 LOGOUT"},
	} {
		if _, _, err := xoauth2.NewClient(bad.user, bad.token).Start(); err == nil {
			t.Errorf("user %q token %q: got no error", bad.user, bad.token)
		}
	}
}

// clock is a test clock that starts at the real time and moves on demand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testClientID = "00000000-aaaa-bbbb-cccc-000000000001"
	testSecret   = "Sec~ret.Value_with-Symbols+/="
)

func config(as *oauthfake.Server) imapconf.Config {
	return imapconf.Config{Name: "x", Type: imapconf.TypeGeneric, Auth: imapconf.AuthOAuth2, Username: "box@example.test",
		TokenURL: as.TokenURL(), ClientID: testClientID, ClientSecret: testSecret}
}

// TestTokenSourceRenewsBeforeExpiry: a token is reused until a tenth of its
// lifetime (at most a minute) is left, then replaced, before it expires.
func TestTokenSourceRenewsBeforeExpiry(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn time.Duration
		reuseTill time.Duration // still reused at this age
		renewFrom time.Duration // renewed at this age
	}{
		{"short token: 10 % margin", 100 * time.Second, 89 * time.Second, 91 * time.Second},
		{"hour token: one minute margin", time.Hour, 58 * time.Minute, 59*time.Minute + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := oauthfake.New(t)
			as.AddClient(testClientID, testSecret, "box@example.test")
			as.SetExpiresIn(tt.expiresIn)
			clk := &clock{t: time.Now()}
			ts, err := xoauth2.NewTokenSource(config(as), xoauth2.Options{Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first, err := ts.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			clk.advance(tt.reuseTill)
			if again, err := ts.Token(ctx); err != nil || again != first {
				t.Errorf("at age %v: got a new token (%v), want the cached one", tt.reuseTill, err)
			}
			if n := as.Counts().Issued; n != 1 {
				t.Errorf("got %d tokens issued, want 1", n)
			}
			clk.advance(tt.renewFrom - tt.reuseTill)
			second, err := ts.Token(ctx)
			if err != nil || second == first {
				t.Errorf("at age %v: got the old token (%v), want a new one", tt.renewFrom, err)
			}
			if n := as.Counts().Issued; n != 2 {
				t.Errorf("got %d tokens issued, want 2", n)
			}
			toks := as.Tokens()
			if len(toks) != 2 || !toks[0].Issued.Add(tt.renewFrom).Before(toks[0].Expiry) {
				t.Errorf("the renewal at age %v was not before the first token's expiry: %+v", tt.renewFrom, toks)
			}
		})
	}
}

func TestTokenSourceInvalidate(t *testing.T) {
	as := oauthfake.New(t)
	as.AddClient(testClientID, testSecret, "box@example.test")
	ts, err := xoauth2.NewTokenSource(config(as), xoauth2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.Invalidate()
	second, err := ts.Token(ctx)
	if err != nil || second == first || as.Counts().Issued != 2 {
		t.Errorf("after Invalidate: got same token %v, err %v, issued %d; want a new token", second == first, err, as.Counts().Issued)
	}
	// The scope sent is the configuration's default.
	if tok := as.Tokens(); len(tok) != 2 || tok[1].User != "box@example.test" {
		t.Errorf("got tokens %+v", tok)
	}
}

// TestTokenSourceErrors: failures are the token step with the endpoint's
// error and description, never the secret; refused credentials are ErrAuth,
// an unreachable endpoint is not.
func TestTokenSourceErrors(t *testing.T) {
	as := oauthfake.New(t)
	as.AddClient(testClientID, "the-right-secret", "box@example.test")
	down := oauthfake.New(t)
	downURL := down.TokenURL()
	down.Close()
	tests := []struct {
		name     string
		mod      func(c *imapconf.Config)
		auth     bool
		contains []string
	}{
		{"wrong secret", func(c *imapconf.Config) {}, true, []string{"invalid_client", "invalid client secret", "HTTP 401"}},
		{"unknown client", func(c *imapconf.Config) { c.ClientID = "nobody" }, true, []string{"unauthorized_client"}},
		{"wrong scope", func(c *imapconf.Config) {
			c.ClientSecret = "the-right-secret"
			c.Scope = "https://graph.microsoft.com/.default"
		},
			true, []string{"invalid_scope"}},
		{"endpoint down", func(c *imapconf.Config) { c.TokenURL = downURL }, false, []string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(as)
			tt.mod(&cfg)
			ts, err := xoauth2.NewTokenSource(cfg, xoauth2.Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ts.Token(context.Background())
			var se *source.StepError
			if !errors.As(err, &se) || se.Step != "token" {
				t.Fatalf("got %v, want a token step error", err)
			}
			if errors.Is(err, source.ErrAuth) != tt.auth {
				t.Errorf("got ErrAuth %v, want %v: %v", !tt.auth, tt.auth, err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("got %q, want it to contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), cfg.ClientSecret) {
				t.Errorf("the secret is in %q", err)
			}
		})
	}
	if _, err := xoauth2.NewTokenSource(imapconf.Config{TokenURL: as.TokenURL(), ClientID: "x"}, xoauth2.Options{}); err == nil {
		t.Error("no secret: got no error")
	}
}

// TestRedact: errors and text lose the secret and every token handed out.
func TestRedact(t *testing.T) {
	as := oauthfake.New(t)
	as.AddClient(testClientID, testSecret, "box@example.test")
	ts, err := xoauth2.NewTokenSource(config(as), xoauth2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = ts.RedactError(&source.StepError{Step: "login", Err: errors.Join(source.ErrAuth, errors.New("server echoed "+tok+" and "+testSecret))}, source.ErrAuth)
	var se *source.StepError
	if !errors.As(err, &se) || se.Step != "login" || !errors.Is(err, source.ErrAuth) ||
		strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), testSecret) {
		t.Errorf("got %v", err)
	}
	if got := ts.Redact("a " + tok + " b"); got != "a [redacted] b" {
		t.Errorf("got %q", got)
	}
	if !bytes.Contains([]byte(ts.Redact("nothing secret")), []byte("nothing secret")) {
		t.Error("Redact changed text without a secret")
	}
}
