package xoauth2_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2"
)

// TestDovecotDelegated: the access tokens of a delegated sign-in at the
// fake (code, then a rotated refresh) open the signed-in user's mailbox in
// a Dovecot whose oauth2 passdb introspects them, over IMAP and POP3; after
// RevokeUser the token is refused at login.
func TestDovecotDelegated(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	address := e.d.AddUser(t, "delegated", "unused-password")
	e.as.AddPublicClient("mt-public")
	cfg := imapconf.Config{
		Name: "delegated", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric,
		Host: e.d.Host, Port: e.d.IMAPSPort, TLS: imapconf.TLSImplicit, CACert: string(e.d.CACertPEM),
		Username: address, Folder: imapconf.DefaultFolder,
		Auth: imapconf.AuthOAuth2Delegated, Provider: imapconf.ProviderCustom,
		AuthURL: e.as.AuthorizeURL(), TokenURL: e.as.TokenURL(), Scope: "mail openid email offline_access",
		ClientID: "mt-public",
	}
	e.d.Append(t, address, "INBOX", []byte("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"))
	const redirect = "http://127.0.0.1:1/oauth/callback"
	st, err := oauthflow.Begin(cfg, redirect, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	back, err := e.as.Consent(ctx, nil, st.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	g, err := oauthflow.Exchange(ctx, e.as.Client(), cfg, redirect, back.Query().Get("code"), st.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(g.Account, address) {
		t.Fatalf("signed in as %q, want %q", g.Account, address)
	}
	r, err := oauthflow.Refresh(ctx, e.as.Client(), cfg, g.RefreshToken)
	if err != nil || r.RefreshToken == "" {
		t.Fatalf("refresh: %+v, %v", r, err)
	}
	login := func(serverType, token string) error {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		c := cfg
		c.ServerType = serverType
		saslFn := func(context.Context, imapconf.Config) (sasl.Client, error) {
			return xoauth2.NewClient(address, token), nil
		}
		if serverType == imapconf.ServerPOP3S {
			c.Port = e.d.POP3SPort
			p, err := pop3source.Dial(ctx, c, pop3source.Options{SASL: saslFn})
			if err != nil {
				return err
			}
			defer p.Close()
			if n, _, err := p.Stat(ctx); err != nil || n != 1 {
				t.Errorf("stat: got %d, %v, want 1 message", n, err)
			}
			return nil
		}
		m, err := imapsource.Dial(ctx, c, imapsource.Options{SASL: saslFn})
		if err != nil {
			return err
		}
		defer m.Close()
		if mb, err := m.Examine(ctx, "INBOX"); err != nil || mb.Messages != 1 {
			t.Errorf("examine: got %+v, %v, want 1 message", mb, err)
		}
		return nil
	}
	for _, tok := range []string{g.AccessToken, r.AccessToken} {
		for _, serverType := range []string{imapconf.ServerIMAPS, imapconf.ServerPOP3S} {
			if err := login(serverType, tok); err != nil {
				t.Fatalf("%s login with a delegated token: %v\n%s", serverType, err, e.d.Log())
			}
		}
	}
	e.as.RevokeUser(address)
	if err := login(imapconf.ServerIMAPS, r.AccessToken); err == nil {
		t.Fatal("login with a revoked delegated token worked")
	}
}
