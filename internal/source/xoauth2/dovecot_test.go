package xoauth2_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// oauthEnv is a Dovecot that accepts only XOAUTH2 and OAUTHBEARER with
// tokens of the fake authorization server.
type oauthEnv struct {
	d  *testenv.Dovecot
	as *oauthfake.Server
}

func newOAuthEnv(t *testing.T) *oauthEnv {
	t.Helper()
	as := oauthfake.New(t)
	d := testenv.StartDovecot(t, testenv.DovecotOAuth2(as.IntrospectionURL()))
	return &oauthEnv{d: d, as: as}
}

// user adds a mailbox and a client allowed into it, and returns the oauth2
// configuration of serverType (imaps or pop3s) over mode that reads it.
func (e *oauthEnv) user(t *testing.T, localpart, serverType, mode string) imapconf.Config {
	t.Helper()
	address := e.d.AddUser(t, localpart, "unused-password")
	clientID, secret := "app-"+localpart, "Secret~"+localpart+"~0123456789"
	e.as.AddClient(clientID, secret, address)
	port := e.d.IMAPSPort
	switch {
	case serverType == imapconf.ServerIMAPS && mode == imapconf.TLSStartTLS:
		port = e.d.IMAPPort
	case serverType == imapconf.ServerPOP3S && mode == imapconf.TLSImplicit:
		port = e.d.POP3SPort
	case serverType == imapconf.ServerPOP3S:
		port = e.d.POP3Port
	}
	return imapconf.Config{
		Name: localpart, ServerType: serverType, Type: imapconf.TypeGeneric,
		Host: e.d.Host, Port: port, TLS: mode, CACert: string(e.d.CACertPEM),
		Username: address, Folder: imapconf.DefaultFolder,
		Auth: imapconf.AuthOAuth2, TokenURL: e.as.TokenURL(), ClientID: clientID, ClientSecret: secret,
	}
}

// TestDovecot logs in to a Dovecot that accepts only XOAUTH2, over IMAP and
// POP3 with both TLS modes: a token of the authorization server opens the
// mailbox; a revoked one is refused as an authentication failure at the
// login step, with the server's reason and without the token; after
// Invalidate the next login gets a new token and works again.
func TestDovecot(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	for _, serverType := range []string{imapconf.ServerIMAPS, imapconf.ServerPOP3S} {
		for _, mode := range []string{imapconf.TLSImplicit, imapconf.TLSStartTLS} {
			t.Run(serverType+"_"+mode, func(t *testing.T) {
				cfg := e.user(t, serverType+"_"+mode, serverType, mode)
				e.d.Append(t, cfg.Username, "INBOX", []byte("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"))
				ts, err := xoauth2.NewTokenSource(cfg, xoauth2.Options{})
				if err != nil {
					t.Fatal(err)
				}
				login := func() error {
					ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					defer cancel()
					if serverType == imapconf.ServerPOP3S {
						c, err := pop3source.Dial(ctx, cfg, pop3source.Options{SASL: ts.SASL})
						if err != nil {
							return err
						}
						defer c.Close()
						if n, _, err := c.Stat(ctx); err != nil || n != 1 {
							t.Errorf("stat: got %d, %v, want 1 message", n, err)
						}
						return nil
					}
					c, err := imapsource.Dial(ctx, cfg, imapsource.Options{SASL: ts.SASL})
					if err != nil {
						return err
					}
					defer c.Close()
					if mb, err := c.Examine(ctx, "INBOX"); err != nil || mb.Messages != 1 {
						t.Errorf("examine: got %+v, %v, want 1 message", mb, err)
					}
					return nil
				}
				if err := login(); err != nil {
					t.Fatalf("login with a fresh token: %v\n%s", err, e.d.Log())
				}
				if err := login(); err != nil { // the cached token again
					t.Fatalf("login with the cached token: %v", err)
				}
				tok, _ := ts.Token(ctx)
				e.as.Revoke(tok)
				err = login()
				var se *source.StepError
				if !errors.As(err, &se) || se.Step != "login" || !errors.Is(err, source.ErrAuth) {
					t.Fatalf("login with a revoked token: got %v, want an auth failure at step login", err)
				}
				if !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), tok) {
					t.Errorf("got %q: want the server's status 401 and no token", err)
				}
				ts.Invalidate()
				if err := login(); err != nil {
					t.Fatalf("login with a new token after Invalidate: %v", err)
				}
				if n := len(e.as.Tokens()); n < 2 {
					t.Errorf("got %d tokens issued, want 2", n)
				}
			})
		}
	}
	// Passwords are not accepted at all.
	cfg := e.user(t, "password_login", imapconf.ServerIMAPS, imapconf.TLSImplicit)
	cfg.Auth, cfg.Password = imapconf.AuthPassword, "unused-password"
	if res := imapsource.Test(ctx, cfg, imapsource.Options{}); res.OK {
		t.Errorf("password login: got %+v, want a failure", res)
	}
	if c := e.as.Counts(); c.Expired != 0 {
		t.Errorf("an expired token was presented: %+v", c)
	}
}
