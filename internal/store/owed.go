package store

// Owed actions: after-processing owed to the server for committed messages
// (table owed_actions), one list for every source kind.

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// owedRow is the row of owedInsert that records the after-processing of b
// owed for message in, recorded as id: by its id for a message with one
// (b.ActByID), else by the epoch and UID it was recorded under.
func owedRow(b *Batch, id int64, in Incoming, at time.Time) []any {
	kind, sourceID := KindIMAP, imapValue(b.Epoch, in.UID)
	if in.ID != "" {
		kind, sourceID = KindGraph, in.ID
	}
	return []any{b.IMAPID, id, string(kind), sourceID, b.Action, b.MoveTo, at}
}

var owedInsert = insert{table: "owed_actions", cols: []col{{"imap_id", "bigint"}, {"message_id", "bigint"}, {"kind", "text"},
	{"source_id", "text"}, {"action", "text"}, {"move_to", "text"}, {"created_at", "timestamptz"}}, suffix: "ON CONFLICT DO NOTHING"}

// OwedAction is after-processing owed to the server for a recorded message.
type OwedAction struct {
	Epoch uint32 // the epoch (UIDVALIDITY) the message was recorded under: 0 for one with an id
	UID   uint32 // the UID it was recorded with
	// ID is the source's id of a message owed by id (ActByID), "" for
	// one owed by epoch and UID.
	ID     string
	Action string
	MoveTo string
}

// Owed returns the after-processing owed for configuration imapID, by the
// epoch and UID its messages were recorded under (Paid forgets it).
func (s *Store) Owed(ctx context.Context, imapID int64) ([]OwedAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.uid_validity, m.uid, o.kind, o.source_id, o.action, o.move_to FROM owed_actions o
		JOIN messages m ON m.id = o.message_id
		WHERE o.imap_id = $1 ORDER BY m.uid_validity, m.uid`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing pending after-processing: %w", err)
	}
	defer rows.Close()
	var out []OwedAction
	for rows.Next() {
		var o OwedAction
		var v, u int64
		var kind, sourceID string
		if err := rows.Scan(&v, &u, &kind, &sourceID, &o.Action, &o.MoveTo); err != nil {
			return nil, fmt.Errorf("listing pending after-processing: %w", err)
		}
		o.Epoch, o.UID = uint32(v), uint32(u)
		if Kind(kind) == KindGraph {
			o.ID = sourceID
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Paid forgets after-processing that was done, for the messages recorded
// under epoch with uids.
func (s *Store) Paid(ctx context.Context, imapID int64, epoch uint32, uids []uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND message_id IN
				(SELECT id FROM messages WHERE imap_id = $1 AND uid_validity = $2 AND uid = $3)`,
				imapID, int64(epoch), int64(u)); err != nil {
				return fmt.Errorf("forgetting after-processing of uid %d: %w", u, err)
			}
		}
		return nil
	})
}

// ClearOwed forgets all after-processing owed for imapID under another
// epoch than current: those UIDs no longer exist.
func (s *Store) ClearOwed(ctx context.Context, imapID int64, current uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND message_id IN
			(SELECT id FROM messages WHERE imap_id = $1 AND uid_validity <> $2)`, imapID, int64(current)); err != nil {
			return fmt.Errorf("forgetting stale after-processing: %w", err)
		}
		return nil
	})
}
