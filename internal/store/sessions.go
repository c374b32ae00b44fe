package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// FindSession returns the data of the web UI session token (as the session
// manager stores it: a hash of the cookie's value). found is false when there
// is no such session or it has expired.
func (s *Store) FindSession(ctx context.Context, token string) (data []byte, found bool, err error) {
	var expiry time.Time
	err = s.r.QueryRowContext(ctx, `SELECT data, expiry FROM sessions WHERE token = $1`, token).Scan(&data, &expiry)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading session: %w", err)
	}
	if !expiry.After(time.Now()) {
		return nil, false, nil
	}
	return data, true, nil
}

// CommitSession stores the data of session token until expiry, replacing
// what the session held.
func (s *Store) CommitSession(ctx context.Context, token string, data []byte, expiry time.Time) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (token, data, expiry) VALUES ($1, $2, $3)
		ON CONFLICT (token) DO UPDATE SET data = excluded.data, expiry = excluded.expiry`,
		token, nonNil(data), expiry.UTC().Truncate(time.Microsecond))
	if err != nil {
		return fmt.Errorf("saving session: %w", err)
	}
	return nil
}

// DeleteSession deletes session token; deleting a session that does not
// exist is not an error.
func (s *Store) DeleteSession(ctx context.Context, token string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE token = $1`, token); err != nil {
		return fmt.Errorf("deleting session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions deletes the sessions that expired before now and
// returns how many there were.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expiry <= $1`, now.UTC().Truncate(time.Microsecond))
	if err != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
