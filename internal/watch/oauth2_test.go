package watch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// oauthEnv is an env whose Dovecot accepts only XOAUTH2 (and OAUTHBEARER)
// with tokens of its authorization server, and whose log is kept.
type oauthEnv struct {
	*env
	as   *oauthfake.Server
	logs *testenv.Buffer
}

func newOAuthEnv(t *testing.T) *oauthEnv {
	t.Helper()
	as := oauthfake.New(t)
	logs := &testenv.Buffer{}
	e := newEnvFull(t, store.SQLite, watch.Options{AuthBackoff: 2 * time.Second}, nil, logs,
		testenv.DovecotOAuth2(as.IntrospectionURL()))
	return &oauthEnv{env: e, as: as, logs: logs}
}

// secretOf is the client secret of the client of name.
func secretOf(name string) string { return "S3cret~" + name + "~Value.0123456789" }

// oauthMailbox creates a mailbox, a client of the authorization server whose
// tokens open it and live expiresIn, and an oauth2 configuration name of
// serverType reading it with the client's secret (or secret, when not
// empty).
func (e *oauthEnv) oauthMailbox(name, serverType string, expiresIn time.Duration, secret string) (address, clientID string) {
	e.t.Helper()
	address = e.d.AddUser(e.t, strings.ToLower(name), "unused-password")
	clientID = "app-" + name
	e.as.AddClient(clientID, secretOf(name), address)
	e.as.SetClientExpiresIn(clientID, expiresIn)
	if secret == "" {
		secret = secretOf(name)
	}
	port := e.d.IMAPSPort
	if serverType == imapconf.ServerPOP3S {
		port = e.d.POP3SPort
	}
	in := imapconf.Input{Name: ptr(name), ServerType: ptr(serverType), Host: ptr(e.d.Host), Port: &port,
		Username: ptr(address), CACert: ptr(string(e.d.CACertPEM)), PollInterval: ptr(imapconf.MinPollInterval),
		Auth: ptr(imapconf.AuthOAuth2), TokenURL: ptr(e.as.TokenURL()), ClientID: ptr(clientID), ClientSecret: ptr(secret)}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
	return address, clientID
}

// waitTokens waits until client has been issued n tokens and returns them.
func (e *oauthEnv) waitTokens(clientID string, n int, within time.Duration) []oauthfake.Token {
	e.t.Helper()
	var toks []oauthfake.Token
	testwait.Until(e.t, within, func() error {
		if toks = e.as.ClientTokens(clientID); len(toks) < n {
			return fmt.Errorf("%s: got %d tokens, want %d", clientID, len(toks), n)
		}
		return nil
	})
	return toks
}

// checkSecrets fails the test if a token issued or a client secret appears
// in the log, or in a status.
func (e *oauthEnv) checkSecrets(names ...string) {
	e.t.Helper()
	logs := e.logs.String()
	if !strings.Contains(logs, "got an access token") {
		e.t.Errorf("the log does not show the token fetches; is it captured?\n%s", logs)
	}
	secrets := []string{}
	for _, tok := range e.as.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	for _, name := range names {
		secrets = append(secrets, secretOf(name))
		v, err := e.api.GetIMAP(context.Background(), name)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(v.Status.LastError, s) {
				e.t.Errorf("%s: a secret is in the status: %q", name, v.Status.LastError)
			}
		}
		if !strings.Contains(logs, "imap="+name) {
			e.t.Errorf("no log line names %s", name)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			e.t.Errorf("a token or secret (%d bytes) is in the log", len(s))
		}
	}
}

// TestOAuth2IMAP reads IMAP mailboxes that accept only XOAUTH2: a token
// that expires during IDLE does not matter (servers check it at login); a
// reconnect logs in with a new token, never the expired one; a revoked token
// is auth_failed, and the next login with a new token recovers; a wrong
// client secret is an auth failure of step token, in the status and in test
// connection. Neither tokens nor secrets reach the log.
func TestOAuth2IMAP(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	refreshAddr, refreshClient := e.oauthMailbox("imap_refresh", imapconf.ServerIMAPS, 3*time.Second, "")
	revokeAddr, revokeClient := e.oauthMailbox("imap_revoke", imapconf.ServerIMAPS, time.Hour, "")
	e.oauthMailbox("imap_badsecret", imapconf.ServerIMAPS, time.Hour, "Wrong~Secret~4711")

	st := e.waitState("imap_badsecret", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.HasPrefix(st.LastError, "token: ") || !strings.Contains(st.LastError, "invalid_client") {
		t.Errorf("imap_badsecret: got lastError %q, want the token step with invalid_client", st.LastError)
	}
	var res imapsource.TestResult
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/imap_badsecret/test", nil, &res); err != nil || res.OK || res.Step != "token" ||
		!strings.Contains(res.Error, "invalid_client") || strings.Contains(res.Error, "Wrong~Secret") {
		t.Errorf("testing imap_badsecret: got %+v, %v", res, err)
	}
	res = imapsource.TestResult{}
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/imap_revoke/test", nil, &res); err != nil || !res.OK {
		t.Errorf("testing imap_revoke: got %+v, %v", res, err)
	}

	e.waitState("imap_refresh", imapconf.StateIdle, 15*time.Second)
	e.waitState("imap_revoke", imapconf.StateIdle, 15*time.Second)
	e.d.Append(t, refreshAddr, "INBOX", message("refresh one", "x"))
	e.d.Append(t, revokeAddr, "INBOX", message("revoke one", "x"))
	e.waitMessages("imap_refresh", 1, 10*time.Second)
	e.waitMessages("imap_revoke", 1, 10*time.Second)

	// The first token of imap_refresh expires while it idles: the session
	// goes on and reads new mail without a new token.
	first := e.as.ClientTokens(refreshClient)[0]
	// On purpose: the token must have expired before the next mail.
	time.Sleep(time.Until(first.Expiry) + 300*time.Millisecond)
	e.d.Append(t, refreshAddr, "INBOX", message("refresh two", "x"))
	e.waitMessages("imap_refresh", 2, 10*time.Second)
	if n := len(e.as.ClientTokens(refreshClient)); n != 1 {
		t.Errorf("imap_refresh: got %d tokens during one session, want 1", n)
	}

	// Dropping every connection: imap_refresh logs in again with a new
	// token; imap_revoke, whose token was revoked, fails as auth_failed,
	// then gets a new token and recovers.
	e.as.RevokeClient(revokeClient)
	e.d.Stop(t)
	e.d.Start(t)
	e.waitTokens(refreshClient, 2, 15*time.Second)
	e.waitState("imap_refresh", imapconf.StateIdle, 15*time.Second)
	e.d.Append(t, refreshAddr, "INBOX", message("refresh three", "x"))
	e.waitMessages("imap_refresh", 3, 10*time.Second)

	st = e.waitState("imap_revoke", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.HasPrefix(st.LastError, "login: ") || !strings.Contains(st.LastError, "authentication failed") {
		t.Errorf("imap_revoke: got lastError %q, want an authentication failure at login", st.LastError)
	}
	e.waitTokens(revokeClient, 2, 15*time.Second)
	e.waitState("imap_revoke", imapconf.StateIdle, 15*time.Second)
	e.d.Append(t, revokeAddr, "INBOX", message("revoke two", "x"))
	e.waitMessages("imap_revoke", 2, 10*time.Second)

	if c := e.as.Counts(); c.Expired != 0 {
		t.Errorf("an expired token was presented at a login: %+v", c)
	}
	e.checkSecrets("imap_refresh", "imap_revoke", "imap_badsecret")
}

// TestOAuth2POP3 reads POP3 mailboxes that accept only XOAUTH2, logging in
// at every poll: a short-lived token is renewed when due, before it
// expires, and the mailbox keeps reading new mail; a revoked token is
// auth_failed and a new token recovers; a wrong client secret is step token.
func TestOAuth2POP3(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	// Polls every 5 s (plus the poll's own time): tokens of 11 s are due
	// from 9.9 s (a tenth of their lifetime before expiry), so the third
	// poll, at 10 s and a little, renews the token before it expires.
	refreshAddr, refreshClient := e.oauthMailbox("pop_refresh", imapconf.ServerPOP3S, 11*time.Second, "")
	revokeAddr, revokeClient := e.oauthMailbox("pop_revoke", imapconf.ServerPOP3S, time.Hour, "")
	e.oauthMailbox("pop_badsecret", imapconf.ServerPOP3S, time.Hour, "Wrong~Secret~4711")

	st := e.waitState("pop_badsecret", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.HasPrefix(st.LastError, "token: ") || !strings.Contains(st.LastError, "invalid_client") {
		t.Errorf("pop_badsecret: got lastError %q, want the token step with invalid_client", st.LastError)
	}
	var res pop3source.TestResult
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/pop_badsecret/test", nil, &res); err != nil || res.OK || res.Step != "token" ||
		!strings.Contains(res.Error, "invalid_client") {
		t.Errorf("testing pop_badsecret: got %+v, %v", res, err)
	}

	e.waitState("pop_refresh", imapconf.StatePolling, 15*time.Second)
	e.waitState("pop_revoke", imapconf.StatePolling, 15*time.Second)
	e.d.Append(t, refreshAddr, "INBOX", message("refresh one", "x"))
	e.d.Append(t, revokeAddr, "INBOX", message("revoke one", "x"))
	e.waitMessages("pop_refresh", 1, 10*time.Second)
	e.waitMessages("pop_revoke", 1, 10*time.Second)

	e.as.RevokeClient(revokeClient)
	st = e.waitState("pop_revoke", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.HasPrefix(st.LastError, "login: ") || !strings.Contains(st.LastError, "authentication failed") {
		t.Errorf("pop_revoke: got lastError %q, want an authentication failure at login", st.LastError)
	}
	e.waitTokens(revokeClient, 2, 15*time.Second)
	e.d.Append(t, revokeAddr, "INBOX", message("revoke two", "x"))
	e.waitMessages("pop_revoke", 2, 15*time.Second)

	toks := e.waitTokens(refreshClient, 2, 20*time.Second)
	late := toks[1].Issued.Sub(toks[0].Expiry)
	switch {
	case late >= 0 && late < 5*time.Second && e.as.Counts().Expired == 0:
		// The token is renewed at the first poll after it is due; the
		// window for that poll is about a second wide (a tenth of 11 s,
		// less the expiry's rounding). On a machine so busy that the
		// polls drifted past it (the full race suite), the renewal came
		// at the next poll, still before any use of the expired token.
		t.Logf("pop_refresh: the polls ran late; the second token came %v after the first expired, and no expired token was presented", late)
	case late >= 0:
		t.Errorf("pop_refresh: the second token came %v after the first expired, want it before (expired tokens presented: %d)",
			late, e.as.Counts().Expired)
	default:
		t.Logf("pop_refresh: the second token came %v before the first expired", toks[0].Expiry.Sub(toks[1].Issued))
	}
	e.d.Append(t, refreshAddr, "INBOX", message("refresh two", "x"))
	e.waitMessages("pop_refresh", 2, 15*time.Second)
	st = e.waitState("pop_refresh", imapconf.StatePolling, 5*time.Second)
	if st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("pop_refresh: got status %+v, want no failure", st)
	}
	if c := e.as.Counts(); c.Expired != 0 {
		t.Errorf("an expired token was presented at a login: %+v", c)
	}
	e.checkSecrets("pop_refresh", "pop_revoke", "pop_badsecret")
}
