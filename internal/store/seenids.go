package store

// Seen ids: the POP3 unique ids and Microsoft Graph message ids a mailbox
// has read (table seen_ids).

import (
	"context"
	"database/sql"
	"fmt"
)

// RememberIDs remembers the Graph message ids of configuration imapID as
// read without recording them (the read mail the unread-only backlog
// skips), leaving the checkpoint alone.
func (s *Store) RememberIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if err := rememberUIDL(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetIDs forgets the Graph message ids of configuration imapID (the
// messages are gone from the folder, so remembering them would only grow
// the table), with the after-processing still owed for them, which can no
// longer be done. The messages' records stay.
func (s *Store) ForgetIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND kind = $2 AND source_id = $3`,
				imapID, kindGraph, id); err != nil {
				return fmt.Errorf("forgetting the after-processing owed for message id %q: %w", id, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM seen_ids WHERE imap_id = $1 AND source_id = $2`, imapID, id); err != nil {
				return fmt.Errorf("forgetting message id %q: %w", id, err)
			}
		}
		return nil
	})
}

func rememberUIDL(ctx context.Context, tx *sql.Tx, imapID int64, uidl string, messageID *int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO seen_ids (imap_id, source_id, message_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		imapID, uidl, messageID); err != nil {
		return fmt.Errorf("remembering unique id %q: %w", uidl, err)
	}
	return nil
}

// POP3UIDLs returns the unique ids of the POP3 messages configuration
// imapID has read (recorded, or marked seen without reading).
func (s *Store) POP3UIDLs(ctx context.Context, imapID int64) (map[string]bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT source_id FROM seen_ids WHERE imap_id = $1`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing unique ids read: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("listing unique ids read: %w", err)
		}
		out[u] = true
	}
	return out, rows.Err()
}

// ForgetPOP3UIDLs forgets the unique ids of configuration imapID that are
// not in present (the ids the server lists now): those messages are gone
// from the server, so remembering them would only grow the table.
func (s *Store) ForgetPOP3UIDLs(ctx context.Context, imapID int64, present map[string]bool) error {
	known, err := s.POP3UIDLs(ctx, imapID)
	if err != nil {
		return err
	}
	var gone []string
	for u := range known {
		if !present[u] {
			gone = append(gone, u)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM seen_ids WHERE imap_id = $1 AND source_id = $2`, imapID, u); err != nil {
				return fmt.Errorf("forgetting unique id %q: %w", u, err)
			}
		}
		return nil
	})
}

// MarkPOP3Seen remembers uidls as read without recording them (the mail
// present at the first connect, for backlog "new") and sets the checkpoint
// cp, in one transaction.
func (s *Store) MarkPOP3Seen(ctx context.Context, imapID int64, uidls []string, cp Checkpoint) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uidls {
			if err := rememberUIDL(ctx, tx, imapID, u, nil); err != nil {
				return err
			}
		}
		return setCheckpoint(ctx, tx, imapID, cp)
	})
}
