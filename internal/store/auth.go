package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CountUsers returns how many users exist.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting users: %w", err)
	}
	return n, nil
}

// CreateFirstUser creates the user name when there is no user at all. created
// is false when a user already existed (another replica may have won).
func (s *Store) CreateFirstUser(ctx context.Context, name, passwordHash string) (created bool, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
			return fmt.Errorf("counting users: %w", err)
		}
		if n > 0 {
			return nil
		}
		t := now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3)`, name, passwordHash, t); err != nil {
			if isUnique(err) {
				return nil
			}
			return fmt.Errorf("creating user %s: %w", name, err)
		}
		created = true
		return nil
	})
	return created, err
}

// SetUserPassword sets the password of user name, creating the user when it
// does not exist. created says which happened.
func (s *Store) SetUserPassword(ctx context.Context, name, passwordHash string) (created bool, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) error {
		t := now()
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3`, passwordHash, t, name)
		if err != nil {
			return fmt.Errorf("updating user %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3)`, name, passwordHash, t); err != nil {
			return fmt.Errorf("creating user %s: %w", name, err)
		}
		created = true
		return nil
	})
	return created, err
}

// UserPasswordHash returns the stored password hash of user name.
func (s *Store) UserPasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := s.r.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE name = $1`, name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading user %s: %w", name, err)
	}
	return h, nil
}

// Token is an API token as stored: its hash, never the token.
type Token struct {
	ID         int64
	Name       string
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

// CreateToken stores a token's hash under name. ErrConflict when the name is taken.
func (s *Store) CreateToken(ctx context.Context, name, tokenHash string) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)`, name, tokenHash, now())
	if isUnique(err) {
		return fmt.Errorf("token %q: %w", name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("creating token %s: %w", name, err)
	}
	return nil
}

// ListTokens returns every token, by name.
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, created_at, last_used_at FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.ID, &t.Name, &t.CreatedAt, &t.LastUsedAt); err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return out, nil
}

// RevokeToken deletes the token name.
func (s *Store) RevokeToken(ctx context.Context, name string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM api_tokens WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("revoking token %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %q: %w", name, ErrNotFound)
	}
	return nil
}

// TokenByHash finds the token whose hash is tokenHash.
func (s *Store) TokenByHash(ctx context.Context, tokenHash string) (Token, error) {
	var t Token
	err := s.r.QueryRowContext(ctx, `SELECT id, name, created_at, last_used_at FROM api_tokens WHERE token_hash = $1`, tokenHash).
		Scan(&t.ID, &t.Name, &t.CreatedAt, &t.LastUsedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNotFound
	}
	if err != nil {
		return Token{}, fmt.Errorf("looking up token: %w", err)
	}
	return t, nil
}

// TouchToken records that token id was used at t.
func (s *Store) TouchToken(ctx context.Context, id int64, t time.Time) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = $1 WHERE id = $2`, t.UTC(), id); err != nil {
		return fmt.Errorf("touching token %d: %w", id, err)
	}
	return nil
}

// UserID returns the id of user name (a sign-in is bound to it).
func (s *Store) UserID(ctx context.Context, name string) (int64, error) {
	var id int64
	err := s.r.QueryRowContext(ctx, `SELECT id FROM users WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("reading user %s: %w", name, err)
	}
	return id, nil
}
