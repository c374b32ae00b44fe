package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/server"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestSignInStartRefused: the sign-in routes answer 404 for an unknown
// configuration and 400 naming auth for one that does not sign in, and
// change nothing.
func TestSignInStartRefused(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	ctx := context.Background()
	if _, err := h.c.CreateIMAP(ctx, genericInput("password_box")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.CreateIMAP(ctx, graphInput("graph_box")); err != nil {
		t.Fatal(err)
	}
	before := h.snapshot()
	for _, tt := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"POST", "/api/v1/imap/nobody/oauth/start", http.StatusNotFound, `"not_found"`},
		{"DELETE", "/api/v1/imap/nobody/oauth", http.StatusNotFound, `"not_found"`},
		{"POST", "/api/v1/imap/password_box/oauth/start", http.StatusBadRequest, `"auth":"must be oauth2-delegated to sign in (it is password)"`},
		{"POST", "/api/v1/imap/graph_box/oauth/start", http.StatusBadRequest, `"auth":"must be oauth2-delegated to sign in (it is app-only client credentials)"`},
		{"DELETE", "/api/v1/imap/password_box/oauth", http.StatusBadRequest, `"auth"`},
		{"GET", "/api/v1/imap/password_box/oauth/start", http.StatusMethodNotAllowed, `"method_not_allowed"`},
	} {
		status, body := h.raw(tt.method, tt.path, "", nil)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s: got %d %s, want %d with %s", tt.method, tt.path, status, body, tt.status, tt.want)
		}
	}
	if status, _ := h.raw("POST", "/api/v1/imap/password_box/oauth/start", "", map[string]string{"Authorization": "Bearer nope"}); status != http.StatusUnauthorized {
		t.Errorf("a bad token: got %d, want 401", status)
	}
	if after := h.snapshot(); after != before {
		t.Errorf("a refused sign-in changed the configurations:\n%s\n%s", before, after)
	}
	v, err := h.c.GetIMAP(ctx, "password_box")
	if err != nil || v.SignIn != nil {
		t.Errorf("got %+v, %v; want no signIn", v.SignIn, err)
	}
}

// TestSignInAPI: start a sign-in with the API, complete it at the fake
// provider and the callback (control.CompleteSignIn, what the web route
// calls), read who signed in, and sign out. No token in any answer or log.
func TestSignInAPI(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, func(d *server.Deps) { d.BaseURL = "https://mailtrigger.example.com/" })
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient("api-client")
	fake.SetSignInUser("owner@example.com") // the user name differs in case only
	in := imapconf.Input{Name: p("owner_box"), Host: p("imap.example.com"), Port: p(993), Username: p("Owner@Example.com"),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderCustom), ClientID: p("api-client"),
		AuthURL: p(fake.AuthorizeURL()), TokenURL: p(fake.TokenURL()), Scope: p("openid email offline_access")}
	v, err := h.c.CreateIMAP(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if v.Provider != "custom" || v.AuthURL != fake.AuthorizeURL() || v.SignIn != nil || v.HasPassword {
		t.Errorf("created: got %+v", v)
	}
	var start struct {
		URL         string    `json:"url"`
		RedirectURI string    `json:"redirectUri"`
		ExpiresAt   time.Time `json:"expiresAt"`
	}
	if err := h.c.Do(ctx, "POST", "/api/v1/imap/owner_box/oauth/start", nil, &start); err != nil {
		t.Fatal(err)
	}
	au, err := url.Parse(start.URL)
	if err != nil || !strings.HasPrefix(start.URL, fake.AuthorizeURL()+"?") {
		t.Fatalf("got url %q, want the provider's authorization endpoint", start.URL)
	}
	q := au.Query()
	if start.RedirectURI != "https://mailtrigger.example.com/oauth/callback" || q.Get("redirect_uri") != start.RedirectURI ||
		q.Get("client_id") != "api-client" || q.Get("state") == "" || q.Get("code_challenge_method") != "S256" {
		t.Errorf("got redirectUri %q and url %s", start.RedirectURI, start.URL)
	}
	if d := time.Until(start.ExpiresAt); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("got expiresAt in %v, want 10 minutes", d)
	}
	back, err := fake.Consent(ctx, nil, start.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	// Any user of the UI completes a sign-in started with an API token.
	cb := control.Callback{State: back.Query().Get("state"), Code: back.Query().Get("code")}
	if _, _, err := control.New(st, nil, nil).CompleteSignIn(ctx, "someone", 42, cb, nil); err != nil {
		t.Fatalf("completing: %v", err)
	}
	v, err = h.c.GetIMAP(ctx, "owner_box")
	if err != nil || v.SignIn == nil || v.SignIn.Account != "owner@example.com" || v.SignIn.Broken != "" || v.SignIn.SignedInAt.IsZero() {
		t.Fatalf("got signIn %+v, %v", v.SignIn, err)
	}
	list, err := h.c.ListIMAP(ctx, 0, "")
	if err != nil || len(list.Items) != 1 || list.Items[0].SignIn == nil || list.Items[0].SignIn.Account != "owner@example.com" {
		t.Errorf("list: got %+v, %v", list, err)
	}
	// Duplicate keeps the settings, not the sign-in.
	if d, err := h.c.DuplicateIMAP(ctx, "owner_box", map[string]any{}); err != nil || d.SignIn != nil || d.Provider != "custom" {
		t.Errorf("duplicate: got %+v, %v", d, err)
	}
	if status, body := h.raw("DELETE", "/api/v1/imap/owner_box/oauth", "", nil); status != http.StatusNoContent {
		t.Fatalf("sign out: got %d %s", status, body)
	}
	if v, err := h.c.GetIMAP(ctx, "owner_box"); err != nil || v.SignIn != nil {
		t.Errorf("after sign out: got %+v, %v", v.SignIn, err)
	}
	if _, err := st.GetOAuthGrant(ctx, mustID(t, st, "owner_box")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after sign out: got %v, want no grant", err)
	}

	secrets := []string{back.Query().Get("code")}
	for _, tok := range fake.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	for _, rt := range fake.RefreshTokens("") {
		secrets = append(secrets, rt.Value)
	}
	h.mu.Lock()
	all := append(h.bodies, h.logs.String())
	h.mu.Unlock()
	for _, s := range secrets {
		for _, b := range all {
			if s != "" && strings.Contains(b, s) {
				t.Errorf("a token or code is in an API answer or the log: …%s…", s[:min(6, len(s))])
			}
		}
	}
}

func mustID(t *testing.T, st *store.Store, name string) int64 {
	t.Helper()
	c, err := st.GetIMAP(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}
