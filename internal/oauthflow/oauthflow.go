// Package oauthflow is the protocol side of delegated OAuth2 sign-in
// (issue 17): the authorization code flow with PKCE (RFC 7636, S256) and a
// one-time state, the code exchange, refresh-token renewal with rotation,
// the signed-in account from the ID token or the provider's userinfo, and
// the endpoints and scopes of the known providers (Google, Microsoft) for
// each kind of mailbox. It knows nothing of the store, HTTP routes or the
// UI; it talks only to the provider's endpoints.
//
// CONTRACT (stubs committed by the lead; the oauthflow helper fills them
// in and may add to them, not change what is here without telling).
package oauthflow

import (
	"context"
	"errors"
	"net/http"
	"time"

	"mailtrigger/internal/imapconf"
)

// StateTTL is how long a sign-in started may be completed.
const StateTTL = 10 * time.Minute

// Endpoints are where and for what a configuration signs in.
type Endpoints struct {
	AuthURL  string
	TokenURL string
	// UserinfoURL is asked for the account when the token answer has no
	// ID token naming it ("" when there is none to ask).
	UserinfoURL string
	// Scopes asked for: the mail scope of the mailbox's kind, offline
	// access (a refresh token) and what names the account (openid email).
	Scopes []string
	// ExtraAuthParams go on the authorization URL (Google:
	// access_type=offline, prompt=consent).
	ExtraAuthParams map[string]string
}

// EndpointsOf returns the endpoints of c, an oauth2-delegated
// configuration: the provider's defaults (Google; Microsoft with c.TenantID,
// "common" when empty, under c.AuthorityURL when set), or c.AuthURL,
// c.TokenURL and c.Scope for a custom provider. c.Scope, when set,
// replaces the default mail scope for every provider.
func EndpointsOf(c imapconf.Config) (Endpoints, error) {
	return Endpoints{}, errors.New("oauthflow: not implemented")
}

// Start is a sign-in begun: the URL to open in the user's browser, the
// state it carries and the PKCE verifier kept (secret) until the callback.
type Start struct {
	URL      string
	State    string
	Verifier string
	Expires  time.Time
}

// Begin starts a sign-in for c with redirectURI registered at the provider:
// a fresh random state (at least 128 bits) and PKCE verifier, the S256
// challenge on the URL, login_hint set to c.Username.
func Begin(c imapconf.Config, redirectURI string, now time.Time) (Start, error) {
	return Start{}, errors.New("oauthflow: not implemented")
}

// Grant is what the token endpoint gave.
type Grant struct {
	AccessToken string
	// RefreshToken is "" on a renewal that did not rotate it (keep the old).
	RefreshToken string
	Expiry       time.Time
	// Account is the signed-in account (email or UPN): from the ID token
	// (email, preferred_username, upn) or userinfo. Set by Exchange only.
	Account string
}

// ErrInvalidGrant is wrapped by Exchange and Refresh errors when the
// provider answered invalid_grant: the code or refresh token is expired,
// used, revoked or for another client; the user must sign in again.
var ErrInvalidGrant = errors.New("the provider refused the grant (invalid_grant): sign in again")

// ProviderError is an error the provider returned (an OAuth2 error code and
// its description), on the callback (access_denied) or from the token
// endpoint. Its text never holds a code, token or secret.
type ProviderError struct {
	Code        string
	Description string
}

func (e *ProviderError) Error() string {
	if e.Description == "" {
		return "the provider answered " + e.Code
	}
	return "the provider answered " + e.Code + ": " + e.Description
}

// Exchange redeems code (with the verifier of its Begin) at c's token
// endpoint and finds the account that signed in. hc makes the requests
// (the service's egress policy); nil: http.DefaultClient.
func Exchange(ctx context.Context, hc *http.Client, c imapconf.Config, redirectURI, code, verifier string) (Grant, error) {
	return Grant{}, errors.New("oauthflow: not implemented")
}

// Refresh renews the access token with refreshToken. The answer's
// RefreshToken is the rotated one when the provider rotated it.
func Refresh(ctx context.Context, hc *http.Client, c imapconf.Config, refreshToken string) (Grant, error) {
	return Grant{}, errors.New("oauthflow: not implemented")
}
