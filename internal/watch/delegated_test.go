package watch_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/source/delegated"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testwait"
)

// delegatedScope is what the custom provider (oauthfake) is asked for.
const delegatedScope = "mail openid email offline_access"

// delegatedConfig returns an oauth2-delegated configuration name of
// serverType reading the Dovecot mailbox address, signing in at as with
// client clientID (custom provider). It is built as a password
// configuration (for the defaults) and then switched to oauth2-delegated.
func delegatedConfig(t *testing.T, e *env, as *oauthfake.Server, name, serverType, address, clientID string) imapconf.Config {
	t.Helper()
	port := e.d.IMAPSPort
	if serverType == imapconf.ServerPOP3S {
		port = e.d.POP3SPort
	}
	c, err := imapconf.Build(imapconf.Input{Name: ptr(name), ServerType: ptr(serverType), Host: ptr(e.d.Host), Port: &port,
		Username: ptr(address), Password: ptr("unused"), CACert: ptr(string(e.d.CACertPEM)),
		PollInterval: ptr(imapconf.MinPollInterval)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth, c.Password = imapconf.AuthOAuth2Delegated, ""
	c.Provider, c.AuthURL, c.TokenURL, c.Scope = imapconf.ProviderCustom, as.AuthorizeURL(), as.TokenURL(), delegatedScope
	c.ClientID, c.ClientSecret = clientID, secretOf(name)
	return c
}

// signIn signs the configuration's user in at as (the consent answered as
// a browser would) and stores the grant, as the sign-in callback does,
// then tells the manager.
func signIn(t *testing.T, st *store.Store, as *oauthfake.Server, c imapconf.Config, changed func(context.Context)) {
	t.Helper()
	ctx := context.Background()
	const redirect = "http://127.0.0.1/oauth/callback"
	start, err := oauthflow.Begin(c, redirect, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	back, err := as.Consent(ctx, nil, start.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	g, err := oauthflow.Exchange(ctx, nil, c, redirect, back.Query().Get("code"), start.Verifier)
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	if !strings.EqualFold(g.Account, c.Username) {
		t.Fatalf("signed in as %q, want %q", g.Account, c.Username)
	}
	if err := st.SaveOAuthGrant(ctx, store.OAuthGrant{IMAPID: c.ID, Account: g.Account, RefreshToken: g.RefreshToken,
		AccessToken: g.AccessToken, AccessExpiry: g.Expiry}); err != nil {
		t.Fatal(err)
	}
	if changed != nil {
		changed(ctx)
	}
}

// checkNoTokens fails the test if an access or refresh token of as is in
// logs.
func checkNoTokens(t *testing.T, as *oauthfake.Server, logs string) {
	t.Helper()
	if !strings.Contains(logs, "renewed the access token") {
		t.Errorf("the log does not show the renewals; is it captured?")
	}
	var secrets []string
	for _, tok := range as.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	for _, rt := range as.RefreshTokens("") {
		secrets = append(secrets, rt.Value)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a token (%d bytes) is in the log", len(s))
		}
	}
}

// TestDelegatedDovecot reads an IMAP and a POP3 mailbox of a Dovecot that
// accepts only XOAUTH2 with tokens of the authorization server, as the user
// who signed in (oauth2-delegated): before the sign-in the mailbox is
// auth_failed "nobody signed in yet"; after it, mail is read; access tokens
// living seconds are renewed with the refresh token, which rotates, and
// the rotated one is what the store keeps; revoking the user's grant makes
// the mailbox auth_failed "sign in again" (the grant marked broken) within
// one renewal, and a new sign-in recovers at once. Test connection works
// after the sign-in; no token reaches the log or a status.
func TestDelegatedDovecot(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	type box struct {
		name, serverType, addr, client, waiting string
		c                                       imapconf.Config
	}
	boxes := []*box{
		{name: "deleg_imap", serverType: imapconf.ServerIMAPS, waiting: imapconf.StateIdle},
		{name: "deleg_pop", serverType: imapconf.ServerPOP3S, waiting: imapconf.StatePolling},
	}
	for _, b := range boxes {
		b.addr = e.d.AddUser(t, b.name, "unused-password")
		b.client = "app-" + b.name
		e.as.AddClient(b.client, secretOf(b.name), "")
		// POP3 logs in at every poll (5 s): tokens of 7 s are due from
		// 6.3 s, so about every other poll renews.
		e.as.SetClientExpiresIn(b.client, 7*time.Second)
		b.c = delegatedConfig(t, e.env, e.as, b.name, b.serverType, b.addr, b.client)
		if err := e.st.CreateIMAP(ctx, &b.c); err != nil {
			t.Fatal(err)
		}
	}
	e.mgr.Changed(ctx)

	for _, b := range boxes {
		st := e.waitState(b.name, imapconf.StateAuthFailed, 15*time.Second)
		if st.LastError != "token: "+delegated.MsgNoGrant {
			t.Errorf("%s before the sign-in: got lastError %q", b.name, st.LastError)
		}
		res := fmt.Sprintf("%+v", e.mgr.TestConnection(ctx, b.c))
		if !strings.Contains(res, "Step:token") || !strings.Contains(res, "nobody signed in yet: sign in first") {
			t.Errorf("%s: test connection before the sign-in: got %s", b.name, res)
		}
	}

	for _, b := range boxes {
		signIn(t, e.st, e.as, b.c, e.mgr.Changed)
	}
	for _, b := range boxes {
		e.waitState(b.name, b.waiting, 15*time.Second)
		e.d.Append(t, b.addr, "INBOX", message("one", "x"))
		e.waitMessages(b.name, 1, 15*time.Second)
		var ok bool
		switch res := e.mgr.TestConnection(ctx, b.c).(type) {
		case imapsource.TestResult:
			ok = res.OK
		case pop3source.TestResult:
			ok = res.OK
		}
		if !ok {
			t.Errorf("%s: test connection after the sign-in failed: %+v", b.name, e.mgr.TestConnection(ctx, b.c))
		}
	}

	// The tokens of the sign-in expire; the IMAP session outlives them
	// (the server checks at login). Every connection is dropped: the new
	// logins need renewed tokens, and the POP3 polls renew them as they
	// fall due.
	refreshes := e.as.Counts().Refreshes
	testwait.Until(t, 30*time.Second, func() error {
		if n := e.as.Counts().Refreshes; n < refreshes+3 {
			return fmt.Errorf("got %d refreshes, want at least %d", n, refreshes+3)
		}
		return nil
	})
	e.d.Stop(t)
	e.d.Start(t)
	for _, b := range boxes {
		e.d.Append(t, b.addr, "INBOX", message("two", "x"))
	}
	for _, b := range boxes {
		e.waitMessages(b.name, 2, 30*time.Second)
		e.waitState(b.name, b.waiting, 15*time.Second)
		g, err := e.st.GetOAuthGrant(ctx, b.c.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Renewals may go on meanwhile: the store holds the one live
		// refresh token, or the one just spent for it.
		testwait.Until(t, 10*time.Second, func() error {
			live := e.as.LiveRefreshTokens(b.addr)
			if g, err = e.st.GetOAuthGrant(ctx, b.c.ID); err != nil || len(live) != 1 || g.RefreshToken != live[0] {
				return fmt.Errorf("%s: live refresh tokens %d, stored one live: %v (%v)", b.name, len(live), slices.Contains(live, g.RefreshToken), err)
			}
			return nil
		})
		if g.Broken != "" {
			t.Errorf("%s: grant broken: %q", b.name, g.Broken)
		}
	}
	if c := e.as.Counts(); c.RefreshErrors != 0 || c.Expired != 0 {
		t.Errorf("refresh errors or expired tokens presented: %+v", c)
	}

	// The user's consent is withdrawn: the next renewal is refused and
	// the mailbox says to sign in again.
	for _, b := range boxes {
		e.as.RevokeUser(b.addr)
	}
	e.d.Stop(t) // the IMAP session would outlive the revocation
	e.d.Start(t)
	for _, b := range boxes {
		st := e.waitState(b.name, imapconf.StateAuthFailed, 30*time.Second)
		testwait.Until(t, 20*time.Second, func() error {
			if st = e.waitState(b.name, imapconf.StateAuthFailed, 5*time.Second); !strings.Contains(st.LastError, "sign in again") {
				return fmt.Errorf("%s: lastError %q", b.name, st.LastError)
			}
			return nil
		})
		if st.LastError != "token: "+delegated.MsgBroken {
			t.Errorf("%s: got lastError %q", b.name, st.LastError)
		}
		g, err := e.st.GetOAuthGrant(ctx, b.c.ID)
		if err != nil || g.Broken == "" {
			t.Errorf("%s: got grant broken %q, %v, want it marked", b.name, g.Broken, err)
		}
	}
	errs := e.as.Counts().RefreshErrors
	time.Sleep(3 * time.Second) // on purpose: a broken grant is not tried again (AuthBackoff is 2 s)
	if n := e.as.Counts().RefreshErrors; n != errs {
		t.Errorf("got %d more refused refreshes while the grant is broken, want none", n-errs)
	}

	// A new sign-in: the watcher restarts at once (not after its backoff).
	for _, b := range boxes {
		signIn(t, e.st, e.as, b.c, e.mgr.Changed)
	}
	for _, b := range boxes {
		e.waitState(b.name, b.waiting, 10*time.Second)
		e.d.Append(t, b.addr, "INBOX", message("three", "x"))
		e.waitMessages(b.name, 3, 15*time.Second)
	}
	checkNoTokens(t, e.as, e.logs.String())
	for _, b := range boxes {
		v, err := e.api.GetIMAP(ctx, b.name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range e.as.Tokens() {
			if strings.Contains(v.Status.LastError, tok.Value) {
				t.Errorf("%s: a token is in the status", b.name)
			}
		}
	}
}

// TestDelegatedGraph reads a Microsoft Graph mailbox as the user who signed
// in (oauth2-delegated, provider microsoft with the authority at the
// authorization server): before the sign-in it is auth_failed "nobody
// signed in yet" (with an hour's backoff); the sign-in restarts it at once;
// it reads /me with the delegated token, renewed as it falls due, and test
// connection works.
func TestDelegatedGraph(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	as := oauthfake.New(t)
	as.AddClient(graphfake.ClientID, graphfake.ClientSecret, "")
	as.SetClientExpiresIn(graphfake.ClientID, 6*time.Second)
	e.g.SetTokenValidator(func(value string) (string, bool) {
		for _, tok := range as.Tokens() {
			if tok.Value == value {
				return tok.User, tok.Delegated && !tok.Revoked && time.Now().Before(tok.Expiry)
			}
		}
		return "", false
	})
	const user = "deleg@contoso.com"
	e.g.AddUser(user)
	e.add(user, "before-1")
	c, err := imapconf.Build(imapconf.Input{Name: ptr("gdeleg"), Type: ptr(imapconf.TypeMSGraph), Username: ptr(user),
		TenantID: ptr(graphfake.TenantID), ClientID: ptr(graphfake.ClientID), ClientSecret: ptr(graphfake.ClientSecret),
		GraphURL: ptr(e.g.URL), AuthorityURL: ptr(as.URL), CACert: ptr(e.g.CACert), Backlog: ptr(imapconf.BacklogAll),
		PollInterval: ptr(imapconf.MinPollInterval)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth, c.Provider, c.TenantID = imapconf.AuthOAuth2Delegated, imapconf.ProviderMicrosoft, "common"
	if err := e.st.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	e.manager().Changed(ctx)
	waitGraphState := func(state string) imapconf.Status {
		t.Helper()
		var last imapconf.Status
		testwait.Until(t, 15*time.Second, func() error {
			if v, err := e.api.GetIMAP(ctx, "gdeleg"); err == nil && v.Status != nil {
				if last = *v.Status; last.State == state {
					return nil
				}
			}
			return fmt.Errorf("state %+v, want %s", last, state)
		})
		return last
	}
	if st := waitGraphState(imapconf.StateAuthFailed); st.LastError != "token: "+delegated.MsgNoGrant {
		t.Errorf("before the sign-in: got lastError %q", st.LastError)
	}

	signIn(t, e.st, as, c, e.manager().Changed)
	waitGraphState(imapconf.StatePolling)
	e.want("gdeleg", "before-1")
	start := time.Now()
	e.add(user, "after-1")
	time.Sleep(7 * time.Second) // on purpose: the sign-in's token expires
	e.waitPoll("gdeleg", start.Add(7*time.Second))
	e.want("gdeleg", "before-1", "after-1")
	if n := as.Counts().Refreshes; n < 1 {
		t.Errorf("got %d refreshes, want the token renewed", n)
	}
	if res, ok := e.manager().TestConnection(ctx, c).(graphsource.TestResult); !ok || !res.OK || res.Messages != 2 {
		t.Errorf("test connection: got %+v", e.manager().TestConnection(ctx, c))
	}
	me, unauthorized := 0, 0
	for _, r := range e.g.Requests() {
		if strings.HasPrefix(r.Path, "/v1.0/me/") {
			me++
		}
		if r.Status == 401 {
			unauthorized++
		}
	}
	if me == 0 || unauthorized != 0 {
		t.Errorf("got %d requests to /v1.0/me, %d answered 401; want /me read with valid tokens", me, unauthorized)
	}
	if c := as.Counts(); c.RefreshErrors != 0 {
		t.Errorf("refresh errors: %+v", c)
	}
}
