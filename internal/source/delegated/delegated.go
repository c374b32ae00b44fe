// Package delegated is the token source of oauth2-delegated configurations
// (issue 17): the access tokens of the user who signed in, from the grant
// the store keeps (store.OAuthGrant), renewed with the refresh token through
// oauthflow.Refresh before they expire. It serves the SASL XOAUTH2 login of
// IMAP and POP3 (xoauth2.NewClient) and the bearer token of Microsoft Graph.
//
// Access tokens are cached in memory (per watcher) and in the grant's row;
// a renewal goes through store.RenewOAuthGrant, which lets one replica (one
// goroutine) renew at a time and stores a rotated refresh token before it
// returns; the others find the grant renewed and use it without asking the
// provider. A refresh refused with invalid_grant (revoked, password changed,
// consent withdrawn) marks the grant broken: nobody asks the provider again
// until the user signs in again.
//
// Tokens are secrets: never logged and never part of an error's text.
package delegated

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/store"
)

// StepToken is the step a *source.StepError names when getting a token
// failed.
const StepToken = xoauth2.StepToken

// MaxMargin is how long before its expiry an access token is renewed at
// the most; tokens living less than ten times that are renewed when a
// tenth of their lifetime is left.
const MaxMargin = 5 * time.Minute

// DefaultTimeout bounds one renewal (the provider's token endpoint).
const DefaultTimeout = 30 * time.Second

// Messages of the auth errors (the watcher shows them as the last error of
// an auth_failed mailbox).
const (
	MsgNoGrant = "nobody signed in yet: sign in from the mailbox's card"
	MsgBroken  = "sign-in expired or revoked (invalid_grant): sign in again"
)

var (
	// ErrNoGrant is matched by the error of Token when nobody signed in
	// for the configuration (or the sign-in was forgotten).
	ErrNoGrant = errors.New(MsgNoGrant)
	// ErrBroken is matched by the error of Token when the provider refused
	// the grant (invalid_grant), now or before.
	ErrBroken = errors.New(MsgBroken)
)

// authError is a failure only a new sign-in mends: it matches
// source.ErrAuth (the watcher's auth_failed) and its sentinel, and reads as
// the sentinel alone.
type authError struct{ sentinel error }

func (e *authError) Error() string { return e.sentinel.Error() }

func (e *authError) Is(target error) bool {
	return target == source.ErrAuth || target == e.sentinel ||
		(e.sentinel == ErrBroken && target == oauthflow.ErrInvalidGrant)
}

func authFailed(sentinel error) error {
	return &source.StepError{Step: StepToken, Err: &authError{sentinel: sentinel}}
}

// Grants is the store's grant keeping that a TokenSource needs
// (*store.Store has it).
type Grants interface {
	GetOAuthGrant(ctx context.Context, imapID int64) (store.OAuthGrant, error)
	RenewOAuthGrant(ctx context.Context, imapID int64, renew func(g store.OAuthGrant) (store.OAuthGrant, error)) (store.OAuthGrant, error)
	MarkOAuthGrantBroken(ctx context.Context, imapID int64, why string) error
}

// RefreshFunc renews an access token with a refresh token (oauthflow.Refresh).
type RefreshFunc func(ctx context.Context, hc *http.Client, c imapconf.Config, refreshToken string) (oauthflow.Grant, error)

// Options are the knobs of a TokenSource that are not part of the
// configuration.
type Options struct {
	// Logger receives a record of each renewal (the expiry, never a
	// token). Nil discards them.
	Logger *slog.Logger
	// Client is the HTTP client for the token endpoint; nil builds one
	// that trusts the system's roots plus the configuration's caCert and
	// connects with Dial.
	Client *http.Client
	// Dial opens the connections of the client built when Client is nil
	// (the service passes its egress policy's); nil: the defaults.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds one renewal. Zero means DefaultTimeout.
	Timeout time.Duration
	// Refresh renews a token; nil means oauthflow.Refresh.
	Refresh RefreshFunc
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TokenSource hands out the access tokens of one oauth2-delegated
// configuration. It is safe for concurrent use.
type TokenSource struct {
	cfg     imapconf.Config
	grants  Grants
	hc      *http.Client
	refresh RefreshFunc
	log     *slog.Logger
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	tok     string
	expiry  time.Time // zero: none known
	life    time.Duration
	refused string // a token a server refused: renewed even if not due
	// seen are the tokens handed out, for redaction (the last few).
	seen []string
}

const maxRemembered = 4

// New returns the token source of cfg, an oauth2-delegated configuration
// whose grant grants keeps. It talks to nothing yet.
func New(cfg imapconf.Config, grants Grants, opts Options) (*TokenSource, error) {
	if grants == nil {
		return nil, &source.StepError{Step: StepToken, Err: errors.New("no grant store for oauth2-delegated sign-ins")}
	}
	ts := &TokenSource{cfg: cfg, grants: grants, hc: opts.Client, refresh: opts.Refresh, log: opts.Logger,
		timeout: opts.Timeout, now: opts.Now}
	if ts.log == nil {
		ts.log = slog.New(slog.DiscardHandler)
	}
	if ts.timeout <= 0 {
		ts.timeout = DefaultTimeout
	}
	if ts.now == nil {
		ts.now = time.Now
	}
	if ts.refresh == nil {
		ts.refresh = oauthflow.Refresh
	}
	if ts.hc == nil {
		tr, err := source.HTTPTransport(cfg.CACert, opts.Dial)
		if err != nil {
			return nil, &source.StepError{Step: StepToken, Err: err}
		}
		ts.hc = &http.Client{Transport: tr, Timeout: ts.timeout}
	}
	return ts, nil
}

// margin is how long before expiry a token living life is renewed.
func margin(life time.Duration) time.Duration { return min(life/10, MaxMargin) }

// due reports whether a token expiring at expiry must be renewed at now.
// life is its lifetime when known; 0 takes it to be what is left (a token
// first seen, which another replica may just have renewed), so that such a
// token is used until it expires, unless a lifetime was learnt since.
func due(expiry, now time.Time, life time.Duration) bool {
	if expiry.IsZero() {
		return false // no expiry known: kept until a server refuses it
	}
	left := expiry.Sub(now)
	if life <= 0 {
		life = left
	}
	return left <= margin(life)
}

// Token returns an access token: the cached one while it is not due, else
// the grant's, renewed first when due. The error is a *source.StepError of
// StepToken; it matches source.ErrAuth and ErrNoGrant when nobody signed
// in, and source.ErrAuth, ErrBroken and oauthflow.ErrInvalidGrant when the
// provider refused the grant (now, when the grant is marked broken, or
// before). It never holds a token.
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	if ts.tok != "" && ts.tok != ts.refused && !due(ts.expiry, now, ts.life) {
		return ts.tok, nil
	}
	g, err := ts.grants.GetOAuthGrant(ctx, ts.cfg.ID)
	if err != nil {
		return "", ts.storeError(err)
	}
	if g.Broken != "" {
		return "", authFailed(ErrBroken)
	}
	life := time.Duration(0)
	if ts.needs(g, now) {
		if g, life, err = ts.renew(ctx); err != nil {
			return "", err
		}
	}
	ts.take(g, now, life)
	return g.AccessToken, nil
}

// needs reports whether grant g's access token must be renewed at now.
// ts.mu is held.
func (ts *TokenSource) needs(g store.OAuthGrant, now time.Time) bool {
	if g.AccessToken == "" || g.AccessToken == ts.refused {
		return true
	}
	life := time.Duration(0)
	if g.AccessToken == ts.tok {
		life = ts.life
	}
	return due(g.AccessExpiry, now, life)
}

// take caches g's access token, whose lifetime is life when this source
// renewed it (0: unknown). ts.mu is held.
func (ts *TokenSource) take(g store.OAuthGrant, now time.Time, life time.Duration) {
	if g.AccessToken == ts.tok {
		return
	}
	if life <= 0 {
		life = g.AccessExpiry.Sub(now)
	}
	ts.tok, ts.expiry, ts.life = g.AccessToken, g.AccessExpiry, life
	ts.seen = append(ts.seen, g.AccessToken)
	if len(ts.seen) > maxRemembered {
		ts.seen = ts.seen[len(ts.seen)-maxRemembered:]
	}
}

// renew renews the grant's access token under the store's lock, unless
// whoever held the lock before renewed it already. It returns the grant as
// stored and the new token's lifetime (0 when it was not renewed here).
// ts.mu is held.
func (ts *TokenSource) renew(ctx context.Context) (store.OAuthGrant, time.Duration, error) {
	var life time.Duration
	var refreshErr error
	used := "" // the refresh token of a failed refresh, for redaction
	g, err := ts.grants.RenewOAuthGrant(ctx, ts.cfg.ID, func(cur store.OAuthGrant) (store.OAuthGrant, error) {
		now := ts.now()
		if cur.Broken != "" {
			return cur, authFailed(ErrBroken)
		}
		if !ts.needs(cur, now) {
			return cur, nil // renewed by another replica or goroutine
		}
		if cur.RefreshToken == "" {
			refreshErr = &refusedError{errors.New("the sign-in left no refresh token (was offline access granted?): sign in again")}
			return cur, refreshErr
		}
		// A refresh once sent is seen through (up to its timeout), even
		// when the watcher is stopping: a provider that rotates refresh
		// tokens may have invalidated cur's already, and only its answer,
		// stored below, keeps the mailbox signed in.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ts.timeout)
		defer cancel()
		ng, err := ts.refresh(rctx, ts.hc, ts.cfg, cur.RefreshToken)
		if err == nil && ng.AccessToken == "" {
			err = errors.New("the token endpoint answered without an access token")
		}
		if err != nil {
			refreshErr, used = err, cur.RefreshToken
			return cur, refreshErr
		}
		cur.AccessToken, cur.AccessExpiry = ng.AccessToken, ng.Expiry
		if ng.RefreshToken != "" {
			cur.RefreshToken = ng.RefreshToken
		}
		if !ng.Expiry.IsZero() {
			life = ng.Expiry.Sub(now)
		}
		ts.log.Info("oauth2-delegated: renewed the access token", "expires", ng.Expiry.Round(time.Second),
			"refresh_token_rotated", ng.RefreshToken != "")
		return cur, nil
	})
	switch {
	case err == nil:
		return g, life, nil
	case refreshErr == nil && errors.Is(err, ErrBroken):
		return g, 0, authFailed(ErrBroken)
	case refreshErr == nil:
		return g, 0, ts.storeError(err)
	case errors.Is(refreshErr, oauthflow.ErrInvalidGrant):
		ts.log.Warn("oauth2-delegated: the provider refused the grant (invalid_grant); the user must sign in again")
		if merr := ts.grants.MarkOAuthGrantBroken(context.WithoutCancel(ctx), ts.cfg.ID, MsgBroken); merr != nil {
			ts.log.Error("oauth2-delegated: marking the grant broken", "err", merr)
		}
		return g, 0, authFailed(ErrBroken)
	}
	err = refreshErr
	if pe := (*oauthflow.ProviderError)(nil); errors.As(err, &pe) && refusedCredentials(pe.Code) && !errors.Is(err, source.ErrAuth) {
		err = &refusedError{err}
	}
	return g, 0, source.RedactError(&source.StepError{Step: StepToken, Err: err}, []error{source.ErrAuth},
		append(ts.secretsLocked(), used)...)
}

// refusedCredentials reports whether an OAuth2 error code means the
// provider refused the client or what it asked for: only a change of the
// configuration (or a new sign-in) helps.
func refusedCredentials(code string) bool {
	switch code {
	case "invalid_client", "unauthorized_client", "invalid_scope", "access_denied", "invalid_request":
		return true
	}
	return false
}

// refusedError is an error of the provider that matches source.ErrAuth.
type refusedError struct{ err error }

func (e *refusedError) Error() string        { return e.err.Error() }
func (e *refusedError) Unwrap() error        { return e.err }
func (e *refusedError) Is(target error) bool { return target == source.ErrAuth }

// storeError is the error of reading the grant from the store, or of
// storing its renewal.
func (ts *TokenSource) storeError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return authFailed(ErrNoGrant)
	}
	return &source.StepError{Step: StepToken, Err: fmt.Errorf("using the stored sign-in: %w", err)}
}

// Invalidate makes the next Token renew the token handed out last, even if
// it is not due. Call it when a server refused a login with it.
func (ts *TokenSource) Invalidate() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.refused = ts.tok
}

// SASL returns a SASL client for the login of cfg: XOAUTH2 as cfg.Username
// with the current token. It fits the SASL hook of imapsource.Options and
// pop3source.Options.
func (ts *TokenSource) SASL(ctx context.Context, cfg imapconf.Config) (sasl.Client, error) {
	tok, err := ts.Token(ctx)
	if err != nil {
		return nil, err
	}
	return xoauth2.NewClient(cfg.Username, tok), nil
}

// secrets are the client secret and the tokens handed out.
func (ts *TokenSource) secrets() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.secretsLocked()
}

// secretsLocked is secrets with ts.mu held.
func (ts *TokenSource) secretsLocked() []string {
	return append([]string{ts.cfg.ClientSecret}, ts.seen...)
}

// RedactError returns err with the client secret and the tokens handed out
// replaced (see source.RedactError), still matching the sentinels in keep
// it matched.
func (ts *TokenSource) RedactError(err error, keep ...error) error {
	return source.RedactError(err, keep, ts.secrets()...)
}

// Redact returns msg with the client secret and the tokens handed out
// replaced.
func (ts *TokenSource) Redact(msg string) string {
	msg, _ = source.Redact(msg, ts.secrets()...)
	return msg
}
