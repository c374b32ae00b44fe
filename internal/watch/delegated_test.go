package watch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/source/delegated"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// delegatedScope is what the custom provider (oauthfake) is asked for.
const delegatedScope = "mail openid email offline_access"

// delegatedConfig returns an oauth2-delegated configuration name of
// serverType reading the Dovecot mailbox address, signing in at as with
// client clientID (custom provider). It is built as a password
// configuration (for the defaults) and then switched to oauth2-delegated.
func delegatedConfig(t *testing.T, d *testenv.Dovecot, as *oauthfake.Server, name, serverType, address, clientID string) imapconf.Config {
	t.Helper()
	port := d.IMAPSPort
	if serverType == imapconf.ServerPOP3S {
		port = d.POP3SPort
	}
	c, err := imapconf.Build(imapconf.Input{Name: ptr(name), ServerType: ptr(serverType), Host: ptr(d.Host), Port: &port,
		Username: ptr(address), Password: ptr("unused"), CACert: ptr(string(d.CACertPEM)),
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
		b.c = delegatedConfig(t, e.d, e.as, b.name, b.serverType, b.addr, b.client)
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

// waitCount waits until configuration id has n messages recorded in st.
func waitCount(t *testing.T, st *store.Store, c imapconf.Config, n int64, within time.Duration) {
	t.Helper()
	testwait.Until(t, within, func() error {
		k, err := st.CountMessages(context.Background(), c.ID)
		if err != nil {
			return err
		}
		if k != n {
			return fmt.Errorf("%s: %d messages recorded, want %d", c.Name, k, n)
		}
		return nil
	})
}

// waitWatching waits until mgr's watcher of c waits for mail (idle or
// polling).
func waitWatching(t *testing.T, mgr *watch.Manager, c imapconf.Config, within time.Duration) {
	t.Helper()
	testwait.Until(t, within, func() error {
		if s := mgr.Status(c); s.State != imapconf.StateIdle && s.State != imapconf.StatePolling {
			return fmt.Errorf("%s: status %+v, want it waiting for mail", c.Name, s)
		}
		return nil
	})
}

// delegatedBox creates a Dovecot mailbox, a client of as whose tokens live
// life, and an oauth2-delegated configuration of serverType reading it
// (created in st).
func delegatedBox(t *testing.T, st *store.Store, d *testenv.Dovecot, as *oauthfake.Server, name, serverType string, life time.Duration) (imapconf.Config, string) {
	t.Helper()
	addr := d.AddUser(t, name, "unused-password")
	as.AddClient("app-"+name, secretOf(name), "")
	as.SetClientExpiresIn("app-"+name, life)
	c := delegatedConfig(t, d, as, name, serverType, addr, "app-"+name)
	if err := st.CreateIMAP(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	return c, addr
}

// testLogger logs to the test's stderr when verbose, and to logs.
func testLogger(logs io.Writer) *slog.Logger {
	out, level := logs, slog.LevelDebug
	if testing.Verbose() {
		out = io.MultiWriter(os.Stderr, logs)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
}

// TestDelegatedRestart closes the store and the manager and opens them
// again on the same data directory: the refresh tokens rotated before are
// what the store hands the new manager, which renews with them (no
// invalid_grant) and keeps reading mail over IMAP and POP3.
func TestDelegatedRestart(t *testing.T) {
	ctx := context.Background()
	as := oauthfake.New(t)
	d := testenv.StartDovecot(t, testenv.DovecotOAuth2(as.IntrospectionURL()))
	dir := t.TempDir()
	logs := &testenv.Buffer{}
	log := testLogger(logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	open := func() *store.Store {
		st, err := store.Open(ctx, store.Options{DataDir: dir, Box: storetest.Box(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	run := func(st *store.Store) (*watch.Manager, func()) {
		mgr := watch.New(watch.Deps{Store: st, Ingester: ingest.New(ingest.Deps{Store: st, Logger: log}), Logger: log,
			Options: watch.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ResyncEvery: 200 * time.Millisecond,
				AuthBackoff: 2 * time.Second}})
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { mgr.Run(rctx) })
		return mgr, func() { cancel(); wg.Wait() }
	}

	st := open()
	mgr, stop := run(st)
	// Tokens of 3 s: every POP3 poll (5 s) renews, rotating the refresh
	// token.
	imapBox, imapAddr := delegatedBox(t, st, d, as, "restart_imap", imapconf.ServerIMAPS, 3*time.Second)
	popBox, popAddr := delegatedBox(t, st, d, as, "restart_pop", imapconf.ServerPOP3S, 3*time.Second)
	for _, c := range []imapconf.Config{imapBox, popBox} {
		signIn(t, st, as, c, mgr.Changed)
	}
	waitWatching(t, mgr, imapBox, 15*time.Second)
	waitWatching(t, mgr, popBox, 15*time.Second)
	d.Append(t, imapAddr, "INBOX", message("before", "x"))
	d.Append(t, popAddr, "INBOX", message("before", "x"))
	waitCount(t, st, imapBox, 1, 20*time.Second)
	waitCount(t, st, popBox, 1, 20*time.Second)
	testwait.Until(t, 20*time.Second, func() error {
		if n := len(as.RefreshTokens(popAddr)); n < 3 {
			return fmt.Errorf("%d refresh tokens issued for %s, want rotations", n, popAddr)
		}
		return nil
	})
	stop()
	g, err := st.GetOAuthGrant(ctx, imapBox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// On purpose: the stored access token of the IMAP mailbox expires,
	// so that the new process must renew it.
	time.Sleep(time.Until(g.AccessExpiry) + 100*time.Millisecond)
	imapRotated := len(as.RefreshTokens(imapAddr))
	popRotated := len(as.RefreshTokens(popAddr))

	st = open()
	defer st.Close()
	mgr, stop = run(st)
	defer stop()
	d.Append(t, imapAddr, "INBOX", message("after", "x"))
	d.Append(t, popAddr, "INBOX", message("after", "x"))
	waitCount(t, st, imapBox, 2, 20*time.Second)
	waitCount(t, st, popBox, 2, 20*time.Second)
	testwait.Until(t, 20*time.Second, func() error {
		if n, m := len(as.RefreshTokens(imapAddr)), len(as.RefreshTokens(popAddr)); n <= imapRotated || m < popRotated+2 {
			return fmt.Errorf("refresh tokens issued: imap %d (was %d), pop %d (was %d): want renewals after the restart", n, imapRotated, m, popRotated)
		}
		return nil
	})
	for _, c := range []imapconf.Config{imapBox, popBox} {
		if s := mgr.Status(c); s.State == imapconf.StateAuthFailed || s.Reconnects != 0 {
			t.Errorf("%s after the restart: %+v", c.Name, s)
		}
		if g, err := st.GetOAuthGrant(ctx, c.ID); err != nil || g.Broken != "" {
			t.Errorf("%s: grant broken %q, %v", c.Name, g.Broken, err)
		}
	}
	if c := as.Counts(); c.RefreshErrors != 0 || c.Expired != 0 {
		t.Errorf("refresh errors or expired tokens presented: %+v", c)
	}
	checkNoTokens(t, as, logs.String())
}

// TestDelegatedReplicas runs two leasing replicas on one PostgreSQL
// database sharing one grant: the one not holding the mailbox tests the
// connection again and again while the holder polls, both renewing from the
// same grant; the provider serves one refresh per renewal period (the other
// replica reads the renewed token) and never an invalid_grant. The sign-in,
// stored through one replica, restarts the watcher on the holder; when the
// holder stops, the other takes the mailbox over with the rotated refresh
// token and keeps reading.
func TestDelegatedReplicas(t *testing.T) {
	ctx := context.Background()
	url := testenv.PostgresURL(t)
	as := oauthfake.New(t)
	d := testenv.StartDovecot(t, testenv.DovecotOAuth2(as.IntrospectionURL()))
	reps := []*replica{startReplica(t, url, "a"), startReplica(t, url, "b")}
	const life = 3 * time.Second
	c, addr := delegatedBox(t, reps[0].st, d, as, "replicas_pop", imapconf.ServerPOP3S, life)
	holder := func() int {
		t.Helper()
		var owner string
		testwait.Until(t, 15*time.Second, func() error {
			leases, err := reps[0].st.Leases(ctx)
			if err != nil {
				return err
			}
			for _, l := range leases {
				if l.IMAPID == c.ID && l.Owner != "" {
					owner = l.Owner
					return nil
				}
			}
			return fmt.Errorf("nobody holds %s", c.Name)
		})
		for i, r := range reps {
			if r.id == owner {
				return i
			}
		}
		t.Fatalf("held by %q", owner)
		return -1
	}
	h := holder()
	other := reps[1-h]
	testwait.Until(t, 15*time.Second, func() error {
		if s := reps[h].mgr.Status(c); s.State != imapconf.StateAuthFailed {
			return fmt.Errorf("state %+v, want auth_failed before the sign-in", s)
		}
		return nil
	})
	// Signed in through the replica not holding the mailbox: the holder
	// restarts its watcher (the default backoff after auth_failed is 5
	// minutes).
	signIn(t, other.st, as, c, other.mgr.Changed)
	waitWatching(t, reps[h].mgr, c, 15*time.Second)
	d.Append(t, addr, "INBOX", message("one", "x"))
	waitCount(t, other.st, c, 1, 20*time.Second)

	// Test connections on both replicas at once, each with a token
	// source of its own, while the holder polls; the provider answers
	// slowly, so that several find the token due together.
	as.SetTokenDelay(300 * time.Millisecond)
	before := as.Counts().Refreshes
	began := time.Now()
	var wg sync.WaitGroup
	for _, r := range []*replica{reps[0], reps[1], reps[0], reps[1]} {
		wg.Go(func() {
			for time.Since(began) < 12*time.Second {
				if res, ok := r.mgr.TestConnection(ctx, c).(pop3source.TestResult); !ok || !res.OK {
					t.Errorf("test connection on replica %s: %+v", r.id, res)
					return
				}
				time.Sleep(200 * time.Millisecond) // on purpose: spread over the renewal periods
			}
		})
	}
	wg.Wait()
	n := as.Counts().Refreshes - before
	t.Logf("%d refreshes in %v", n, time.Since(began).Round(time.Millisecond))
	// A token of 3 s is renewed 0.3 s before it expires: a renewal
	// period is 2.7 s (plus the time to notice).
	if most := int(time.Since(began)/(life-life/10)) + 1; n > most || n < 2 {
		t.Errorf("%d refreshes in %v, want one per renewal period (at most %d)", n, time.Since(began).Round(time.Millisecond), most)
	}

	reps[h].stop()
	d.Append(t, addr, "INBOX", message("two", "x"))
	waitCount(t, other.st, c, 2, 30*time.Second)
	testwait.Until(t, 15*time.Second, func() error {
		if s := other.mgr.Status(c); s.State != imapconf.StatePolling || s.Replica != other.id {
			return fmt.Errorf("status on %s: %+v, want it polling there", other.id, s)
		}
		return nil
	})
	if c := as.Counts(); c.RefreshErrors != 0 || c.Expired != 0 {
		t.Errorf("refresh errors or expired tokens presented: %+v", c)
	}
	if g, err := other.st.GetOAuthGrant(ctx, c.ID); err != nil || g.Broken != "" {
		t.Errorf("grant broken %q, %v", g.Broken, err)
	}
}
