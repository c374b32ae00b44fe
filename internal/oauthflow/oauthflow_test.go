package oauthflow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/xoauth2/oauthfake"
)

const redirectURI = "https://mailtrigger.example.test/oauth/callback"

// TestEndpointsOf: each provider's endpoints and scopes for each kind of
// mailbox, the Microsoft tenant and authority, the scope that replaces the
// mail scope, and the configurations that have none.
func TestEndpointsOf(t *testing.T) {
	ms := func(tenant, authority string) (string, string) {
		base := authority + "/" + tenant + "/oauth2/v2.0"
		return base + "/authorize", base + "/token"
	}
	msAuth, msToken := ms("common", "https://login.microsoftonline.com")
	consAuth, consToken := ms("consumers", "https://login.microsoftonline.com")
	fakeAuth, fakeToken := ms("contoso.example", "https://127.0.0.1:4443/authority")
	msRest := []string{"offline_access", "openid", "email", "profile"}
	google := Endpoints{
		AuthURL: GoogleAuthURL, TokenURL: GoogleTokenURL, UserinfoURL: GoogleUserinfoURL,
		Scopes:          []string{"https://mail.google.com/", "openid", "email"},
		ExtraAuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
	}
	googleScoped := google
	googleScoped.Scopes = []string{"https://www.googleapis.com/auth/gmail.readonly", "email", "openid"}
	tests := []struct {
		name    string
		c       imapconf.Config
		want    Endpoints
		wantErr string
	}{
		{"google imaps", imapconf.Config{Provider: "google", Type: "generic", ServerType: "imaps"}, google, ""},
		{"google pop3s", imapconf.Config{Provider: "google", Type: "generic", ServerType: "pop3s"}, google, ""},
		{"google scope", imapconf.Config{Provider: "google", Type: "generic", ServerType: "imaps", Scope: " https://www.googleapis.com/auth/gmail.readonly email "}, googleScoped, ""},
		{"google msgraph", imapconf.Config{Provider: "google", Type: "msgraph"}, Endpoints{}, "cannot sign in to Microsoft Graph"},
		{"microsoft imaps", imapconf.Config{Provider: "microsoft", Type: "generic", ServerType: "imaps"},
			Endpoints{AuthURL: msAuth, TokenURL: msToken, UserinfoURL: MicrosoftUserinfoURL, Scopes: append([]string{"https://outlook.office.com/IMAP.AccessAsUser.All"}, msRest...)}, ""},
		{"microsoft pop3s consumers", imapconf.Config{Provider: "microsoft", Type: "generic", ServerType: "pop3s", TenantID: "consumers"},
			Endpoints{AuthURL: consAuth, TokenURL: consToken, UserinfoURL: MicrosoftUserinfoURL, Scopes: append([]string{"https://outlook.office.com/POP.AccessAsUser.All"}, msRest...)}, ""},
		{"microsoft msgraph", imapconf.Config{Provider: "microsoft", Type: "msgraph", AuthorityURL: "https://login.microsoftonline.com/"},
			Endpoints{AuthURL: msAuth, TokenURL: msToken, UserinfoURL: MicrosoftUserinfoURL, Scopes: append([]string{"https://graph.microsoft.com/Mail.ReadWrite"}, msRest...)}, ""},
		{"microsoft authority and tenant", imapconf.Config{Provider: "microsoft", Type: "generic", ServerType: "imaps", TenantID: "contoso.example", AuthorityURL: "https://127.0.0.1:4443/authority/"},
			Endpoints{AuthURL: fakeAuth, TokenURL: fakeToken, Scopes: append([]string{"https://outlook.office.com/IMAP.AccessAsUser.All"}, msRest...)}, ""},
		{"microsoft scope", imapconf.Config{Provider: "microsoft", Type: "msgraph", Scope: "https://graph.microsoft.com/Mail.Read offline_access"},
			Endpoints{AuthURL: msAuth, TokenURL: msToken, UserinfoURL: MicrosoftUserinfoURL, Scopes: append([]string{"https://graph.microsoft.com/Mail.Read"}, msRest...)}, ""},
		{"microsoft no server type", imapconf.Config{Provider: "microsoft", Type: "generic"}, Endpoints{}, "no Microsoft scope"},
		{"custom", imapconf.Config{Provider: "custom", Type: "generic", ServerType: "imaps", AuthURL: "https://id.example/auth", TokenURL: "https://id.example/token", Scope: "mail openid mail"},
			Endpoints{AuthURL: "https://id.example/auth", TokenURL: "https://id.example/token", Scopes: []string{"mail", "openid"}}, ""},
		{"custom without scope", imapconf.Config{Provider: "custom", AuthURL: "https://id.example/auth", TokenURL: "https://id.example/token"}, Endpoints{}, "needs scope"},
		{"custom without authUrl", imapconf.Config{Provider: "custom", TokenURL: "https://id.example/token", Scope: "x"}, Endpoints{}, "needs authUrl"},
		{"custom without tokenUrl", imapconf.Config{Provider: "custom", AuthURL: "https://id.example/auth", Scope: "x"}, Endpoints{}, "needs tokenUrl"},
		{"unknown provider", imapconf.Config{Provider: "yahoo"}, Endpoints{}, `unknown provider "yahoo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EndpointsOf(tt.c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}

// env is a TLS fake authorization server with a confidential client and a
// custom configuration signing in to it.
type env struct {
	as  *oauthfake.Server
	hc  *http.Client
	cfg imapconf.Config
}

const (
	user   = "Alice@Example.Test"
	secret = "Client~Secret~0123456789"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	as := oauthfake.NewTLS(t)
	as.AddClient("mt-app", secret, "")
	return &env{as: as, hc: as.Client(), cfg: imapconf.Config{
		Name: "box", Type: imapconf.TypeGeneric, ServerType: imapconf.ServerIMAPS,
		Auth: imapconf.AuthOAuth2Delegated, Provider: imapconf.ProviderCustom,
		AuthURL: as.AuthorizeURL(), TokenURL: as.TokenURL(), Scope: "mail openid email offline_access",
		ClientID: "mt-app", ClientSecret: secret, Username: user,
	}}
}

// signIn begins a sign-in, consents (allow) and returns the code, checking
// the state came back.
func (e *env) signIn(t *testing.T, c imapconf.Config) (Start, string) {
	t.Helper()
	st, err := Begin(c, redirectURI, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	back, err := e.as.Consent(context.Background(), e.hc, st.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	q := back.Query()
	if got := back.Scheme + "://" + back.Host + back.Path; got != redirectURI || q.Get("state") != st.State || q.Get("code") == "" {
		t.Fatalf("redirected to %s, want %s with state and code", back, redirectURI)
	}
	return st, q.Get("code")
}

func (e *env) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(e.as.IntrospectionURL(), url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBegin: the URL carries the PKCE S256 challenge of a verifier of the
// RFC's shape, a fresh 256-bit state, login_hint and the extra parameters.
func TestBegin(t *testing.T) {
	c := imapconf.Config{Provider: "google", Type: "generic", ServerType: "imaps", ClientID: "cid.apps.googleusercontent.com", Username: "bob@gmail.example"}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := Begin(c, redirectURI, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Begin(c, redirectURI, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.State == b.State || a.Verifier == b.Verifier {
		t.Fatal("two sign-ins share a state or a verifier")
	}
	if st, err := base64.RawURLEncoding.DecodeString(a.State); err != nil || len(st) < 16 {
		t.Errorf("state %q: %d bytes, %v; want at least 16 random bytes, base64url", a.State, len(st), err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`).MatchString(a.Verifier) {
		t.Errorf("verifier %q is not of RFC 7636's shape", a.Verifier)
	}
	if !a.Expires.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("expires %v", a.Expires)
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"response_type": "code", "client_id": c.ClientID, "redirect_uri": redirectURI,
		"scope": "https://mail.google.com/ openid email", "state": a.State,
		"code_challenge": Challenge(a.Verifier), "code_challenge_method": "S256",
		"login_hint": c.Username, "access_type": "offline", "prompt": "consent",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if len(q) != len(want) || strings.Contains(a.URL, a.Verifier) {
		t.Errorf("URL %s: unexpected parameters or the verifier", a.URL)
	}
	if u.Scheme+"://"+u.Host+u.Path != GoogleAuthURL {
		t.Errorf("URL %s", a.URL)
	}
	// RFC 7636 appendix B.
	if got := Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("challenge %s", got)
	}
	// A custom authorization URL keeps its own query.
	cu := imapconf.Config{Provider: "custom", AuthURL: "https://id.example/auth?tenant=x", TokenURL: "https://id.example/token", Scope: "s", ClientID: "c"}
	st, err := Begin(cu, redirectURI, now)
	if err != nil || !strings.Contains(st.URL, "tenant=x") || strings.Contains(st.URL, "login_hint") {
		t.Errorf("custom: %s, %v", st.URL, err)
	}
	for _, bad := range []string{"", "/oauth/callback", "ftp://x/cb"} {
		if _, err := Begin(c, bad, now); err == nil {
			t.Errorf("redirect URI %q accepted", bad)
		}
	}
	c.ClientID = ""
	if _, err := Begin(c, redirectURI, now); err == nil {
		t.Error("no client id accepted")
	}
}

// TestFlow: sign in, exchange, refresh with rotation; the access tokens
// open the user's mailbox (introspection); the old refresh token is
// refused as invalid_grant; the new one still works.
func TestFlow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st, code := e.signIn(t, e.cfg)
	g, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if g.Account != user || g.AccessToken == "" || g.RefreshToken == "" || time.Until(g.Expiry) < 59*time.Minute || time.Until(g.Expiry) > time.Hour {
		t.Fatalf("got %+v", g)
	}
	if m := e.introspect(t, g.AccessToken); m["active"] != true || m["username"] != user {
		t.Fatalf("introspection: %v", m)
	}
	r1, err := Refresh(ctx, e.hc, e.cfg, g.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if r1.RefreshToken == "" || r1.RefreshToken == g.RefreshToken || r1.AccessToken == g.AccessToken || r1.Account != "" {
		t.Fatalf("refresh: got %+v", r1)
	}
	if m := e.introspect(t, r1.AccessToken); m["active"] != true || m["username"] != user {
		t.Fatalf("introspection after refresh: %v", m)
	}
	_, err = Refresh(ctx, e.hc, e.cfg, g.RefreshToken)
	if !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("reuse of the rotated refresh token: got %v, want ErrInvalidGrant", err)
	}
	if !strings.HasPrefix(err.Error(), "renewing the access token: ") {
		t.Errorf("error text %q", err)
	}
	r2, err := Refresh(ctx, e.hc, e.cfg, r1.RefreshToken)
	if err != nil || r2.RefreshToken == "" {
		t.Fatalf("refresh with the new token: %+v, %v", r2, err)
	}
	// Without rotation the answer has no refresh token: keep the old.
	e.as.SetRotate(false)
	r3, err := Refresh(ctx, e.hc, e.cfg, r2.RefreshToken)
	if err != nil || r3.RefreshToken != "" || r3.AccessToken == "" {
		t.Fatalf("refresh without rotation: %+v, %v", r3, err)
	}
	if _, err := Refresh(ctx, e.hc, e.cfg, r2.RefreshToken); err != nil {
		t.Fatalf("refresh without rotation, again: %v", err)
	}
	if c := e.as.Counts(); c.CodeGrants != 1 || c.Refreshes != 4 || c.RefreshErrors != 1 {
		t.Errorf("counts %+v", c)
	}
	// Revoked (password changed): invalid_grant.
	e.as.RevokeUser("alice@example.test")
	if _, err := Refresh(ctx, e.hc, e.cfg, r2.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("after RevokeUser: got %v", err)
	}
	if m := e.introspect(t, r3.AccessToken); m["active"] != false {
		t.Fatalf("introspection after RevokeUser: %v", m)
	}
}

// TestMicrosoft signs in with the Microsoft provider whose authority is the
// fake (a public client: no secret) under a tenant, for Graph.
func TestMicrosoft(t *testing.T) {
	e := newEnv(t)
	e.as.AddPublicClient("public-app")
	e.as.SetIDTokenClaims("preferred_username")
	c := imapconf.Config{
		Type: imapconf.TypeMSGraph, Auth: imapconf.AuthOAuth2Delegated, Provider: imapconf.ProviderMicrosoft,
		AuthorityURL: e.as.URL, TenantID: "consumers", ClientID: "public-app", Username: "carol@outlook.example",
	}
	st, code := e.signIn(t, c)
	if !strings.HasPrefix(st.URL, e.as.URL+"/consumers/oauth2/v2.0/authorize?") {
		t.Fatalf("URL %s", st.URL)
	}
	g, err := Exchange(context.Background(), e.hc, c, redirectURI, code, st.Verifier)
	if err != nil || g.Account != c.Username {
		t.Fatalf("got %+v, %v", g, err)
	}
	r, err := Refresh(context.Background(), e.hc, c, g.RefreshToken)
	if err != nil || r.RefreshToken == "" {
		t.Fatalf("refresh: %+v, %v", r, err)
	}
	toks := e.as.Tokens()
	if got := toks[len(toks)-1].Scope; got != "https://graph.microsoft.com/Mail.ReadWrite offline_access openid email profile" {
		t.Errorf("scope of the renewed token %q", got)
	}
}

// TestAccount: the account from each ID token claim, from userinfo when
// the ID token names none or there is none, and an error when nothing
// names it.
func TestAccount(t *testing.T) {
	ctx := context.Background()
	for _, claim := range []string{"email", "preferred_username", "upn"} {
		t.Run(claim, func(t *testing.T) {
			e := newEnv(t)
			e.as.SetIDTokenClaims(claim)
			st, code := e.signIn(t, e.cfg)
			g, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
			if err != nil || g.Account != user {
				t.Fatalf("got %+v, %v", g, err)
			}
		})
	}
	for _, name := range []string{"no id token", "id token without account"} {
		t.Run("userinfo: "+name, func(t *testing.T) {
			e := newEnv(t)
			if name == "no id token" {
				e.as.SetIDToken(false)
			} else {
				e.as.SetIDTokenClaims()
			}
			ep, err := EndpointsOf(e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			// A custom provider asks no userinfo: the account is unknown.
			st, code := e.signIn(t, e.cfg)
			_, err = exchange(ctx, e.hc, ep, e.cfg, redirectURI, code, st.Verifier)
			if err == nil || !strings.Contains(err.Error(), "did not name the account") {
				t.Fatalf("without userinfo: got %v", err)
			}
			ep.UserinfoURL = e.as.UserinfoURL()
			st, code = e.signIn(t, e.cfg)
			g, err := exchange(ctx, e.hc, ep, e.cfg, redirectURI, code, st.Verifier)
			if err != nil || g.Account != user {
				t.Fatalf("got %+v, %v", g, err)
			}
			if c := e.as.Counts(); c.Userinfo != 1 {
				t.Errorf("counts %+v", c)
			}
		})
	}
	t.Run("id token for another client", func(t *testing.T) {
		tok := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":["x","y"],"email":"a@b"}`)) + "."
		if _, err := AccountFromIDToken(tok, "mt-app"); err == nil || !strings.Contains(err.Error(), "another client") {
			t.Errorf("got %v", err)
		}
		if acc, err := AccountFromIDToken(tok, "y"); err != nil || acc != "a@b" {
			t.Errorf("got %q, %v", acc, err)
		}
		for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c"} {
			if _, err := AccountFromIDToken(bad, "y"); err == nil {
				t.Errorf("%q accepted", bad)
			}
		}
	})
}

// TestRefused: each way a sign-in fails, with ErrInvalidGrant or a
// *ProviderError and a text that says what was being done.
func TestRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("access denied", func(t *testing.T) {
		e := newEnv(t)
		st, err := Begin(e.cfg, redirectURI, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		back, err := e.as.Consent(ctx, e.hc, st.URL, false)
		if err != nil {
			t.Fatal(err)
		}
		q := back.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != st.State || q.Has("code") {
			t.Fatalf("redirected to %s", back)
		}
		pe := CallbackError(q.Get("error"), q.Get("error_description"))
		if pe.Code != "access_denied" || pe.Error() != "the provider answered access_denied: the user declined" {
			t.Errorf("got %q", pe)
		}
		if pe := CallbackError("", "a\nb Trace ID: 1"); pe.Error() != "the provider answered an error it did not name: a" {
			t.Errorf("got %q", pe)
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		e := newEnv(t)
		_, code := e.signIn(t, e.cfg)
		other, _ := Begin(e.cfg, redirectURI, time.Now())
		_, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, other.Verifier)
		if !errors.Is(err, ErrInvalidGrant) || !strings.Contains(err.Error(), "code_verifier does not match") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong redirect URI", func(t *testing.T) {
		e := newEnv(t)
		st, code := e.signIn(t, e.cfg)
		_, err := Exchange(ctx, e.hc, e.cfg, redirectURI+"2", code, st.Verifier)
		if !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("replayed code", func(t *testing.T) {
		e := newEnv(t)
		st, code := e.signIn(t, e.cfg)
		g, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
		if !errors.Is(err, ErrInvalidGrant) || !strings.HasPrefix(err.Error(), "redeeming the sign-in code: ") {
			t.Fatalf("replay: got %v", err)
		}
		// What the code issued is revoked.
		if _, err := Refresh(ctx, e.hc, e.cfg, g.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("refresh after replay: got %v", err)
		}
		if m := e.introspect(t, g.AccessToken); m["active"] != false {
			t.Fatalf("access token after replay: %v", m)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		e := newEnv(t)
		e.as.SetCodeTTL(0)
		st, code := e.signIn(t, e.cfg)
		if _, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		e := newEnv(t)
		st, code := e.signIn(t, e.cfg)
		c := e.cfg
		c.ClientSecret = "wrong"
		_, err := Exchange(ctx, e.hc, c, redirectURI, code, st.Verifier)
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.Code != "invalid_client" || errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no refresh token", func(t *testing.T) {
		e := newEnv(t)
		e.as.SetRotate(false)
		st, code := e.signIn(t, e.cfg)
		g, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		// A refresh grant answering no refresh token is fine; a code
		// grant that gives none is not (checked with an injected answer
		// below, TestErrorTexts).
		if _, err := Refresh(ctx, e.hc, e.cfg, g.RefreshToken); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("injected", func(t *testing.T) {
		e := newEnv(t)
		_, code := e.signIn(t, e.cfg)
		e.as.FailNextToken("temporarily_unavailable", "try later\nTrace ID: 123")
		st, _ := Begin(e.cfg, redirectURI, time.Now())
		_, err := Exchange(ctx, e.hc, e.cfg, redirectURI, code, st.Verifier)
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.Code != "temporarily_unavailable" || pe.Description != "try later" {
			t.Fatalf("got %v", err)
		}
		e.as.FailNextTokenStatus(http.StatusBadGateway, "", "<html>bad gateway</html>")
		_, err = Refresh(ctx, e.hc, e.cfg, "refresh-token-value")
		if err == nil || !strings.Contains(err.Error(), "answered HTTP 502, not an OAuth2 answer (Content-Type text/plain)") || strings.Contains(err.Error(), "html") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		e := newEnv(t)
		e.as.Close()
		_, err := Refresh(ctx, e.hc, e.cfg, "rt")
		if err == nil || !strings.HasPrefix(err.Error(), "renewing the access token: ") || errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("got %v", err)
		}
		e = newEnv(t)
		e.as.SetTokenDelay(5 * time.Second)
		dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer dcancel()
		if _, err := Refresh(dctx, e.hc, e.cfg, "rt"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("slow provider: got %v", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Refresh(cctx, e.hc, e.cfg, "rt"); !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled: got %v", err)
		}
	})
}
