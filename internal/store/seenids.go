package store

// Seen ids: the ids a mailbox has read, for the sources that name their
// messages by id (POP3 unique ids, Microsoft Graph message ids; table
// seen_ids). A message whose id is seen is not recorded again.

import (
	"context"
	"database/sql"
	"fmt"
)

// AddSeenIDs remembers ids of configuration imapID as read without
// recording them (the read mail the unread-only backlog skips), leaving the
// checkpoint alone.
func (s *Store) AddSeenIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if err := addSeenID(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetSeenIDs forgets ids of configuration imapID (the messages are gone
// from the folder, so remembering them would only grow the table), with
// the after-processing still owed by those ids, which can no longer be
// done. The messages' records stay.
func (s *Store) ForgetSeenIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND kind = $2 AND source_id = $3`,
				imapID, string(KindGraph), id); err != nil {
				return fmt.Errorf("forgetting the after-processing owed for message id %q: %w", id, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM seen_ids WHERE imap_id = $1 AND source_id = $2`, imapID, id); err != nil {
				return fmt.Errorf("forgetting message id %q: %w", id, err)
			}
		}
		return nil
	})
}

// addSeenID remembers id as read, in tx: by the message recorded as
// messageID, or nil for one skipped.
func addSeenID(ctx context.Context, tx *sql.Tx, imapID int64, id string, messageID *int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO seen_ids (imap_id, source_id, message_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		imapID, id, messageID); err != nil {
		return fmt.Errorf("remembering message id %q: %w", id, err)
	}
	return nil
}

// seenInsert remembers ids as read, by the messages recorded.
var seenInsert = insert{table: "seen_ids", cols: []col{{"imap_id", "bigint"}, {"source_id", "text"}, {"message_id", "bigint"}},
	suffix: "ON CONFLICT DO NOTHING"}

// SeenIDs returns the ids configuration imapID has read (recorded, or
// remembered as read without recording them).
func (s *Store) SeenIDs(ctx context.Context, imapID int64) (map[string]bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT source_id FROM seen_ids WHERE imap_id = $1`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing message ids read: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("listing message ids read: %w", err)
		}
		out[u] = true
	}
	return out, rows.Err()
}

// RetainSeenIDs forgets the seen ids of configuration imapID that are not
// in present (the ids the server lists now): those messages are gone from
// the server, so remembering them would only grow the table.
func (s *Store) RetainSeenIDs(ctx context.Context, imapID int64, present map[string]bool) error {
	known, err := s.SeenIDs(ctx, imapID)
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
				return fmt.Errorf("forgetting message id %q: %w", u, err)
			}
		}
		return nil
	})
}
