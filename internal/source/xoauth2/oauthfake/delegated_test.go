package oauthfake_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/source/xoauth2/oauthfake"
)

const (
	redirect = "https://app.example.test/oauth/callback"
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authURL is an authorization request of client for scope.
func authURL(base, client, scope, hint string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect},
		"scope": {scope}, "state": {"st-1"}, "code_challenge": {challenge(verifier)},
		"code_challenge_method": {"S256"}, "login_hint": {hint},
	}
	return base + "?" + q.Encode()
}

// code signs in and returns the code.
func code(t *testing.T, s *oauthfake.Server, u string) string {
	t.Helper()
	back, err := s.Consent(context.Background(), nil, u, true)
	if err != nil {
		t.Fatal(err)
	}
	if q := back.Query(); q.Get("state") != "st-1" || q.Get("code") == "" || !strings.HasPrefix(back.String(), redirect+"?") {
		t.Fatalf("redirected to %s", back)
	}
	return back.Query().Get("code")
}

func tokenPost(t *testing.T, s *oauthfake.Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().PostForm(s.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func redeem(t *testing.T, s *oauthfake.Server, client, secret, c, v string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {redirect}, "code_verifier": {v}, "client_id": {client}}
	if secret != "" {
		form.Set("client_secret", secret)
	}
	return tokenPost(t, s, form)
}

func refresh(t *testing.T, s *oauthfake.Server, rt string) (int, map[string]any) {
	t.Helper()
	return tokenPost(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}, "client_secret": {"secret"}})
}

func claims(t *testing.T, idToken any) map[string]any {
	t.Helper()
	s, _ := idToken.(string)
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", s)
	}
	head, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if !strings.Contains(string(head), `"alg":"none"`) {
		t.Errorf("header %s", head)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

type introspector struct{ url string }

func (i introspector) get(t *testing.T, tok string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(i.url, url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// TestConsentPage: the page names the user and the client and has the
// Allow and Deny buttons; Deny sends access_denied back with the state;
// requests without PKCE S256 are refused back at the client; unknown
// clients and nobody to sign in are refused on the page.
func TestConsentPage(t *testing.T) {
	s := oauthfake.NewTLS(t)
	s.AddClient("app", "secret", "")
	get := func(u string) (*http.Response, string) {
		hc := *s.Client()
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := get(authURL(s.AuthorizeURL(), "app", "mail openid", "dave@example.test"))
	for _, want := range []string{`id="allow"`, `id="deny"`, "dave@example.test", "app", `method="post"`} {
		if resp.StatusCode != 200 || !strings.Contains(page, want) {
			t.Errorf("page (HTTP %d) lacks %s:\n%s", resp.StatusCode, want, page)
		}
	}
	// Under a tenant, as Microsoft's, and with another user signing in.
	s.SetSignInUser("erin@example.test")
	if _, page := get(authURL(s.URL+"/organizations"+oauthfake.AuthorizePath, "app", "mail", "dave@example.test")); !strings.Contains(page, "erin@example.test") || !strings.Contains(page, `action="/organizations/oauth2/v2.0/authorize"`) {
		t.Errorf("tenant page:\n%s", page)
	}
	back, err := s.Consent(context.Background(), nil, authURL(s.AuthorizeURL(), "app", "mail", ""), false)
	if err != nil {
		t.Fatal(err)
	}
	if q := back.Query(); q.Get("error") != "access_denied" || q.Get("state") != "st-1" || q.Has("code") {
		t.Errorf("deny: redirected to %s", back)
	}
	noPKCE := strings.Replace(authURL(s.AuthorizeURL(), "app", "mail", ""), "code_challenge_method=S256", "code_challenge_method=plain", 1)
	if resp, _ := get(noPKCE); resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "error=invalid_request") {
		t.Errorf("plain PKCE: HTTP %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(authURL(s.AuthorizeURL(), "nobody", "mail", "")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown client: HTTP %d", resp.StatusCode)
	}
	s.SetSignInUser("")
	if resp, _ := get(authURL(s.AuthorizeURL(), "app", "mail", "")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("nobody to sign in: HTTP %d", resp.StatusCode)
	}
	// Only the Deny was answered.
	if c := s.Counts(); c.Consents != 1 {
		t.Errorf("counts %+v", c)
	}
}

// TestDelegated: a code redeemed with PKCE gives an access token that
// introspects as the signed-in user, a refresh token and an ID token; the
// code is single-use (a replay revokes what it issued); refresh tokens
// rotate, a spent one is refused; RevokeUser and Revoke refuse later
// refreshes; userinfo answers the user; injected failures.
func TestDelegated(t *testing.T) {
	s := oauthfake.NewTLS(t)
	s.AddClient("app", "secret", "box@example.test")
	s.AddPublicClient("public")
	in := introspector{s.IntrospectionURL()}
	if !strings.HasPrefix(in.url, "http://") {
		t.Fatalf("introspection over TLS: %s", in.url)
	}
	u := authURL(s.AuthorizeURL(), "app", "mail openid email offline_access", "Frank@Example.Test")

	c := code(t, s, u)
	if st, body := redeem(t, s, "app", "secret", c, strings.Replace(verifier, "d", "e", 1)); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", st, body)
	}
	if st, body := redeem(t, s, "app", "wrong", c, verifier); st != 401 || body["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", st, body)
	}
	st, tok := redeem(t, s, "app", "secret", c, verifier)
	if st != 200 || tok["refresh_token"] == nil || tok["access_token"] == nil || tok["scope"] != "mail openid email offline_access" {
		t.Fatalf("redeem: %d %v", st, tok)
	}
	if m := claims(t, tok["id_token"]); m["email"] != "Frank@Example.Test" || m["aud"] != "app" || m["preferred_username"] != "Frank@Example.Test" || m["iss"] != s.URL {
		t.Errorf("id_token claims %v", m)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if m := in.get(t, at); m["active"] != true || m["username"] != "Frank@Example.Test" || m["scope"] != "mail openid email offline_access" {
		t.Errorf("introspection %v", m)
	}
	// userinfo
	req, _ := http.NewRequest("GET", s.UserinfoURL(), nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if resp.StatusCode != 200 || info["email"] != "Frank@Example.Test" {
		t.Errorf("userinfo: %d %v", resp.StatusCode, info)
	}
	req.Header.Set("Authorization", "Bearer nope")
	if resp, err := s.Client().Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("userinfo with an unknown token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Rotation.
	st, r1 := refresh(t, s, rt)
	if st != 200 || r1["refresh_token"] == nil || r1["refresh_token"] == rt {
		t.Fatalf("refresh: %d %v", st, r1)
	}
	if st, body := refresh(t, s, rt); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %v", st, body)
	}
	rt1 := r1["refresh_token"].(string)
	if live := s.LiveRefreshTokens("frank@example.test"); len(live) != 1 || live[0] != rt1 {
		t.Errorf("live %v", live)
	}
	s.SetRotate(false)
	if st, body := refresh(t, s, rt1); st != 200 || body["refresh_token"] != nil {
		t.Fatalf("refresh without rotation: %d %v", st, body)
	}
	s.FailNextRefresh("invalid_grant", "injected")
	if st, body := tokenPost(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {oauthfake.Scope}, "client_id": {"app"}, "client_secret": {"secret"}}); st != 200 {
		t.Fatalf("client credentials while a refresh failure waits: %d %v", st, body)
	}
	if st, body := refresh(t, s, rt1); st != 400 || body["error_description"] != "injected" {
		t.Fatalf("injected: %d %v", st, body)
	}
	if st, _ := refresh(t, s, rt1); st != 200 {
		t.Fatalf("after the injected failure: %d", st)
	}
	if c := s.Counts(); c.Refreshes != 3 || c.RefreshErrors != 2 || c.CodeGrants != 1 {
		t.Errorf("counts %+v", c)
	}
	s.Revoke(rt1)
	if st, body := refresh(t, s, rt1); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("revoked refresh token: %d %v", st, body)
	}

	// Replay: invalid_grant, and what the code issued is revoked.
	s.SetRotate(true)
	c = code(t, s, u)
	_, tok = redeem(t, s, "app", "secret", c, verifier)
	at, rt = tok["access_token"].(string), tok["refresh_token"].(string)
	_, r1 = refresh(t, s, rt)
	if st, body := redeem(t, s, "app", "secret", c, verifier); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", st, body)
	}
	if m := in.get(t, at); m["active"] != false {
		t.Errorf("access token after replay: %v", m)
	}
	if st, _ := refresh(t, s, r1["refresh_token"].(string)); st != 400 {
		t.Errorf("rotated refresh token after replay: %d", st)
	}

	// A public client: no secret; userinfo-less ID token claims.
	s.SetIDTokenClaims("upn")
	c = code(t, s, authURL(s.URL+"/common"+oauthfake.AuthorizePath, "public", "openid mail", "gina@example.test"))
	if st, body := redeem(t, s, "public", "x", c, verifier); st != 401 {
		t.Fatalf("public client with a secret: %d %v", st, body)
	}
	c = code(t, s, authURL(s.URL+"/common"+oauthfake.AuthorizePath, "public", "openid mail", "gina@example.test"))
	resp, err = s.Client().PostForm(s.URL+"/common"+oauthfake.TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {"public"}})
	if err != nil {
		t.Fatal(err)
	}
	tok = nil
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if m := claims(t, tok["id_token"]); m["upn"] != "gina@example.test" || m["email"] != nil {
		t.Errorf("public client: %v, claims %v", tok, m)
	}
	s.RevokeUser("GINA@example.test")
	if st, body := tokenPost(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"public"}}); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("after RevokeUser: %d %v", st, body)
	}
	if m := in.get(t, tok["access_token"].(string)); m["active"] != false || m["username"] != "gina@example.test" {
		t.Errorf("introspection after RevokeUser: %v", m)
	}
	// A code for another client.
	c = code(t, s, u)
	if st, body := redeem(t, s, "public", "", c, verifier); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("another client's code: %d %v", st, body)
	}
}

// TestRefreshRace: two clients redeeming one refresh token at once, with a
// slow provider, as two replicas that did not coordinate: one gets the
// rotated token, the other invalid_grant; one refresh grant was served.
func TestRefreshRace(t *testing.T) {
	s := oauthfake.NewTLS(t)
	s.AddClient("app", "secret", "")
	_, tok := redeem(t, s, "app", "secret", code(t, s, authURL(s.AuthorizeURL(), "app", "mail", "hal@example.test")), verifier)
	rt := tok["refresh_token"].(string)
	s.SetTokenDelay(100 * time.Millisecond)
	statuses := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := s.Client().PostForm(s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}, "client_secret": {"secret"}})
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	a, b := <-statuses, <-statuses
	if a+b != 600 || a*b != 200*400 {
		t.Errorf("got HTTP %d and %d, want 200 and 400", a, b)
	}
	if c := s.Counts(); c.Refreshes != 1 || c.RefreshErrors != 1 {
		t.Errorf("counts %+v", c)
	}
	if live := s.LiveRefreshTokens("hal@example.test"); len(live) != 1 || live[0] == rt {
		t.Errorf("live refresh tokens %v", live)
	}
}
