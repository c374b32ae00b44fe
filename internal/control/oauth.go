package control

// Delegated OAuth2 sign-in (issue 17), once for the REST API and the web
// UI: a sign-in is started (a one-time state bound to the user who started
// it), completed by the provider's redirect to the web callback (the code
// exchanged, the account checked against the configured user name, the
// grant stored), or forgotten (sign out).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"mailtrigger/internal/clientip"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// APIUser is the user id a sign-in started with an API token is bound to:
// API tokens belong to no user, so any user logged in to the web UI may
// complete it (the account must still be the configured user name).
const APIUser int64 = 0

// SignInError is a sign-in that could not be completed, with the message
// to show the user (it never holds a code, token, verifier or secret).
type SignInError struct {
	// IMAP is the configuration's name when the state named one.
	IMAP string
	Msg  string
	Err  error
}

func (e *SignInError) Error() string { return e.Msg }
func (e *SignInError) Unwrap() error { return e.Err }

// notDelegated is the error of a sign-in asked for a configuration that
// does not sign in.
func notDelegated(c imapconf.Config) error {
	auth := c.Auth
	if auth == "" {
		auth = "app-only client credentials"
	}
	return valid.Errors{"auth": "must be " + imapconf.AuthOAuth2Delegated + " to sign in (it is " + auth + ")"}
}

// StartSignIn begins a sign-in to c for user (a web session's user id, or
// APIUser) with redirectURI, the callback URL registered at the provider:
// it records the one-time state and returns the URL to open. A
// configuration that is not oauth2-delegated is a valid.Errors naming auth.
func (c *Changes) StartSignIn(ctx context.Context, by string, conf imapconf.Config, user int64, redirectURI string) (oauthflow.Start, error) {
	if conf.Auth != imapconf.AuthOAuth2Delegated {
		return oauthflow.Start{}, notDelegated(conf)
	}
	start, err := oauthflow.Begin(conf, redirectURI, time.Now())
	if err != nil {
		return oauthflow.Start{}, fmt.Errorf("starting the sign-in of %s: %w", conf.Name, err)
	}
	if err := c.store.CreateOAuthState(ctx, store.OAuthState{State: start.State, IMAPID: conf.ID, UserID: user,
		Verifier: start.Verifier, RedirectURI: redirectURI, ExpiresAt: start.Expires}); err != nil {
		return oauthflow.Start{}, fmt.Errorf("recording the sign-in of %s: %w", conf.Name, err)
	}
	c.logAs(by, "oauth sign-in started", "imap", conf.Name, "provider", conf.Provider, "redirect_uri", redirectURI)
	return start, nil
}

// Callback is what the provider sent back to the callback URL.
type Callback struct {
	State string
	Code  string
	// Error and ErrorDescription are the provider's refusal
	// (access_denied: the user did not consent).
	Error, ErrorDescription string
}

// afterTakeState, when set (tests), runs between the sign-in state taken
// and the configuration read.
var afterTakeState func()

// CompleteSignIn completes the sign-in of cb.State for user (the logged-in
// web user's id): the state is taken (once), the code exchanged at the
// configuration's token endpoint with hc (the service's egress policy),
// and the grant stored when the account that signed in is the configured
// user name. The watcher is then told. Every failure is a *SignInError
// and stores nothing.
func (c *Changes) CompleteSignIn(ctx context.Context, by string, user int64, cb Callback, hc *http.Client) (imapconf.Config, oauthflow.Grant, error) {
	fail := func(name, msg string, err error) (imapconf.Config, oauthflow.Grant, error) {
		c.logAs(by, "oauth sign-in failed", "imap", name, "err", msg)
		return imapconf.Config{}, oauthflow.Grant{}, &SignInError{IMAP: name, Msg: msg, Err: err}
	}
	if cb.State == "" {
		return fail("", "the sign-in answer has no state: start the sign-in again from the IMAP page", store.ErrStateInvalid)
	}
	now := time.Now()
	st, err := c.store.TakeOAuthState(ctx, cb.State, now)
	if errors.Is(err, store.ErrStateInvalid) {
		return fail("", store.ErrStateInvalid.Error(), err)
	}
	if err != nil {
		return imapconf.Config{}, oauthflow.Grant{}, fmt.Errorf("taking the sign-in state: %w", err)
	}
	if afterTakeState != nil {
		afterTakeState()
	}
	conf, err := c.imapByID(ctx, st.IMAPID)
	if errors.Is(err, store.ErrNotFound) {
		return fail("", "the configuration of this sign-in was deleted", err)
	}
	if err != nil && !store.OnlySecret(err) {
		return imapconf.Config{}, oauthflow.Grant{}, err
	}
	if !conf.UpdatedAt.Equal(st.ConfigUpdatedAt) {
		// Edited between the state taken and the configuration read: its
		// token endpoint may no longer be the one the sign-in began with.
		return fail(conf.Name, "the configuration was changed while its sign-in was being completed: nothing was sent or stored; start the sign-in again", store.ErrStateInvalid)
	}
	if st.UserID != APIUser && st.UserID != user {
		return fail(conf.Name, "this sign-in was started by another user: start it again yourself", store.ErrStateInvalid)
	}
	if cb.Error != "" {
		pe := &oauthflow.ProviderError{Code: clip(cb.Error, 100), Description: clip(cb.ErrorDescription, 500)}
		msg := pe.Error()
		if cb.Error == "access_denied" {
			msg = "the sign-in was refused at the provider (access_denied): nothing was stored. " +
				"Sign in again and allow mailtrigger to read the mailbox."
			if pe.Description != "" {
				msg += " The provider said: " + pe.Description
			}
		}
		return fail(conf.Name, msg, pe)
	}
	if conf.Auth != imapconf.AuthOAuth2Delegated {
		return fail(conf.Name, conf.Name+" no longer signs in with oauth2-delegated: nothing was stored", notDelegated(conf))
	}
	if cb.Code == "" {
		return fail(conf.Name, "the provider sent no code: start the sign-in again", nil)
	}
	g, err := oauthflow.Exchange(ctx, hc, conf, st.RedirectURI, cb.Code, st.Verifier)
	if err != nil {
		var pe *oauthflow.ProviderError
		switch {
		case errors.Is(err, oauthflow.ErrInvalidGrant):
			return fail(conf.Name, "the provider refused the code (invalid_grant: expired, already used or for another client): sign in again", err)
		case errors.As(err, &pe):
			return fail(conf.Name, "the provider's token endpoint refused the sign-in: "+pe.Error(), err)
		}
		return fail(conf.Name, "the code could not be exchanged for tokens: "+err.Error(), err)
	}
	if g.Account == "" {
		return fail(conf.Name, "the provider did not say which account signed in (no e-mail in the ID token or userinfo): nothing was stored", nil)
	}
	if !sameAccount(g.Account, conf.Username) {
		return fail(conf.Name, fmt.Sprintf("signed in as %s but the configuration's username is %s: sign in with %s or change the username",
			g.Account, conf.Username, conf.Username), nil)
	}
	if g.RefreshToken == "" {
		return fail(conf.Name, "the provider gave no refresh token, so mailtrigger could not keep reading: "+
			"check that the scopes ask for offline access and sign in again", nil)
	}
	// Stored only while the configuration has the destination the code
	// was exchanged for: an edit during the exchange wins.
	err = c.store.SaveOAuthGrantFor(ctx, store.OAuthGrant{IMAPID: conf.ID, Account: g.Account, RefreshToken: g.RefreshToken,
		AccessToken: g.AccessToken, AccessExpiry: g.Expiry, SignedInAt: now}, conf)
	switch {
	case errors.Is(err, store.ErrConflict):
		return fail(conf.Name, "the configuration's server or sign-in settings changed during the sign-in: nothing was stored; sign in again", err)
	case errors.Is(err, store.ErrNotFound):
		return fail(conf.Name, "the configuration of this sign-in was deleted", err)
	case err != nil:
		return imapconf.Config{}, oauthflow.Grant{}, fmt.Errorf("storing the sign-in of %s: %w", conf.Name, err)
	}
	c.logAs(by, "oauth sign-in completed", "imap", conf.Name, "account", g.Account)
	// Saving the grant moved the configuration's UpdatedAt: the watchers
	// restart it with the new grant, as after an edit.
	c.rt.Changed(ctx)
	return conf, g, nil
}

// SignOut forgets the grant of conf: the mailbox is no longer read until
// someone signs in again.
func (c *Changes) SignOut(ctx context.Context, by string, conf imapconf.Config) error {
	if conf.Auth != imapconf.AuthOAuth2Delegated {
		return notDelegated(conf)
	}
	if err := c.store.DeleteOAuthGrant(ctx, conf.ID); err != nil {
		return err
	}
	c.logAs(by, "oauth sign-in forgotten", "imap", conf.Name)
	c.rt.Changed(ctx)
	return nil
}

// imapByID finds the configuration with id (a sign-in's state names it by
// id, which survives a rename).
func (c *Changes) imapByID(ctx context.Context, id int64) (imapconf.Config, error) {
	after := ""
	for {
		cs, err := c.store.ListIMAP(ctx, after, 500)
		if err != nil {
			return imapconf.Config{}, err
		}
		for _, conf := range cs {
			if conf.ID == id {
				// Read it alone, so that a secret that does not open
				// is reported as GetIMAP reports it.
				return c.store.GetIMAP(ctx, conf.Name)
			}
		}
		if len(cs) < 500 {
			return imapconf.Config{}, fmt.Errorf("imap configuration %d: %w", id, store.ErrNotFound)
		}
		after = cs[len(cs)-1].Name
	}
}

// sameAccount reports whether account (the provider's) is the user name
// configured: equal but for the case of ASCII letters. Unicode case folding
// is not applied: it makes look-alikes equal (the Kelvin sign K folds to k).
func sameAccount(account, username string) bool {
	if len(account) != len(username) {
		return false
	}
	for i := 0; i < len(account); i++ {
		a, b := account[i], username[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// clip is s, from the query of a redirect anyone can craft, cut to n runes
// and without control characters.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// SignIns returns who signed in to each oauth2-delegated configuration of
// cs, by id (for imapconf.View.SignIn); one nobody signed in to is absent.
func (c *Changes) SignIns(ctx context.Context, cs []imapconf.Config) (map[int64]imapconf.SignIn, error) {
	var ids []int64
	for _, conf := range cs {
		if conf.Auth == imapconf.AuthOAuth2Delegated {
			ids = append(ids, conf.ID)
		}
	}
	if len(ids) == 0 {
		return map[int64]imapconf.SignIn{}, nil
	}
	return c.store.OAuthSignIns(ctx, ids)
}

// SignInOf returns who signed in to conf; nil when nobody did or it does
// not sign in.
func (c *Changes) SignInOf(ctx context.Context, conf imapconf.Config) (*imapconf.SignIn, error) {
	m, err := c.SignIns(ctx, []imapconf.Config{conf})
	if err != nil {
		return nil, err
	}
	if si, ok := m[conf.ID]; ok {
		return &si, nil
	}
	return nil, nil
}

// CallbackPath is the path of the sign-in callback (a web route).
const CallbackPath = "/oauth/callback"

// RedirectURI is the callback URL to register at the provider: under base
// (MAILTRIGGER_BASE_URL) when set, else under the origin r was sent to; its
// scheme is https when r came over TLS or, from a trusted proxy, with
// X-Forwarded-Proto https.
func RedirectURI(base string, r *http.Request, proxies clientip.Resolver) string {
	if base != "" {
		return strings.TrimRight(base, "/") + CallbackPath
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && proxies.Trusts(ap.Addr()) {
		if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p == "https" {
			scheme = p
		}
	}
	return scheme + "://" + r.Host + CallbackPath
}
