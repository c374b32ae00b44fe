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
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testenv/oauthfake"
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

func TestDovecotExperiment(t *testing.T) {
	e := newOAuthEnv(t)
	cfg := e.user(t, "exp", imapconf.ServerIMAPS, imapconf.TLSImplicit)
	ts, err := xoauth2.NewTokenSource(cfg, xoauth2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res := imapsource.Test(ctx, cfg, imapsource.Options{SASL: ts.SASL})
	t.Logf("imap %+v", res)
	pcfg := e.user(t, "pexp", imapconf.ServerPOP3S, imapconf.TLSImplicit)
	pts, _ := xoauth2.NewTokenSource(pcfg, xoauth2.Options{})
	pres := pop3source.Test(ctx, pcfg, pop3source.Options{SASL: pts.SASL})
	t.Logf("pop3 %+v", pres)
	e.as.RevokeAll()
	res = imapsource.Test(ctx, cfg, imapsource.Options{SASL: ts.SASL})
	t.Logf("imap revoked %+v", res)
	pres = pop3source.Test(ctx, pcfg, pop3source.Options{SASL: pts.SASL})
	t.Logf("pop3 revoked %+v", pres)
	_, err = imapsource.Dial(ctx, cfg, imapsource.Options{SASL: ts.SASL})
	t.Logf("dial err %v auth=%v", err, errors.Is(err, source.ErrAuth))
	t.Logf("counts %+v", e.as.Counts())
	_ = strings.Contains
	_ = time.Second
	t.Log(e.d.Log())
}
