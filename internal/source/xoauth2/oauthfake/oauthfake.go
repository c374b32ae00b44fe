// Package oauthfake is an in-process OAuth2 authorization server for tests
// of XOAUTH2 logins: a client-credentials token endpoint (RFC 6749 §4.4)
// that issues random opaque access tokens with a configurable expires_in,
// and a token introspection endpoint (RFC 7662) for the mail server to ask
// whether a token is good — the private Dovecot's oauth2 passdb calls it on
// every login (testenv.DovecotOAuth2).
//
// Each registered client is an app allowed into one mailbox, as an Entra
// app given FullAccess to a mailbox in Exchange Online: introspection
// reports a token's mailbox as its username. Tokens can be revoked; expired
// and revoked tokens are inactive. Counters tell tests how many tokens were
// issued and whether an expired one was ever presented.
//
// It serves plain HTTP on 127.0.0.1 (configurations accept http:// token
// URLs on loopback only).
package oauthfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Scope is the scope the token endpoint grants unless SetScope changes it.
const Scope = "https://outlook.office365.com/.default"

// Paths of the endpoints below URL.
const (
	TokenPath      = "/oauth2/v2.0/token"
	IntrospectPath = "/introspect"
)

// Token is an access token the server issued.
type Token struct {
	Value    string
	ClientID string
	User     string // the mailbox it opens
	Issued   time.Time
	Expiry   time.Time
	Revoked  bool
}

// Counts are the server's counters.
type Counts struct {
	// Issued is the number of tokens issued; TokenErrors the token
	// requests refused.
	Issued, TokenErrors int
	// Introspections is the number of introspection requests; Active how
	// many found the token active; Expired how many presented a token
	// that had expired (a client that should have refreshed first), and
	// Revoked one that was revoked.
	Introspections, Active, Expired, Revoked int
}

type client struct {
	secret, user string
	expiresIn    time.Duration // zero: the server's
}

// Server is the fake. Use its methods to change it while it runs.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	clients   map[string]client
	scope     string
	expiresIn time.Duration
	tokens    map[string]*Token
	counts    Counts
}

// New starts a server on 127.0.0.1 and closes it when the test ends. Its
// tokens live an hour until SetExpiresIn changes it.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{clients: map[string]client{}, scope: Scope, expiresIn: time.Hour, tokens: map[string]*Token{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("POST "+IntrospectPath, s.introspect)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// TokenURL is the URL of the token endpoint, for a configuration's tokenUrl.
func (s *Server) TokenURL() string { return s.URL + TokenPath }

// IntrospectionURL is the URL of the introspection endpoint, for Dovecot.
func (s *Server) IntrospectionURL() string { return s.URL + IntrospectPath }

// AddClient registers a client id and secret whose tokens open user's
// mailbox.
func (s *Server) AddClient(id, secret, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = client{secret: secret, user: user}
}

// SetScope sets the one scope the token endpoint grants.
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

// RevokeClient revokes every token issued so far to client id.
func (s *Server) RevokeClient(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.ClientID == id {
			t.Revoked = true
		}
	}
}

// ClientTokens returns the tokens issued to client id, oldest first.
func (s *Server) ClientTokens(id string) []Token {
	var out []Token
	for _, t := range s.Tokens() {
		if t.ClientID == id {
			out = append(out, t)
		}
	}
	return out
}

// RevokeAll revokes every token issued so far.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.Revoked = true
	}
}

// Revoke revokes one token.
func (s *Server) Revoke(value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[value]; ok {
		t.Revoked = true
	}
}

// Tokens returns the tokens issued, oldest first.
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

// token is the client-credentials token endpoint. The client authenticates
// with client_id and client_secret in the form or with HTTP Basic.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the body is not a form"})
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(status int, code, desc string) {
		s.counts.TokenErrors++
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	c, ok := s.clients[id]
	if !ok {
		fail(http.StatusBadRequest, "unauthorized_client", "client "+id+" is not registered")
		return
	}
	if secret != c.secret {
		fail(http.StatusUnauthorized, "invalid_client", "invalid client secret provided for client "+id)
		return
	}
	if scope := r.PostForm.Get("scope"); scope != s.scope {
		fail(http.StatusBadRequest, "invalid_scope", "the scope "+scope+" is not valid; this server grants "+s.scope)
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	life := s.expiresIn
	if c.expiresIn > 0 {
		life = c.expiresIn
	}
	now := time.Now()
	t := &Token{Value: base64.RawURLEncoding.EncodeToString(b), ClientID: id, User: c.user, Issued: now, Expiry: now.Add(life)}
	s.tokens[t.Value] = t
	s.counts.Issued++
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":   "Bearer",
		"access_token": t.Value,
		"expires_in":   int(life / time.Second),
	})
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
			"scope":      s.scope,
			"token_type": "Bearer",
			"exp":        t.Expiry.Unix(),
			"iat":        t.Issued.Unix(),
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": false, "username": t.User})
}
