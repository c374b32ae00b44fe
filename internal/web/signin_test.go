package web

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

const signInClient = "mailtrigger-test-client"

// delegatedInput is an oauth2-delegated configuration signing in at fake
// (provider custom) as owner.
func delegatedInput(name, owner string, fake *oauthfake.Server) imapconf.Input {
	return imapconf.Input{Name: p(name), Host: p("imap.example.com"), Port: p(993), Username: p(owner),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderCustom), ClientID: p(signInClient),
		AuthURL: p(fake.AuthorizeURL()), TokenURL: p(fake.TokenURL()), Scope: p("openid email offline_access")}
}

var continueRE = regexp.MustCompile(`id="continue-signin" href="([^"]+)"`)

// startSignIn presses the Sign in (Reconnect) button of configuration name
// as c and returns the provider URL of the page that goes on to it.
func (h *harness) startSignIn(c *http.Client, name string) string {
	h.t.Helper()
	r := h.post(c, "/imap/"+name+"/signin", url.Values{})
	m := continueRE.FindStringSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil {
		h.t.Fatalf("sign in: got %d %s, want the page that goes on to the provider", r.StatusCode, r.Body)
	}
	return html.UnescapeString(m[1])
}

// callback follows the provider's redirect back to mailtrigger as c.
func (h *harness) callback(c *http.Client, back *url.URL) response {
	h.t.Helper()
	if !strings.HasPrefix(back.String(), h.url+"/oauth/callback?") {
		h.t.Fatalf("the provider sent the browser to %s, want %s/oauth/callback", back, h.url)
	}
	return h.get(c, strings.TrimPrefix(back.String(), h.url))
}

// TestSignInCallback: the sign-in through the UI's routes against the fake
// provider, and every bad answer to the callback: each a clear page, and
// nothing stored; no code, token or verifier in any page or log line.
func TestSignInCallback(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient(signInClient)
	owner := "owner@example.com"
	c := h.client()
	h.login(c)
	conf, err := h.ui.changes.CreateIMAP(ctx, "", delegatedInput("owner_box", owner, fake), nil)
	if err != nil {
		t.Fatal(err)
	}
	var pages []string
	noGrant := func(what string) {
		t.Helper()
		if _, err := st.GetOAuthGrant(ctx, conf.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: got a grant stored (%v), want none", what, err)
		}
	}
	failed := func(what string, r response, status int, want string) {
		t.Helper()
		pages = append(pages, r.Body)
		if r.StatusCode != status || !strings.Contains(html.UnescapeString(r.Body), want) || !strings.Contains(r.Body, "Nothing was stored") {
			t.Errorf("%s: got %d %s, want %d with %q", what, r.StatusCode, r.Body, status, want)
		}
		noGrant(what)
	}

	// The form shows the redirect URI to register.
	r := h.get(c, "/imap/owner_box")
	if !strings.Contains(r.Body, `value="`+h.url+`/oauth/callback"`) || !strings.Contains(r.Body, "Not signed in yet.") {
		t.Errorf("the edit panel shows no redirect URI or sign-in state: %s", r.Body)
	}

	t.Run("unknown state", func(t *testing.T) {
		failed("unknown", h.get(c, "/oauth/callback?state=bogus&code=abc"), http.StatusBadRequest, "unknown, already used or expired")
		failed("no state", h.get(c, "/oauth/callback?code=abc"), http.StatusBadRequest, "has no state")
	})
	t.Run("expired state", func(t *testing.T) {
		id, err := st.UserID(ctx, adminName)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateOAuthState(ctx, store.OAuthState{State: "expired-state-value", IMAPID: conf.ID, UserID: id,
			Verifier: "v", RedirectURI: h.url + "/oauth/callback", ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		failed("expired", h.get(c, "/oauth/callback?state=expired-state-value&code=abc"), http.StatusBadRequest, "unknown, already used or expired")
	})
	t.Run("access denied", func(t *testing.T) {
		back, err := fake.Consent(ctx, nil, h.startSignIn(c, "owner_box"), false)
		if err != nil {
			t.Fatal(err)
		}
		failed("denied", h.callback(c, back), http.StatusBadRequest, "refused at the provider (access_denied)")
	})
	t.Run("another account", func(t *testing.T) {
		fake.SetSignInUser("intruder@example.net")
		defer fake.SetSignInUser("")
		back, err := fake.Consent(ctx, nil, h.startSignIn(c, "owner_box"), true)
		if err != nil {
			t.Fatal(err)
		}
		failed("mismatch", h.callback(c, back), http.StatusBadRequest,
			"signed in as intruder@example.net but the configuration's username is owner@example.com: sign in with owner@example.com or change the username")
	})
	t.Run("another user", func(t *testing.T) {
		hash, err := auth.HashPassword("bobs-long-password")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.SetUserPassword(ctx, "bob", hash); err != nil {
			t.Fatal(err)
		}
		bob := h.client()
		if r := h.post(bob, "/login", url.Values{"username": {"bob"}, "password": {"bobs-long-password"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("bob's login: got %d", r.StatusCode)
		}
		back, err := fake.Consent(ctx, nil, h.startSignIn(c, "owner_box"), true)
		if err != nil {
			t.Fatal(err)
		}
		failed("another user", h.callback(bob, back), http.StatusBadRequest, "started by another user")
	})

	var used *url.URL
	t.Run("signed in after a login", func(t *testing.T) {
		back, err := fake.Consent(ctx, nil, h.startSignIn(c, "owner_box"), true)
		if err != nil {
			t.Fatal(err)
		}
		used = back
		changedBefore, _ := h.rt.Counts()
		// A browser without the session: to the login page, then back.
		fresh := h.client()
		r := h.callback(fresh, back)
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
			t.Fatalf("not logged in: got %d to %q, want the login page", r.StatusCode, loc)
		}
		next, _ := url.QueryUnescape(strings.TrimPrefix(loc, "/login?next="))
		r = h.post(fresh, "/login", url.Values{"username": {adminName}, "password": {adminPassword}, "next": {next}})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != next {
			t.Fatalf("login: got %d to %q, want back to %s", r.StatusCode, r.Header.Get("Location"), next)
		}
		r = h.get(fresh, next)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/imap#imap-owner_box" {
			t.Fatalf("callback: got %d to %q: %s", r.StatusCode, r.Header.Get("Location"), r.Body)
		}
		g, err := st.GetOAuthGrant(ctx, conf.ID)
		if err != nil || g.Account != owner || g.RefreshToken == "" || g.Broken != "" {
			t.Fatalf("got grant %v, %v; want one for %s", g.Account, err, owner)
		}
		if changed, _ := h.rt.Counts(); changed == changedBefore {
			t.Error("the watchers were not told of the sign-in")
		}
		r = h.get(fresh, "/imap")
		pages = append(pages, r.Body)
		if !strings.Contains(r.Body, "Signed in as owner@example.com: owner_box reads this mailbox now.") ||
			!strings.Contains(r.Body, `id="signin-owner_box">Signed in as owner@example.com<`) {
			t.Errorf("the IMAP page says no sign-in: %s", r.Body)
		}
		if strings.Contains(r.Body, `id="reconnect-owner_box"`) {
			t.Error("a working sign-in shows a Reconnect button")
		}
	})
	t.Run("replayed", func(t *testing.T) {
		before, _ := st.GetOAuthGrant(ctx, conf.ID)
		r := h.callback(c, used)
		pages = append(pages, r.Body)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "unknown, already used or expired") {
			t.Errorf("replayed state: got %d %s", r.StatusCode, r.Body)
		}
		// The used code with a new state: the provider refuses it.
		fresh, _ := url.Parse(h.startSignIn(c, "owner_box"))
		q := used.Query()
		q.Set("state", fresh.Query().Get("state"))
		replay := *used
		replay.RawQuery = q.Encode()
		r = h.callback(c, &replay)
		pages = append(pages, r.Body)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "invalid_grant") {
			t.Errorf("replayed code: got %d %s", r.StatusCode, r.Body)
		}
		if after, _ := st.GetOAuthGrant(ctx, conf.ID); after.RefreshToken != before.RefreshToken || after.SignedInAt != before.SignedInAt {
			t.Error("a refused callback changed the stored grant")
		}
	})
	t.Run("duplicate copies no sign-in", func(t *testing.T) {
		r := h.get(c, "/imap/owner_box/duplicate")
		if !strings.Contains(r.Body, "except the sign-in (sign in again on the copy)") || strings.Contains(r.Body, `name="password"`) {
			t.Errorf("the duplicate dialog: %s", r.Body)
		}
		if r := h.post(c, "/imap/owner_box/duplicate", url.Values{}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("duplicate: got %d %s", r.StatusCode, r.Body)
		}
		cp, err := st.GetIMAP(ctx, "owner_box_copied")
		if err != nil || cp.Provider != imapconf.ProviderCustom || cp.AuthURL != fake.AuthorizeURL() {
			t.Fatalf("the copy: got %+v, %v", cp, err)
		}
		if _, err := st.GetOAuthGrant(ctx, cp.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the copy has a grant (%v), want none", err)
		}
		if r := h.get(c, "/imap"); !strings.Contains(r.Body, `id="reconnect-owner_box_copied">Sign in<`) {
			t.Error("the copy's card offers no Sign in")
		}
	})
	t.Run("broken shows Reconnect", func(t *testing.T) {
		if err := st.MarkOAuthGrantBroken(ctx, conf.ID, "sign-in expired or revoked (invalid_grant): sign in again"); err != nil {
			t.Fatal(err)
		}
		r := h.get(c, "/imap")
		if !strings.Contains(r.Body, `id="reconnect-owner_box">Reconnect<`) || !strings.Contains(r.Body, "Sign-in expired") {
			t.Errorf("a broken sign-in shows no Reconnect: %s", r.Body)
		}
		back, err := fake.Consent(ctx, nil, h.startSignIn(c, "owner_box"), true)
		if err != nil {
			t.Fatal(err)
		}
		if r := h.callback(c, back); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("reconnect: got %d %s", r.StatusCode, r.Body)
		}
		if g, err := st.GetOAuthGrant(ctx, conf.ID); err != nil || g.Broken != "" {
			t.Errorf("after Reconnect: got broken %q, %v", g.Broken, err)
		}
	})

	// No code, token or verifier anywhere.
	var secrets []string
	for _, tok := range fake.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	for _, rt := range fake.RefreshTokens("") {
		secrets = append(secrets, rt.Value)
	}
	if used != nil {
		secrets = append(secrets, used.Query().Get("code"))
	}
	if len(secrets) < 3 {
		t.Fatalf("got %d tokens and codes to look for, want some", len(secrets))
	}
	pages = append(pages, h.get(c, "/imap").Body, h.get(c, "/imap/owner_box").Body, h.logs.String())
	for _, s := range secrets {
		for _, pg := range pages {
			if s != "" && strings.Contains(pg, s) {
				t.Errorf("a token or code is in a page or the log: …%s…", s[:min(6, len(s))])
			}
		}
	}
}

// seedSignIn stores an oauth2-delegated configuration owner_gmail signed in
// (its grant's tokens known) with a sign-in under way (its verifier known),
// and returns those secrets.
func seedSignIn(t *testing.T, st *store.Store) []string {
	t.Helper()
	ctx := context.Background()
	secrets := []string{"Seed-Delegated-Client-Secret-41aa", "Seed-Refresh-Token-9c0d", "Seed-Access-Token-77e2", "Seed-PKCE-Verifier-3f6b"}
	c, err := imapconf.Build(imapconf.Input{Name: p("owner_gmail"), Host: p("imap.gmail.com"), Port: p(993), Username: p("owner@example.com"),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderGoogle), ClientID: p("1234-example.apps.googleusercontent.com"),
		ClientSecret: p(secrets[0])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveOAuthGrant(ctx, store.OAuthGrant{IMAPID: c.ID, Account: "owner@example.com", RefreshToken: secrets[1],
		AccessToken: secrets[2], AccessExpiry: time.Now().Add(time.Hour), SignedInAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateOAuthState(ctx, store.OAuthState{State: "state-of-the-seed-in-progress", IMAPID: c.ID, UserID: 1, Verifier: secrets[3],
		RedirectURI: "https://mailtrigger.example.com/oauth/callback", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return secrets
}
