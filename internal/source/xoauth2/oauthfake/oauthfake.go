// Package oauthfake is an in-process OAuth2 authorization server for tests
// of XOAUTH2 logins and of delegated sign-in (issue 17):
//
//   - a token endpoint (RFC 6749 §3.2) granting client_credentials (§4.4,
//     an app allowed into one mailbox), authorization_code (§4.1, with PKCE
//     S256 per RFC 7636, single-use codes) and refresh_token (§6, with
//     rotation: every use returns a new refresh token and spends the old);
//   - an authorization endpoint with a consent page (buttons "Allow", id
//     allow, and "Deny", id deny) that redirects back with a code or
//     error=access_denied;
//   - an ID token (an unsigned JWT, "alg":"none": the client reads its
//     payload over TLS, OIDC Core 3.1.3.7) naming the user when the scope
//     has openid, and a userinfo endpoint;
//   - a token introspection endpoint (RFC 7662) for the mail server to ask
//     whether a token is good — the private Dovecot's oauth2 passdb calls it
//     on every login (testenv.DovecotOAuth2). Introspection reports the
//     mailbox a token opens as its username: the client's mailbox for
//     client credentials, the user who signed in for delegated tokens.
//
// The Microsoft layout is served too: {tenant}/oauth2/v2.0/authorize and
// {tenant}/oauth2/v2.0/token under URL, so a configuration's authorityUrl
// may point at the fake.
//
// Tokens can be revoked; expired and revoked tokens are inactive. Counters
// tell tests how many tokens were issued, how many refresh grants were
// served, and whether an expired token was ever presented.
//
// New serves plain HTTP on 127.0.0.1 (configurations accept http:// token
// URLs on loopback only); NewTLS serves HTTPS (Client trusts it) and keeps
// introspection on a plain HTTP listener for Dovecot.
package oauthfake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Scope is the scope the token endpoint grants to client credentials unless
// SetScope changes it.
const Scope = "https://outlook.office365.com/.default"

// Paths of the endpoints below URL. The authorization and token endpoints
// are also served below /{tenant} (Microsoft's layout).
const (
	TokenPath      = "/oauth2/v2.0/token"
	AuthorizePath  = "/oauth2/v2.0/authorize"
	IntrospectPath = "/introspect"
	UserinfoPath   = "/userinfo"
)

// CodeTTL is how long an authorization code may be redeemed unless
// SetCodeTTL changes it.
const CodeTTL = 2 * time.Minute

// Token is an access token the server issued.
type Token struct {
	Value    string
	ClientID string
	User     string // the mailbox it opens
	Issued   time.Time
	Expiry   time.Time
	Revoked  bool
	// Scope is what it grants; Delegated whether a user signed in for it
	// (authorization code or refresh token) rather than an app's client
	// credentials.
	Scope     string
	Delegated bool
	grant     int // the sign-in it descends from (0: client credentials)
}

// RefreshToken is a refresh token the server issued.
type RefreshToken struct {
	Value    string
	ClientID string
	User     string
	Scope    string
	Issued   time.Time
	// Used: it was redeemed and rotated (a later use is refused);
	// Revoked: revoked by RevokeUser, Revoke or a replayed code.
	Used, Revoked bool
	grant         int
}

// Counts are the server's counters.
type Counts struct {
	// Issued is the number of access tokens issued; TokenErrors the token
	// requests refused.
	Issued, TokenErrors int
	// Introspections is the number of introspection requests; Active how
	// many found the token active; Expired how many presented a token
	// that had expired (a client that should have refreshed first), and
	// Revoked one that was revoked.
	Introspections, Active, Expired, Revoked int
	// Consents is the number of consent pages answered (allowed or
	// denied); CodeGrants the codes redeemed; Refreshes the refresh
	// grants served (successful ones); RefreshErrors those refused;
	// Userinfo the userinfo requests answered with an account.
	Consents, CodeGrants, Refreshes, RefreshErrors, Userinfo int
}

type client struct {
	secret, user string
	public       bool          // no secret: a public client (PKCE only)
	expiresIn    time.Duration // zero: the server's
}

// pending is an authorization request shown on the consent page.
type pending struct {
	client, redirect, scope, state, challenge, user string
}

// code is an authorization code issued.
type code struct {
	pending
	expires time.Time
	used    bool
	grant   int
}

type failure struct {
	status      int
	code, desc  string
	onlyRefresh bool
}

// Server is the fake. Use its methods to change it while it runs.
type Server struct {
	*httptest.Server
	// plain serves introspection over HTTP when Server is TLS (nil
	// otherwise).
	plain *httptest.Server

	mu        sync.Mutex
	clients   map[string]client
	scope     string
	expiresIn time.Duration
	tokens    map[string]*Token
	refresh   map[string]*RefreshToken
	pending   map[string]*pending
	codes     map[string]*code
	counts    Counts
	signIn    string
	rotate    bool
	codeTTL   time.Duration
	idToken   bool
	idClaims  []string
	fail      []failure
	delay     time.Duration
	lastGrant int
}

// New starts a plain HTTP server on 127.0.0.1 and closes it when the test
// ends. Its tokens live an hour until SetExpiresIn changes it; refresh
// tokens rotate until SetRotate(false).
func New(t interface{ Cleanup(func()) }) *Server {
	s := newServer()
	s.Server = httptest.NewServer(s.mux())
	t.Cleanup(s.Close)
	return s
}

// NewTLS is New over HTTPS (a certificate for 127.0.0.1 that s.Client()
// trusts). Introspection is also served over plain HTTP at
// IntrospectionURL, for Dovecot.
func NewTLS(t interface{ Cleanup(func()) }) *Server {
	s := newServer()
	m := s.mux()
	s.Server = httptest.NewTLSServer(m)
	s.plain = httptest.NewServer(m)
	t.Cleanup(s.Close)
	return s
}

func newServer() *Server {
	return &Server{
		clients: map[string]client{}, scope: Scope, expiresIn: time.Hour,
		tokens: map[string]*Token{}, refresh: map[string]*RefreshToken{},
		pending: map[string]*pending{}, codes: map[string]*code{},
		rotate: true, codeTTL: CodeTTL, idToken: true,
		idClaims: []string{"email", "preferred_username"},
	}
}

func (s *Server) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("POST /{tenant}"+TokenPath, s.token)
	mux.HandleFunc("GET "+AuthorizePath, s.authorize)
	mux.HandleFunc("GET /{tenant}"+AuthorizePath, s.authorize)
	mux.HandleFunc("POST "+AuthorizePath, s.consent)
	mux.HandleFunc("POST /{tenant}"+AuthorizePath, s.consent)
	mux.HandleFunc("POST "+IntrospectPath, s.introspect)
	mux.HandleFunc("GET "+UserinfoPath, s.userinfo)
	return mux
}

// Close stops the server (and its plain introspection listener).
func (s *Server) Close() {
	s.Server.Close()
	if s.plain != nil {
		s.plain.Close()
	}
}

// TokenURL is the URL of the token endpoint, for a configuration's tokenUrl.
func (s *Server) TokenURL() string { return s.URL + TokenPath }

// AuthorizeURL is the URL of the authorization endpoint, for a custom
// configuration's authUrl.
func (s *Server) AuthorizeURL() string { return s.URL + AuthorizePath }

// UserinfoURL is the URL of the userinfo endpoint.
func (s *Server) UserinfoURL() string { return s.URL + UserinfoPath }

// IntrospectionURL is the URL of the introspection endpoint, for Dovecot
// (plain HTTP, also when the server is TLS).
func (s *Server) IntrospectionURL() string {
	if s.plain != nil {
		return s.plain.URL + IntrospectPath
	}
	return s.URL + IntrospectPath
}

// AddClient registers a client id and secret whose client-credentials
// tokens open user's mailbox. The client may also sign users in
// (authorization code).
func (s *Server) AddClient(id, secret, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = client{secret: secret, user: user}
}

// AddPublicClient registers a public client (no secret, as a Microsoft
// public client): it may only sign users in, with PKCE.
func (s *Server) AddPublicClient(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = client{public: true}
}

// SetScope sets the one scope the token endpoint grants to client
// credentials.
func (s *Server) SetScope(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scope = scope
}

// SetExpiresIn sets the lifetime of the tokens issued from now on (whole
// seconds, at least one).
func (s *Server) SetExpiresIn(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiresIn = max(d.Round(time.Second), time.Second)
}

// SetClientExpiresIn sets the lifetime of the tokens issued to client id
// from now on, overriding SetExpiresIn's for it.
func (s *Server) SetClientExpiresIn(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	c.expiresIn = max(d.Round(time.Second), time.Second)
	s.clients[id] = c
}

// SetSignInUser sets the user who signs in on the consent pages shown from
// now on ("": the request's login_hint, the default).
func (s *Server) SetSignInUser(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signIn = email
}

// SetRotate sets whether a refresh grant rotates the refresh token (the
// default) or answers without one, keeping the old valid (as Google does).
func (s *Server) SetRotate(rotate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate = rotate
}

// SetCodeTTL sets how long codes issued from now on may be redeemed.
func (s *Server) SetCodeTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codeTTL = d
}

// SetIDToken sets whether token answers carry an ID token when the scope
// has openid (the default) or never (the client must ask userinfo).
func (s *Server) SetIDToken(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idToken = on
}

// SetIDTokenClaims sets the claims of the ID token that name the user
// (default "email", "preferred_username"; also "upn"; none: only sub).
func (s *Server) SetIDTokenClaims(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idClaims = append([]string(nil), names...)
}

// FailNextToken makes the next token request (any grant) fail with the
// OAuth error code and description: HTTP 401 for invalid_client, 400
// otherwise. Calls queue up: n calls fail the next n requests.
func (s *Server) FailNextToken(code, description string) {
	s.FailNextTokenStatus(0, code, description)
}

// FailNextRefresh is FailNextToken for the next refresh grant only (other
// grants pass meanwhile).
func (s *Server) FailNextRefresh(code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, failure{status: statusOf(code), code: code, desc: description, onlyRefresh: true})
}

// FailNextTokenStatus makes the next token request fail with HTTP status;
// with code "" the answer is a plain-text body, not an OAuth error (a
// proxy's 502, say). status 0: 401 for invalid_client, else 400.
func (s *Server) FailNextTokenStatus(status int, code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		status = statusOf(code)
	}
	s.fail = append(s.fail, failure{status: status, code: code, desc: description})
}

func statusOf(code string) int {
	if code == "invalid_client" {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// SetTokenDelay makes every token request wait d before it is answered (a
// slow provider: widens the window in which replicas could race).
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// RevokeClient revokes every access token issued so far to client id.
func (s *Server) RevokeClient(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.ClientID == id {
			t.Revoked = true
		}
	}
}

// RevokeUser revokes every delegated access and refresh token of user
// (case-insensitive): later refreshes get invalid_grant, as after a
// password change or withdrawn consent.
func (s *Server) RevokeUser(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.Delegated && strings.EqualFold(t.User, email) {
			t.Revoked = true
		}
	}
	for _, r := range s.refresh {
		if strings.EqualFold(r.User, email) {
			r.Revoked = true
		}
	}
}

// ClientTokens returns the access tokens issued to client id, oldest
// first.
func (s *Server) ClientTokens(id string) []Token {
	var out []Token
	for _, t := range s.Tokens() {
		if t.ClientID == id {
			out = append(out, t)
		}
	}
	return out
}

// RevokeAll revokes every token issued so far (access and refresh).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.Revoked = true
	}
	for _, r := range s.refresh {
		r.Revoked = true
	}
}

// Revoke revokes one token, an access or a refresh token.
func (s *Server) Revoke(value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[value]; ok {
		t.Revoked = true
	}
	if r, ok := s.refresh[value]; ok {
		r.Revoked = true
	}
}

// Tokens returns the access tokens issued, oldest first.
func (s *Server) Tokens() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		out = append(out, *t)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Issued.Before(out[j-1].Issued); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// RefreshTokens returns the refresh tokens issued to user
// (case-insensitive; "": all), oldest first.
func (s *Server) RefreshTokens(user string) []RefreshToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RefreshToken
	for _, r := range s.refresh {
		if user == "" || strings.EqualFold(r.User, user) {
			out = append(out, *r)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Issued.Before(out[j-1].Issued); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// LiveRefreshTokens returns the values of user's refresh tokens that a
// refresh grant would still accept (neither used nor revoked).
func (s *Server) LiveRefreshTokens(user string) []string {
	var out []string
	for _, r := range s.RefreshTokens(user) {
		if !r.Used && !r.Revoked {
			out = append(out, r.Value)
		}
	}
	return out
}

// Counts returns the counters.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenError is an answer of the token endpoint per RFC 6749 §5.2.
type tokenError struct {
	status     int
	code, desc string
}

// token is the token endpoint. The client authenticates with client_id and
// client_secret in the form or with HTTP Basic (a public client with
// client_id alone).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the body is not a form"})
		return
	}
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			// The client went away: no answer, as from a real
			// server. Returning would send an empty 200, which a
			// client whose deadline raced its closing of the
			// connection could still read (TestRefused/unreachable
			// failed so 7 times in 300 runs under load).
			panic(http.ErrAbortHandler)
		}
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	_, hasSecret := r.PostForm["client_secret"]
	if u, p, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
		hasSecret = true
	}
	gt := r.PostForm.Get("grant_type")
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(e *tokenError) {
		s.counts.TokenErrors++
		if gt == "refresh_token" {
			s.counts.RefreshErrors++
		}
		if e.code == "" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(e.status)
			_, _ = io.WriteString(w, e.desc)
			return
		}
		writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
	}
	for i, f := range s.fail {
		if !f.onlyRefresh || gt == "refresh_token" {
			s.fail = append(s.fail[:i:i], s.fail[i+1:]...)
			fail(&tokenError{f.status, f.code, f.desc})
			return
		}
	}
	var (
		answer map[string]any
		e      *tokenError
	)
	switch gt {
	case "client_credentials":
		answer, e = s.clientCredentials(id, secret, r.PostForm.Get("scope"))
	case "authorization_code":
		answer, e = s.authorizationCode(r, id, secret, hasSecret)
	case "refresh_token":
		answer, e = s.refreshGrant(r, id, secret, hasSecret)
	default:
		e = &tokenError{http.StatusBadRequest, "unsupported_grant_type", "supported: client_credentials, authorization_code, refresh_token"}
	}
	if e != nil {
		fail(e)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

// authClient checks the client's credentials (a public client sends none).
func (s *Server) authClient(id, secret string, hasSecret bool) (client, *tokenError) {
	c, ok := s.clients[id]
	if !ok {
		return c, &tokenError{http.StatusBadRequest, "unauthorized_client", "client " + id + " is not registered"}
	}
	if c.public {
		if hasSecret && secret != "" {
			return c, &tokenError{http.StatusUnauthorized, "invalid_client", "client " + id + " is public: it has no secret"}
		}
		return c, nil
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		return c, &tokenError{http.StatusUnauthorized, "invalid_client", "invalid client secret provided for client " + id}
	}
	return c, nil
}

func (s *Server) clientCredentials(id, secret, scope string) (map[string]any, *tokenError) {
	c, e := s.authClient(id, secret, true)
	if e != nil {
		return nil, e
	}
	if c.public {
		return nil, &tokenError{http.StatusBadRequest, "unauthorized_client", "client " + id + " is public: no client credentials"}
	}
	if scope != s.scope {
		return nil, &tokenError{http.StatusBadRequest, "invalid_scope", "the scope " + scope + " is not valid; this server grants " + s.scope}
	}
	t := s.issue(id, c, c.user, s.scope, 0)
	return map[string]any{
		"token_type":   "Bearer",
		"access_token": t.Value,
		"expires_in":   int(t.Expiry.Sub(t.Issued) / time.Second),
	}, nil
}

// issue makes an access token (s.mu held).
func (s *Server) issue(id string, c client, user, scope string, grant int) *Token {
	life := s.expiresIn
	if c.expiresIn > 0 {
		life = c.expiresIn
	}
	now := time.Now()
	t := &Token{Value: random(), ClientID: id, User: user, Issued: now, Expiry: now.Add(life), Scope: scope, Delegated: grant != 0, grant: grant}
	s.tokens[t.Value] = t
	s.counts.Issued++
	return t
}

func hasScope(scope, want string) bool {
	for _, f := range strings.Fields(scope) {
		if f == want {
			return true
		}
	}
	return false
}

// delegated answers a grant for user: an access token, a refresh token
// (unless rt is "" and keep), and an ID token when the scope has openid.
func (s *Server) delegated(id string, c client, user, scope string, grant int, withRefresh bool) map[string]any {
	t := s.issue(id, c, user, scope, grant)
	answer := map[string]any{
		"token_type":   "Bearer",
		"access_token": t.Value,
		"expires_in":   int(t.Expiry.Sub(t.Issued) / time.Second),
		"scope":        scope,
	}
	if withRefresh {
		rt := &RefreshToken{Value: random(), ClientID: id, User: user, Scope: scope, Issued: time.Now(), grant: grant}
		s.refresh[rt.Value] = rt
		answer["refresh_token"] = rt.Value
	}
	if s.idToken && hasScope(scope, "openid") {
		answer["id_token"] = s.jwt(id, user, t.Issued, t.Expiry)
	}
	return answer
}

// jwt is an unsigned ID token ("alg":"none").
func (s *Server) jwt(aud, user string, iat, exp time.Time) string {
	sub := sha256.Sum256([]byte(strings.ToLower(user)))
	claims := map[string]any{
		"iss": s.URL, "aud": aud, "sub": base64.RawURLEncoding.EncodeToString(sub[:16]),
		"iat": iat.Unix(), "exp": exp.Unix(),
	}
	for _, n := range s.idClaims {
		claims[n] = user
		if n == "email" {
			claims["email_verified"] = true
		}
	}
	head, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	body, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(head) + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

func invalidGrant(desc string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_grant", desc}
}

func (s *Server) authorizationCode(r *http.Request, id, secret string, hasSecret bool) (map[string]any, *tokenError) {
	c, e := s.authClient(id, secret, hasSecret)
	if e != nil {
		return nil, e
	}
	value := r.PostForm.Get("code")
	k, ok := s.codes[value]
	switch {
	case !ok:
		return nil, invalidGrant("the code is unknown")
	case k.used:
		// RFC 6749 §4.1.2: a code used twice revokes what it issued.
		s.revokeGrant(k.grant)
		return nil, invalidGrant("the code was already redeemed; the tokens issued from it are revoked")
	case k.client != id:
		return nil, invalidGrant("the code was issued to another client")
	case !time.Now().Before(k.expires):
		return nil, invalidGrant("the code has expired")
	case r.PostForm.Get("redirect_uri") != k.redirect:
		return nil, invalidGrant("redirect_uri differs from the authorization request's")
	}
	verifier := r.PostForm.Get("code_verifier")
	if !validVerifier(verifier) {
		return nil, invalidGrant("code_verifier is missing or malformed")
	}
	sum := sha256.Sum256([]byte(verifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != k.challenge {
		return nil, invalidGrant("code_verifier does not match the code_challenge")
	}
	k.used = true
	s.lastGrant++
	k.grant = s.lastGrant
	s.counts.CodeGrants++
	return s.delegated(id, c, k.user, k.scope, k.grant, true), nil
}

var verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

func validVerifier(v string) bool { return verifierRE.MatchString(v) }

// revokeGrant revokes every token issued from one sign-in (s.mu held).
func (s *Server) revokeGrant(grant int) {
	if grant == 0 {
		return
	}
	for _, t := range s.tokens {
		if t.grant == grant {
			t.Revoked = true
		}
	}
	for _, rt := range s.refresh {
		if rt.grant == grant {
			rt.Revoked = true
		}
	}
}

func (s *Server) refreshGrant(r *http.Request, id, secret string, hasSecret bool) (map[string]any, *tokenError) {
	c, e := s.authClient(id, secret, hasSecret)
	if e != nil {
		return nil, e
	}
	rt, ok := s.refresh[r.PostForm.Get("refresh_token")]
	switch {
	case !ok:
		return nil, invalidGrant("the refresh token is unknown")
	case rt.ClientID != id:
		return nil, invalidGrant("the refresh token was issued to another client")
	case rt.Revoked:
		return nil, invalidGrant("the refresh token was revoked")
	case rt.Used:
		return nil, invalidGrant("the refresh token was already used and rotated")
	}
	scope := rt.Scope
	if want := r.PostForm.Get("scope"); want != "" {
		for _, f := range strings.Fields(want) {
			if !hasScope(rt.Scope, f) {
				return nil, &tokenError{http.StatusBadRequest, "invalid_scope", "the scope " + f + " was not granted"}
			}
		}
		scope = want
	}
	if s.rotate {
		rt.Used = true
	}
	s.counts.Refreshes++
	return s.delegated(id, c, rt.User, scope, rt.grant, s.rotate), nil
}

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in – oauthfake</title></head>
<body>
<h1>Sign in</h1>
<p id="user">Signed in as <b>{{.User}}</b>.</p>
<p id="client">The application <b>{{.Client}}</b> asks for: <code>{{.Scope}}</code></p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</body></html>
`))

func badRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, "oauthfake: "+msg+"\n")
}

// back redirects to redirect with params (RFC 6749 §4.1.2).
func back(w http.ResponseWriter, r *http.Request, redirect string, params url.Values) {
	u, _ := url.Parse(redirect)
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// authorize shows the consent page of an authorization request.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, redirect := q.Get("client_id"), q.Get("redirect_uri")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[id]; !ok {
		badRequest(w, "client "+id+" is not registered")
		return
	}
	if u, err := url.Parse(redirect); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		badRequest(w, "redirect_uri must be an absolute http(s) URL")
		return
	}
	state := q.Get("state")
	refuse := func(code, desc string) {
		params := url.Values{"error": {code}, "error_description": {desc}}
		if state != "" {
			params.Set("state", state)
		}
		back(w, r, redirect, params)
	}
	switch {
	case q.Get("response_type") != "code":
		refuse("unsupported_response_type", "only response_type=code")
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		refuse("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
		return
	case q.Get("scope") == "":
		refuse("invalid_scope", "scope is required")
		return
	}
	user := s.signIn
	if user == "" {
		user = q.Get("login_hint")
	}
	if user == "" {
		badRequest(w, "nobody to sign in: no login_hint and no SetSignInUser")
		return
	}
	p := &pending{client: id, redirect: redirect, scope: q.Get("scope"), state: state, challenge: q.Get("code_challenge"), user: user}
	req := random()
	s.pending[req] = p
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = consentPage.Execute(w, map[string]string{"User": user, "Client": id, "Scope": p.scope, "Action": r.URL.Path, "Request": req})
}

// consent is the consent page's answer: back to the client with a code or
// access_denied.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		badRequest(w, "the body is not a form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[r.PostForm.Get("request")]
	if !ok {
		badRequest(w, "no such authorization request (answered already?)")
		return
	}
	delete(s.pending, r.PostForm.Get("request"))
	s.counts.Consents++
	params := url.Values{}
	if p.state != "" {
		params.Set("state", p.state)
	}
	if r.PostForm.Get("decision") != "allow" {
		params.Set("error", "access_denied")
		params.Set("error_description", "the user declined")
		back(w, r, p.redirect, params)
		return
	}
	value := random()
	s.codes[value] = &code{pending: *p, expires: time.Now().Add(s.codeTTL)}
	params.Set("code", value)
	back(w, r, p.redirect, params)
}

// userinfo answers the account of a Bearer access token.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Get("Authorization")
	value, ok := strings.CutPrefix(h, "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	t, found := s.tokens[strings.TrimSpace(value)]
	if !ok || !found || t.Revoked || !time.Now().Before(t.Expiry) || !t.Delegated {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	s.counts.Userinfo++
	sub := sha256.Sum256([]byte(strings.ToLower(t.User)))
	writeJSON(w, http.StatusOK, map[string]any{"sub": base64.RawURLEncoding.EncodeToString(sub[:16]), "email": t.User, "email_verified": true})
}

// introspect is the introspection endpoint (the token in the form, as
// Dovecot's introspection_mode post sends it). An inactive token still gets
// a username (the token's, or "" if unknown): Dovecot 2.3 checks the
// username before the active attribute and would take a missing one for an
// internal failure rather than a refused login.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	value := strings.TrimSpace(r.PostForm.Get("token"))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Introspections++
	t, ok := s.tokens[value]
	switch {
	case !ok:
		writeJSON(w, http.StatusOK, map[string]any{"active": false, "username": ""})
		return
	case t.Revoked:
		s.counts.Revoked++
	case !time.Now().Before(t.Expiry):
		s.counts.Expired++
	default:
		s.counts.Active++
		writeJSON(w, http.StatusOK, map[string]any{
			"active":     true,
			"username":   t.User,
			"client_id":  t.ClientID,
			"scope":      t.Scope,
			"token_type": "Bearer",
			"exp":        t.Expiry.Unix(),
			"iat":        t.Issued.Unix(),
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": false, "username": t.User})
}

// Consent drives a consent page the way a browser would, for tests without
// one: it GETs authURL (the URL oauthflow.Begin made) with hc (nil:
// s.Client()), answers Allow or Deny, and returns the redirect back to the
// client (its query has code and state, or error) without following it.
func (s *Server) Consent(ctx context.Context, hc *http.Client, authURL string, allow bool) (*url.URL, error) {
	if hc == nil {
		hc = s.Client()
	}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(req *http.Request) (*http.Response, []byte, error) {
		resp, err := noFollow.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, page, err := do(req)
	if err != nil {
		return nil, fmt.Errorf("opening the consent page: %w", err)
	}
	if resp.StatusCode == http.StatusFound {
		return resp.Location() // refused before consent (error=…)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("opening the consent page: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(page)))
	}
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	a := regexp.MustCompile(`<form method="post" action="([^"]+)"`).FindSubmatch(page)
	if m == nil || a == nil {
		return nil, errors.New("the consent page has no form")
	}
	action, err := resp.Request.URL.Parse(string(a[1]))
	if err != nil {
		return nil, err
	}
	decision := "deny"
	if allow {
		decision = "allow"
	}
	form := url.Values{"request": {string(m[1])}, "decision": {decision}}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, page, err = do(req)
	if err != nil {
		return nil, fmt.Errorf("answering the consent page: %w", err)
	}
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("answering the consent page: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(page)))
	}
	return resp.Location()
}
