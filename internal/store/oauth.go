package store

// Delegated OAuth2 (issue 17): the sign-ins under way (one-time states) and
// each oauth2-delegated configuration's grant (its refresh token, sealed
// like every other secret, the cached access token, the account).
//
// CONTRACT (stubs committed by the lead; the store/grant helper fills them
// in, with migration 00012, and may add to them).

import (
	"context"
	"errors"
	"time"
)

// ErrStateInvalid is returned by TakeOAuthState for a state that is
// unknown, already used or expired (the three are not told apart to the
// caller's user; the log may).
var ErrStateInvalid = errors.New("the sign-in is unknown, already used or expired: start it again")

// OAuthState is a sign-in under way, kept until its callback or expiry.
type OAuthState struct {
	State  string // the random value on the authorization URL (stored hashed)
	IMAPID int64
	// UserID is the user who started it (web session or API token); the
	// callback must come from a session of the same user.
	UserID      int64
	Verifier    string // PKCE verifier, sealed at rest
	RedirectURI string
	ExpiresAt   time.Time
}

// CreateOAuthState records st.
func (s *Store) CreateOAuthState(ctx context.Context, st OAuthState) error {
	return errors.New("store: CreateOAuthState not implemented")
}

// TakeOAuthState returns the sign-in of state and deletes it, in one step
// (a state is used once); ErrStateInvalid when there is none or it expired
// before now.
func (s *Store) TakeOAuthState(ctx context.Context, state string, now time.Time) (OAuthState, error) {
	return OAuthState{}, errors.New("store: TakeOAuthState not implemented")
}

// OAuthGrant is the grant of one oauth2-delegated configuration.
type OAuthGrant struct {
	IMAPID       int64
	Account      string
	RefreshToken string // sealed at rest, bound to the configuration's row
	AccessToken  string // sealed at rest; "" when none is cached
	AccessExpiry time.Time
	SignedInAt   time.Time
	// Broken is why the grant stopped working (invalid_grant): "" while
	// it works. Set by MarkOAuthGrantBroken, cleared by a new sign-in.
	Broken string
}

// SaveOAuthGrant stores g as the configuration's grant after a sign-in,
// replacing any earlier one (and clearing Broken).
func (s *Store) SaveOAuthGrant(ctx context.Context, g OAuthGrant) error {
	return errors.New("store: SaveOAuthGrant not implemented")
}

// GetOAuthGrant returns the grant of configuration imapID; ErrNotFound
// when nobody signed in.
func (s *Store) GetOAuthGrant(ctx context.Context, imapID int64) (OAuthGrant, error) {
	return OAuthGrant{}, ErrNotFound
}

// RenewOAuthGrant serializes renewals of one grant across goroutines and
// replicas: it locks the grant, calls renew with what is stored now (which
// another replica may just have renewed: renew then returns it unchanged
// when its access token is not due), and stores what renew returns before
// the lock is released, so a rotated refresh token is never lost. An error
// from renew is returned and nothing is stored.
func (s *Store) RenewOAuthGrant(ctx context.Context, imapID int64, renew func(g OAuthGrant) (OAuthGrant, error)) (OAuthGrant, error) {
	return OAuthGrant{}, errors.New("store: RenewOAuthGrant not implemented")
}

// MarkOAuthGrantBroken records why the grant stopped working.
func (s *Store) MarkOAuthGrantBroken(ctx context.Context, imapID int64, why string) error {
	return errors.New("store: MarkOAuthGrantBroken not implemented")
}

// DeleteOAuthGrant forgets the grant (sign out; a destination change).
func (s *Store) DeleteOAuthGrant(ctx context.Context, imapID int64) error {
	return errors.New("store: DeleteOAuthGrant not implemented")
}
