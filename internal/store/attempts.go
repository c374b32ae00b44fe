package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// IngestAttempt is what the crash-loop breaker remembers of a mailbox while a
// message or a batch is being parsed and recorded: the key of the (first)
// message, how many starts died on it, and how many messages from it the
// attempt covered. See ingest.Guard.
type IngestAttempt struct {
	Key      string
	Attempts int
	Span     int
	Owner    string // the process that wrote it
}

// GetAttempt returns the attempt left for configuration imapID; ok is false
// when there is none (the last batch was recorded).
func (s *Store) GetAttempt(ctx context.Context, imapID int64) (a IngestAttempt, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT msg_key, attempts, span, owner FROM ingest_attempts WHERE imap_id = $1`, imapID).
		Scan(&a.Key, &a.Attempts, &a.Span, &a.Owner)
	if errors.Is(err, sql.ErrNoRows) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("reading the ingest attempt of imap configuration %d: %w", imapID, err)
	}
	return a, true, nil
}

// SetAttempt notes, durably, that configuration imapID is about to parse
// and record a, replacing what was noted before.
func (s *Store) SetAttempt(ctx context.Context, imapID int64, a IngestAttempt) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ingest_attempts (imap_id, msg_key, attempts, span, owner, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (imap_id) DO UPDATE SET msg_key = excluded.msg_key, attempts = excluded.attempts, span = excluded.span,
				owner = excluded.owner, updated_at = excluded.updated_at`, imapID, a.Key, a.Attempts, a.Span, a.Owner, now()); err != nil {
			return fmt.Errorf("noting the ingest attempt of imap configuration %d: %w", imapID, err)
		}
		return nil
	})
}

// clearAttempt removes the attempt noted under key, in the transaction that
// recorded it (an attempt noted since for a later batch stays).
func clearAttempt(ctx context.Context, tx execer, imapID int64, key string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM ingest_attempts WHERE imap_id = $1 AND msg_key = $2`, imapID, key); err != nil {
		return fmt.Errorf("clearing the ingest attempt of imap configuration %d: %w", imapID, err)
	}
	return nil
}

// ClearAttempt removes the attempt noted under key, if it is still the one
// noted: a round of reading that ended with nothing left to record.
func (s *Store) ClearAttempt(ctx context.Context, imapID int64, key string) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return clearAttempt(ctx, tx, imapID, key) })
}
