package store

// Delegated OAuth2 (issue 17): the sign-ins under way (one-time states) and
// each oauth2-delegated configuration's grant (its refresh token, sealed
// like every other secret, the cached access token, the account).

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"mailtrigger/internal/imapconf"
)

// Purposes bound to the sealed values of delegated OAuth2.
const (
	purposeRefreshToken = "imap.refreshToken"
	purposeAccessToken  = "imap.accessToken"
	// purposeVerifier is followed by the state's hash: a verifier opens
	// only for its own state and configuration.
	purposeVerifier = "oauth.verifier:"
)

// writeTimeout bounds the write that stores what a renewal returned. That
// write does not follow the caller's cancellation: the provider may
// already have rotated the refresh token, which must not be lost.
const writeTimeout = 30 * time.Second

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
	// ConfigUpdatedAt is the configuration's updated_at when the state
	// was taken (TakeOAuthState); zero when it was deleted.
	ConfigUpdatedAt time.Time
}

// stateHash is what the table keeps of a state: its SHA-256, in hex.
func stateHash(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}

// CreateOAuthState records st. The states that expired are deleted on the
// way. ErrNotFound when the configuration does not exist (any more).
func (s *Store) CreateOAuthState(ctx context.Context, st OAuthState) error {
	if st.State == "" || st.Verifier == "" {
		return errors.New("recording a sign-in: no state or no verifier")
	}
	h := stateHash(st.State)
	v, err := s.box.SealRow(st.Verifier, purposeVerifier+h, st.IMAPID)
	if err != nil {
		return fmt.Errorf("recording a sign-in: sealing the verifier: %w", err)
	}
	err = s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_states WHERE expires_at <= $1`, now()); err != nil {
			return fmt.Errorf("deleting expired sign-ins: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO oauth_states (state_hash, imap_id, user_id, verifier_sealed, redirect_uri, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			h, st.IMAPID, st.UserID, v, text(st.RedirectURI), st.ExpiresAt.UTC().Truncate(time.Microsecond))
		return err
	})
	switch {
	case isForeignKey(err):
		return fmt.Errorf("recording a sign-in: imap configuration %d: %w", st.IMAPID, ErrNotFound)
	case isUnique(err):
		return fmt.Errorf("recording a sign-in: the state exists already: %w", ErrConflict)
	case err != nil:
		return fmt.Errorf("recording a sign-in of imap configuration %d: %w", st.IMAPID, err)
	}
	return nil
}

// TakeOAuthState returns the sign-in of state and deletes it, in one step
// (a state is used once); ErrStateInvalid when there is none or it expired
// before now.
func (s *Store) TakeOAuthState(ctx context.Context, state string, now time.Time) (OAuthState, error) {
	st := OAuthState{State: state}
	h := stateHash(state)
	var v []byte
	// The configuration's updated_at is read in the same transaction: an
	// edit also deletes the configuration's pending states, so it either
	// committed before the state was taken (no state) or waits for this
	// transaction and lands after it (a later updated_at), which
	// CompleteSignIn sees before it sends the code anywhere.
	err := s.Write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM oauth_states WHERE state_hash = $1
		RETURNING imap_id, user_id, verifier_sealed, redirect_uri, expires_at`, h).
			Scan(&st.IMAPID, &st.UserID, &v, &st.RedirectURI, &st.ExpiresAt)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT updated_at FROM imap_configs WHERE id = $1`, st.IMAPID).Scan(&st.ConfigUpdatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // deleted: the caller finds it gone
		}
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		s.log.Info("oauth sign-in state unknown or already used")
		return OAuthState{}, ErrStateInvalid
	}
	if err != nil {
		return OAuthState{}, fmt.Errorf("taking a sign-in state: %w", err)
	}
	st.ExpiresAt = st.ExpiresAt.UTC()
	if !st.ExpiresAt.After(now) {
		s.log.Info("oauth sign-in state expired", "imap_id", st.IMAPID, "expired_at", st.ExpiresAt)
		return OAuthState{}, ErrStateInvalid
	}
	if st.Verifier, err = s.box.OpenRow(v, purposeVerifier+h, st.IMAPID); err != nil {
		return OAuthState{}, fmt.Errorf("sign-in of imap configuration %d: %w", st.IMAPID, &SecretError{Field: "verifier: " + err.Error()})
	}
	return st, nil
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

// sealGrant seals g's tokens for the configuration's row.
func (s *Store) sealGrant(g OAuthGrant) (rt, at []byte, err error) {
	if rt, err = s.box.SealRow(g.RefreshToken, purposeRefreshToken, g.IMAPID); err != nil {
		return nil, nil, fmt.Errorf("sealing refresh token: %w", err)
	}
	if at, err = s.box.SealRow(g.AccessToken, purposeAccessToken, g.IMAPID); err != nil {
		return nil, nil, fmt.Errorf("sealing access token: %w", err)
	}
	return rt, at, nil
}

// timeOrNull is t for a nullable column: NULL when zero.
func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond)
}

// SaveOAuthGrant stores g as the configuration's grant after a sign-in,
// replacing any earlier one (and clearing Broken). SignedInAt, when zero,
// is now. ErrNotFound when the configuration does not exist (any more); a
// grant without a refresh token is refused. The configuration's UpdatedAt
// moves with it, as an edit's does, so that its watcher restarts on every
// replica.
func (s *Store) SaveOAuthGrant(ctx context.Context, g OAuthGrant) error {
	return s.saveOAuthGrant(ctx, g, nil)
}

// SaveOAuthGrantFor is SaveOAuthGrant for a sign-in made with the
// configuration conf: it stores g only while the stored configuration still
// has conf's destination (imapconf.DestinationChanges), checked in the same
// transaction, else it stores nothing and returns an error wrapping
// ErrConflict. An edit that changed the server, the token endpoint or the
// user name while the code was being exchanged thus wins: the tokens never
// go to the new destination.
func (s *Store) SaveOAuthGrantFor(ctx context.Context, g OAuthGrant, conf imapconf.Config) error {
	return s.saveOAuthGrant(ctx, g, &conf)
}

func (s *Store) saveOAuthGrant(ctx context.Context, g OAuthGrant, conf *imapconf.Config) error {
	if g.RefreshToken == "" {
		return fmt.Errorf("saving the sign-in of imap configuration %d: the provider gave no refresh token (is offline access in the scope?)", g.IMAPID)
	}
	rt, at, err := s.sealGrant(g)
	if err != nil {
		return fmt.Errorf("saving the sign-in of imap configuration %d: %w", g.IMAPID, err)
	}
	t := now()
	signedIn := g.SignedInAt
	if signedIn.IsZero() {
		signedIn = t
	}
	err = s.Write(ctx, func(tx *sql.Tx) error {
		// The configuration's row first, as UpdateIMAP locks them.
		if err := touchIMAP(ctx, tx, g.IMAPID, t, false); err != nil {
			return err
		}
		if conf != nil {
			stored, err := s.scanIMAP(tx.QueryRowContext(ctx, `SELECT `+imapColumns+` FROM imap_configs WHERE id = $1`, g.IMAPID))
			if err != nil {
				return fmt.Errorf("reading the stored configuration: %w", err)
			}
			if changed := imapconf.DestinationChanges(conf, &stored); len(changed) > 0 {
				return fmt.Errorf("%s changed during the sign-in: %w", strings.Join(changed, ", "), ErrConflict)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO oauth_grants (imap_id, account, refresh_token_sealed, access_token_sealed,
			access_expiry, signed_in_at, broken, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, '', $7)
		ON CONFLICT (imap_id) DO UPDATE SET account = excluded.account, refresh_token_sealed = excluded.refresh_token_sealed,
			access_token_sealed = excluded.access_token_sealed, access_expiry = excluded.access_expiry,
			signed_in_at = excluded.signed_in_at, broken = '', updated_at = excluded.updated_at`,
			g.IMAPID, text(g.Account), rt, at, timeOrNull(g.AccessExpiry), signedIn.UTC().Truncate(time.Microsecond), t)
		return err
	})
	if errors.Is(err, ErrNotFound) || isForeignKey(err) {
		return fmt.Errorf("saving the sign-in: imap configuration %d: %w", g.IMAPID, ErrNotFound)
	}
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("not saving the sign-in of imap configuration %d: %w", g.IMAPID, err)
	}
	if err != nil {
		return fmt.Errorf("saving the sign-in of imap configuration %d: %w", g.IMAPID, err)
	}
	return nil
}

const grantColumns = `account, refresh_token_sealed, access_token_sealed, access_expiry, signed_in_at, broken`

// scanGrant reads one grant of configuration imapID, and its sealed
// refresh token as stored (RenewOAuthGrant writes only over that value).
func (s *Store) scanGrant(row *sql.Row, imapID int64) (OAuthGrant, []byte, error) {
	g := OAuthGrant{IMAPID: imapID}
	var rt, at []byte
	var exp sql.NullTime
	err := row.Scan(&g.Account, &rt, &at, &exp, &g.SignedInAt, &g.Broken)
	if errors.Is(err, sql.ErrNoRows) {
		return g, nil, fmt.Errorf("sign-in of imap configuration %d: %w", imapID, ErrNotFound)
	}
	if err != nil {
		return g, nil, fmt.Errorf("reading the sign-in of imap configuration %d: %w", imapID, err)
	}
	g.SignedInAt = g.SignedInAt.UTC()
	if exp.Valid {
		g.AccessExpiry = exp.Time.UTC()
	}
	if g.RefreshToken, err = s.box.OpenRow(rt, purposeRefreshToken, imapID); err != nil {
		return OAuthGrant{}, nil, fmt.Errorf("sign-in of imap configuration %d: %w", imapID, &SecretError{Field: "refresh token: " + err.Error()})
	}
	if g.AccessToken, err = s.box.OpenRow(at, purposeAccessToken, imapID); err != nil {
		// A cached access token that does not open is as good as none.
		g.AccessToken, g.AccessExpiry = "", time.Time{}
	}
	return g, rt, nil
}

// GetOAuthGrant returns the grant of configuration imapID; ErrNotFound
// when nobody signed in. A refresh token that does not open is an error
// wrapping a *SecretError.
func (s *Store) GetOAuthGrant(ctx context.Context, imapID int64) (OAuthGrant, error) {
	g, _, err := s.scanGrant(s.r.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE imap_id = $1`, imapID), imapID)
	return g, err
}

// grantLocks are the per-configuration locks of RenewOAuthGrant in this
// process: a channel of one slot per configuration, so that waiting
// follows the context.
type grantLocks struct {
	mu sync.Mutex
	m  map[int64]chan struct{}
}

func (l *grantLocks) lock(ctx context.Context, id int64) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[int64]chan struct{}{}
	}
	ch, ok := l.m[id]
	if !ok {
		ch = make(chan struct{}, 1)
		l.m[id] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RenewOAuthGrant serializes renewals of one grant across goroutines and
// replicas: it locks the grant, calls renew with what is stored now (which
// another replica may just have renewed: renew then returns it unchanged
// when its access token is not due), and stores what renew returns before
// the lock is released, so a rotated refresh token is never lost. An error
// from renew is returned and nothing is stored. ErrNotFound (renew not
// called) when nobody signed in.
//
// What is stored of renew's answer: RefreshToken (an empty one keeps the
// stored token: the provider did not rotate it), AccessToken, AccessExpiry
// and Broken; the account and the sign-in time stay. A broken grant is
// handed to renew like any other.
//
// In this process the renewals of one grant take turns on a lock; on
// PostgreSQL the grant's row is also locked (SELECT … FOR UPDATE) in a
// transaction held while renew runs, so that other replicas wait and then
// read the renewed grant. On SQLite (one process) renew runs outside any
// transaction, and a short one stores its answer unless the grant was
// replaced meanwhile (a new sign-in; then the error wraps ErrConflict).
func (s *Store) RenewOAuthGrant(ctx context.Context, imapID int64, renew func(g OAuthGrant) (OAuthGrant, error)) (OAuthGrant, error) {
	unlock, err := s.renewing.lock(ctx, imapID)
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("waiting to renew the sign-in of imap configuration %d: %w", imapID, err)
	}
	defer unlock()
	if s.dialect == Postgres {
		return s.renewPostgres(ctx, imapID, renew)
	}
	old, sealed, err := s.scanGrant(s.r.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE imap_id = $1`, imapID), imapID)
	if err != nil {
		return OAuthGrant{}, err
	}
	g, err := renew(old)
	if err != nil {
		return OAuthGrant{}, err
	}
	g = renewed(old, g)
	if sameGrant(old, g) {
		return g, nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	err = s.Write(wctx, func(tx *sql.Tx) error { return s.storeRenewed(wctx, tx, old, g, sealed) })
	if err != nil {
		return OAuthGrant{}, s.renewNotStored(old, g, err)
	}
	return g, nil
}

func (s *Store) renewPostgres(ctx context.Context, imapID int64, renew func(g OAuthGrant) (OAuthGrant, error)) (OAuthGrant, error) {
	// The transaction does not follow ctx: what renew returns is written
	// even when the caller gives up meanwhile. Waiting for the lock does.
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	tx, err := s.w.BeginTx(tctx, nil)
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("renewing the sign-in of imap configuration %d: beginning transaction: %w", imapID, err)
	}
	defer tx.Rollback()
	// The row stays locked, the session idle, while the provider answers.
	if _, err := tx.ExecContext(tctx, setIdleSQL, idleMillis(renewIdle)); err != nil {
		return OAuthGrant{}, fmt.Errorf("renewing the sign-in of imap configuration %d: allowing the wait for the provider: %w", imapID, err)
	}
	old, sealed, err := s.scanGrant(tx.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE imap_id = $1 FOR UPDATE`, imapID), imapID)
	if err != nil {
		return OAuthGrant{}, err
	}
	g, err := renew(old)
	if err != nil {
		return OAuthGrant{}, err
	}
	g = renewed(old, g)
	if !sameGrant(old, g) {
		wctx, cancel := context.WithTimeout(tctx, writeTimeout)
		defer cancel()
		if err := s.storeRenewed(wctx, tx, old, g, sealed); err != nil {
			return OAuthGrant{}, s.renewNotStored(old, g, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return OAuthGrant{}, s.renewNotStored(old, g, fmt.Errorf("committing: %w", err))
	}
	return g, nil
}

// renewed is renew's answer g for the stored grant old, as it is stored.
func renewed(old, g OAuthGrant) OAuthGrant {
	g.IMAPID, g.Account, g.SignedInAt = old.IMAPID, old.Account, old.SignedInAt
	if g.RefreshToken == "" {
		g.RefreshToken = old.RefreshToken
	}
	if !g.AccessExpiry.IsZero() {
		g.AccessExpiry = g.AccessExpiry.UTC().Truncate(time.Microsecond)
	}
	return g
}

// sameGrant reports whether renew left the grant as it was.
func sameGrant(a, b OAuthGrant) bool {
	return a.RefreshToken == b.RefreshToken && a.AccessToken == b.AccessToken &&
		a.AccessExpiry.Equal(b.AccessExpiry) && a.Broken == b.Broken
}

// storeRenewed writes g over old, whose refresh token was stored sealed as
// sealed; ErrConflict when the row no longer holds it.
func (s *Store) storeRenewed(ctx context.Context, tx *sql.Tx, old, g OAuthGrant, sealed []byte) error {
	rt, at, err := s.sealGrant(g)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE oauth_grants SET refresh_token_sealed = $1, access_token_sealed = $2,
		access_expiry = $3, broken = $4, updated_at = $5 WHERE imap_id = $6 AND refresh_token_sealed = $7`,
		rt, at, timeOrNull(g.AccessExpiry), text(g.Broken), now(), g.IMAPID, sealed)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("the sign-in was replaced or removed during the renewal: %w", ErrConflict)
	}
	return nil
}

// renewNotStored is the error of a renewal whose answer could not be
// stored; when the provider rotated the refresh token, that is said loudly:
// the new one is lost, and the old one may no longer work.
func (s *Store) renewNotStored(old, g OAuthGrant, err error) error {
	if g.RefreshToken != old.RefreshToken && !errors.Is(err, ErrConflict) {
		s.log.Error("the provider rotated the refresh token but storing the new one failed: the sign-in may be lost",
			"imap_id", g.IMAPID, "err", err)
	}
	return fmt.Errorf("storing the renewed sign-in of imap configuration %d: %w", g.IMAPID, err)
}

// MarkOAuthGrantBroken records why the grant stopped working. ErrNotFound
// when nobody signed in.
func (s *Store) MarkOAuthGrantBroken(ctx context.Context, imapID int64, why string) error {
	if why == "" {
		why = "invalid_grant"
	}
	res, err := s.w.ExecContext(ctx, `UPDATE oauth_grants SET broken = $1, updated_at = $2 WHERE imap_id = $3`, text(why), now(), imapID)
	if err != nil {
		return fmt.Errorf("marking the sign-in of imap configuration %d broken: %w", imapID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sign-in of imap configuration %d: %w", imapID, ErrNotFound)
	}
	return nil
}

// DeleteOAuthGrant forgets the grant (sign out). Deleting a grant that
// does not exist is not an error. The configuration's UpdatedAt moves when
// there was one, so that its watcher stops using it on every replica.
func (s *Store) DeleteOAuthGrant(ctx context.Context, imapID int64) error {
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if err := touchIMAP(ctx, tx, imapID, now(), true); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM oauth_grants WHERE imap_id = $1`, imapID)
		return err
	})
	if err != nil {
		return fmt.Errorf("forgetting the sign-in of imap configuration %d: %w", imapID, err)
	}
	return nil
}

// touchIMAP sets the updated_at of configuration id to t (when signedIn,
// only if it has a grant); ErrNotFound when no row was changed.
func touchIMAP(ctx context.Context, tx *sql.Tx, id int64, t time.Time, signedIn bool) error {
	q := `UPDATE imap_configs SET updated_at = $1 WHERE id = $2`
	if signedIn {
		q += ` AND EXISTS (SELECT 1 FROM oauth_grants WHERE imap_id = $2)`
	}
	res, err := tx.ExecContext(ctx, q, t, id)
	if err != nil {
		return fmt.Errorf("updating imap configuration %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("imap configuration %d: %w", id, ErrNotFound)
	}
	return nil
}

// OAuthSignIns returns the public part of the grants of the configurations
// ids (for imapconf.View.SignIn), by configuration id; a configuration
// nobody signed in to is absent. It opens no secret.
func (s *Store) OAuthSignIns(ctx context.Context, ids []int64) (map[int64]imapconf.SignIn, error) {
	out := map[int64]imapconf.SignIn{}
	const chunk = 500
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		marks := make([]string, n)
		for i, id := range ids[:n] {
			args[i], marks[i] = id, fmt.Sprintf("$%d", i+1)
		}
		ids = ids[n:]
		rows, err := s.r.QueryContext(ctx, `SELECT imap_id, account, signed_in_at, broken FROM oauth_grants
			WHERE imap_id IN (`+strings.Join(marks, ", ")+`)`, args...)
		err = scanRows(rows, err, func(rs *sql.Rows) error {
			var id int64
			var si imapconf.SignIn
			if err := rs.Scan(&id, &si.Account, &si.SignedInAt, &si.Broken); err != nil {
				return err
			}
			si.SignedInAt = si.SignedInAt.UTC()
			out[id] = si
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading sign-ins: %w", err)
		}
	}
	return out, nil
}
