// Package xoauth2 is OAuth2 login for generic IMAP and POP3 configurations
// (auth "oauth2"): a SASL XOAUTH2 client (the mechanism Exchange Online and
// Gmail accept; go-sasl has only OAUTHBEARER) and a token source that gets
// app-only access tokens with the client-credentials grant from the
// configuration's tokenUrl, caches them, refreshes them before they expire
// and forgets one the server refused.
//
// Servers check the token at login only: a connection outlives its token,
// and each new login asks the token source, which hands out a fresh one when
// the cached one is due.
//
// The client secret and the access tokens are secrets: they are never
// logged and never part of an error's text.
package xoauth2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
)

// Mechanism is the SASL mechanism name.
const Mechanism = "XOAUTH2"

// StepToken is the step a *source.StepError names when getting a token
// failed.
const StepToken = "token"

// DefaultScope is the scope asked for when the configuration has none: IMAP
// and POP access to Exchange Online mailboxes.
const DefaultScope = imapconf.DefaultOAuth2Scope

// Defaults of Options.
const (
	// DefaultTimeout bounds one request to the token endpoint.
	DefaultTimeout = 30 * time.Second
	// MaxMargin is how long before its expiry a token is replaced at the
	// most; tokens living less than ten times that are replaced when a
	// tenth of their lifetime is left.
	MaxMargin = time.Minute
)

// NewClient returns a SASL XOAUTH2 client that logs in as user with the
// access token. Its initial response is
// "user=" user "\x01auth=Bearer " token "\x01\x01". A server that refuses
// the token sends a challenge holding a JSON error instead of failing at
// once; the client answers it with an empty response, as the mechanism
// asks, and the server then fails the exchange.
func NewClient(user, token string) *Client {
	return &Client{user: user, token: token}
}

// Client is a SASL XOAUTH2 client (a sasl.Client).
type Client struct {
	user, token string
	// failure is the server's JSON error challenge, if it sent one.
	failure string
}

var _ sasl.Client = (*Client)(nil)

// Start returns the mechanism and the initial response.
func (c *Client) Start() (mech string, ir []byte, err error) {
	if c.user == "" || c.token == "" {
		return "", nil, errors.New("xoauth2: no user name or no token")
	}
	if strings.ContainsAny(c.user+c.token, "\x01\r\n") {
		return "", nil, errors.New("xoauth2: user name or token contains a control character")
	}
	return Mechanism, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next answers a challenge. The only challenge XOAUTH2 knows is the
// server's error (a JSON object such as {"status":"401","schemes":"bearer"}):
// it is answered with an empty response, after which the server fails the
// login.
func (c *Client) Next(challenge []byte) ([]byte, error) {
	c.failure = describeFailure(challenge)
	return []byte{}, nil
}

// Failure returns what the server's error challenge said, empty if it sent
// none.
func (c *Client) Failure() string { return c.failure }

// describeFailure turns the server's JSON error challenge into text: its
// status and scope, or the challenge itself, shortened, when it is not JSON.
func describeFailure(challenge []byte) string {
	var e struct {
		Status  string `json:"status"`
		Schemes string `json:"schemes"`
		Scope   string `json:"scope"`
	}
	if json.Unmarshal(challenge, &e) == nil && e.Status != "" {
		s := "server rejected the token (status " + e.Status
		if e.Scope != "" {
			s += ", scope " + e.Scope
		}
		return s + ")"
	}
	s := strings.ToValidUTF8(string(challenge), "?")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return "server rejected the token: " + s
}

// Options are the knobs of a TokenSource that are not part of the
// configuration. The zero value is ready to use.
type Options struct {
	// Logger receives a record of each token fetched (its expiry, never
	// the token). Nil discards them.
	Logger *slog.Logger
	// Client is the HTTP client for the token endpoint; nil builds one that
	// trusts the system's roots plus the configuration's caCert.
	Client *http.Client
	// Dial opens the connections of the client built when Client is nil;
	// nil uses http.DefaultTransport's dialer. The service passes its
	// egress policy's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds one token request. Zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// TokenSource hands out access tokens for one configuration, fetching a new
// one only when none is cached, the cached one is due for renewal, or it
// was invalidated. It is safe for concurrent use.
type TokenSource struct {
	cc      clientcredentials.Config
	hc      *http.Client
	log     *slog.Logger
	timeout time.Duration
	now     func() time.Time
	secret  string

	mu      sync.Mutex
	tok     *oauth2.Token
	renewAt time.Time // zero: no expiry known, keep until invalidated
	// seen are the tokens handed out, for redaction (the last few).
	seen []string
}

// maxRemembered bounds the tokens a TokenSource remembers for redaction.
const maxRemembered = 4

// NewTokenSource returns the token source of cfg, an oauth2 configuration:
// tokens from cfg.TokenURL for cfg.ClientID and cfg.ClientSecret with scope
// cfg.Scope (DefaultScope when empty). It does not talk to the endpoint.
func NewTokenSource(cfg imapconf.Config, opts Options) (*TokenSource, error) {
	if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, &source.StepError{Step: StepToken, Err: errors.New("tokenUrl, clientId and clientSecret are required for oauth2")}
	}
	scope := cfg.Scope
	if scope == "" {
		scope = DefaultScope
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	hc := opts.Client
	if hc == nil {
		tr, err := source.HTTPTransport(cfg.CACert, opts.Dial)
		if err != nil {
			return nil, &source.StepError{Step: StepToken, Err: err}
		}
		hc = &http.Client{Transport: tr, Timeout: timeout}
	}
	return &TokenSource{
		cc: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     cfg.TokenURL,
			Scopes:       strings.Fields(scope),
			AuthStyle:    oauth2.AuthStyleInParams,
		},
		hc:      hc,
		log:     log,
		timeout: timeout,
		now:     now,
		secret:  cfg.ClientSecret,
	}, nil
}

// Token returns the cached access token, or a new one when none is cached
// or the cached one is due: within a tenth of its lifetime of expiring, but
// no more than MaxMargin. The error is a *source.StepError of StepToken; it
// matches source.ErrAuth when the endpoint refused the credentials
// (invalid_client and the like), and carries the endpoint's error and
// error_description, never the secret.
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	if ts.tok != nil && (ts.renewAt.IsZero() || now.Before(ts.renewAt)) {
		return ts.tok.AccessToken, nil
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, ts.hc), ts.timeout)
	defer cancel()
	tok, err := ts.cc.Token(ctx)
	if err != nil {
		err = source.RedactError(&source.StepError{Step: StepToken, Err: tokenError(err)},
			[]error{source.ErrAuth}, ts.secret)
		return "", err
	}
	if tok.AccessToken == "" {
		return "", &source.StepError{Step: StepToken, Err: errors.New("the token endpoint answered without an access token")}
	}
	ts.tok = tok
	ts.renewAt = time.Time{}
	if !tok.Expiry.IsZero() {
		// oauth2 sets Expiry from expires_in at the time of the answer
		// (by the real clock); the lifetime is measured on it.
		life := time.Until(tok.Expiry)
		margin := min(life/10, MaxMargin)
		ts.renewAt = now.Add(life - margin)
	}
	ts.seen = append(ts.seen, tok.AccessToken)
	if len(ts.seen) > maxRemembered {
		ts.seen = ts.seen[len(ts.seen)-maxRemembered:]
	}
	ts.log.Info("oauth2: got an access token", "token_url", ts.cc.TokenURL, "expires", tok.Expiry.Round(time.Second))
	return tok.AccessToken, nil
}

// Invalidate forgets the cached token, so that the next Token fetches a new
// one. Call it when the server refused a login with it (expired or
// revoked).
func (ts *TokenSource) Invalidate() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.tok = nil
}

// SASL returns a SASL client for the login of cfg: XOAUTH2 as cfg.Username
// with the current token. It fits the SASL hook of imapsource.Options and
// pop3source.Options.
func (ts *TokenSource) SASL(ctx context.Context, cfg imapconf.Config) (sasl.Client, error) {
	tok, err := ts.Token(ctx)
	if err != nil {
		return nil, err
	}
	return NewClient(cfg.Username, tok), nil
}

// RedactError returns err with the client secret and the tokens handed out
// replaced (see source.RedactError), still matching the sentinels in keep
// it matched.
func (ts *TokenSource) RedactError(err error, keep ...error) error {
	ts.mu.Lock()
	secrets := append([]string{ts.secret}, ts.seen...)
	ts.mu.Unlock()
	return source.RedactError(err, keep, secrets...)
}

// Redact returns msg with the client secret and the tokens handed out
// replaced.
func (ts *TokenSource) Redact(msg string) string {
	ts.mu.Lock()
	secrets := append([]string{ts.secret}, ts.seen...)
	ts.mu.Unlock()
	msg, _ = source.Redact(msg, secrets...)
	return msg
}

// EndpointError is an error answer of the token endpoint.
type EndpointError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the endpoint's error (invalid_client, invalid_scope…).
	Code string
	// Description is its error_description, or, when it sent no OAuth2
	// error, what kind of answer it was (its Content-Type, never its body).
	Description string
}

// Error returns "token endpoint answered HTTP status: code: description".
func (e *EndpointError) Error() string {
	s := fmt.Sprintf("token endpoint answered HTTP %d", e.Status)
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// tokenError turns the oauth2 package's error into an *EndpointError,
// matching source.ErrAuth when the credentials were refused.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("requesting a token: %w", err)
	}
	ee := &EndpointError{Code: re.ErrorCode, Description: re.ErrorDescription}
	if re.Response != nil {
		ee.Status = re.Response.StatusCode
	}
	// Microsoft appends trace and correlation ids on further lines.
	if i := strings.Index(ee.Description, " Trace ID:"); i > 0 {
		ee.Description = ee.Description[:i]
	}
	ee.Description = strings.TrimSpace(strings.SplitN(ee.Description, "\n", 2)[0])
	if ee.Code == "" {
		// Not an OAuth2 error: whatever answered is described, never
		// quoted (test connection must not read out other servers).
		ee.Description = source.NotOAuth2(re.Response)
	}
	switch ee.Code {
	case "invalid_client", "unauthorized_client", "invalid_request", "invalid_grant", "invalid_scope", "access_denied":
		return fmt.Errorf("%w: %w", source.ErrAuth, ee)
	}
	return ee
}
