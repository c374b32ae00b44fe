package store

// Checkpoints: where reading each mailbox stands.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Checkpoint is where reading an IMAP folder stands: every message up to
// LastUID under UIDValidity is recorded.
type Checkpoint struct {
	UIDValidity uint32
	LastUID     uint32
}

// GetCheckpoint returns the checkpoint of configuration imapID; ok is false
// when the mailbox was never read.
func (s *Store) GetCheckpoint(ctx context.Context, imapID int64) (cp Checkpoint, ok bool, err error) {
	var v, u int64
	err = s.r.QueryRowContext(ctx, `SELECT uid_validity, last_uid FROM mailbox_state WHERE imap_id = $1`, imapID).Scan(&v, &u)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
	}
	return Checkpoint{UIDValidity: uint32(v), LastUID: uint32(u)}, true, nil
}

func setDeltaLink(ctx context.Context, tx *sql.Tx, imapID int64, link string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE mailbox_state SET delta_link = $1 WHERE imap_id = $2`, link, imapID); err != nil {
		return fmt.Errorf("storing deltaLink of imap configuration %d: %w", imapID, err)
	}
	return nil
}

// DeltaLink returns the stored Graph deltaLink of configuration imapID; ok
// is false when the mailbox was never read ("" with ok: start from an empty
// link).
func (s *Store) DeltaLink(ctx context.Context, imapID int64) (link string, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT delta_link FROM mailbox_state WHERE imap_id = $1`, imapID).Scan(&link)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading deltaLink of imap configuration %d: %w", imapID, err)
	}
	return link, true, nil
}

// SetDeltaLink stores the Graph deltaLink of configuration imapID without
// recording messages (the first connect: "" to read all the mail, the
// primed link for backlog "new"; a resync's empty link), remembering ids as
// read without recording them (the unread-only backlog skips the read
// ones).
func (s *Store) SetDeltaLink(ctx context.Context, imapID int64, link string, seen []string) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range seen {
			if err := rememberUIDL(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		if err := setCheckpoint(ctx, tx, imapID, Checkpoint{}); err != nil {
			return err
		}
		return setDeltaLink(ctx, tx, imapID, link)
	})
}

// SetCheckpoint moves the checkpoint without recording messages (a backlog
// mode that skips old mail, a UIDVALIDITY change).
func (s *Store) SetCheckpoint(ctx context.Context, imapID int64, cp Checkpoint) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return setCheckpoint(ctx, tx, imapID, cp) })
}

func setCheckpoint(ctx context.Context, tx *sql.Tx, imapID int64, cp Checkpoint) error {
	// Same UIDVALIDITY: only forwards. Another UIDVALIDITY: the folder was
	// recreated and reading starts over.
	_, err := tx.ExecContext(ctx, `INSERT INTO mailbox_state (imap_id, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (imap_id) DO UPDATE SET
			last_uid = CASE WHEN mailbox_state.uid_validity = excluded.uid_validity AND mailbox_state.last_uid > excluded.last_uid
				THEN mailbox_state.last_uid ELSE excluded.last_uid END,
			uid_validity = excluded.uid_validity, updated_at = excluded.updated_at`,
		imapID, int64(cp.UIDValidity), int64(cp.LastUID), now())
	if err != nil {
		return fmt.Errorf("moving checkpoint of imap configuration %d: %w", imapID, err)
	}
	return nil
}
