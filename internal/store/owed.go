package store

// Owed actions: after-processing owed to the server for committed messages
// (table owed_actions), one list for every source kind.

import (
	"context"
	"database/sql"
	"fmt"
)

// oweAction records, in the ingest transaction, the after-processing of b
// owed for message in, recorded as id: by UIDVALIDITY and UID for IMAP, by
// its Graph id (in.UIDL) for Graph (b.OweByID).
func oweAction(ctx context.Context, tx *sql.Tx, b Batch, id int64, in Incoming) error {
	kind, sourceID := kindIMAP, imapValue(b.Checkpoint.UIDValidity, in.UID)
	if in.UIDL != "" {
		kind, sourceID = kindGraph, in.UIDL
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO owed_actions (imap_id, message_id, kind, source_id, action, move_to, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		b.IMAPID, id, kind, sourceID, b.Action, b.MoveTo, now()); err != nil {
		return fmt.Errorf("recording after-processing of uid %d: %w", in.UID, err)
	}
	return nil
}

// PendingGraphAction is after-processing owed to Graph for a recorded
// message.
type PendingGraphAction struct {
	UID     uint32 // the UID the message was recorded with (UIDVALIDITY 0)
	GraphID string
	Action  string
	MoveTo  string
}

// PendingGraphActions returns the after-processing owed for the Graph
// messages of configuration imapID (DonePendingActions with UIDVALIDITY 0
// forgets them).
func (s *Store) PendingGraphActions(ctx context.Context, imapID int64) ([]PendingGraphAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.uid, o.source_id, o.action, o.move_to FROM owed_actions o
		JOIN messages m ON m.id = o.message_id
		WHERE o.imap_id = $1 AND o.kind = $2 ORDER BY m.uid`, imapID, kindGraph)
	if err != nil {
		return nil, fmt.Errorf("listing pending after-processing: %w", err)
	}
	defer rows.Close()
	var out []PendingGraphAction
	for rows.Next() {
		var p PendingGraphAction
		var u int64
		if err := rows.Scan(&u, &p.GraphID, &p.Action, &p.MoveTo); err != nil {
			return nil, fmt.Errorf("listing pending after-processing: %w", err)
		}
		p.UID = uint32(u)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PendingAction is after-processing owed to the server.
type PendingAction struct {
	UIDValidity uint32
	UID         uint32
	Action      string
	MoveTo      string
}

// PendingActions returns the after-processing owed for configuration
// imapID, by the UIDVALIDITY and UID its messages were recorded with (0 and
// the UID given for a Graph message).
func (s *Store) PendingActions(ctx context.Context, imapID int64) ([]PendingAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.uid_validity, m.uid, o.action, o.move_to FROM owed_actions o
		JOIN messages m ON m.id = o.message_id
		WHERE o.imap_id = $1 ORDER BY m.uid_validity, m.uid`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing pending after-processing: %w", err)
	}
	defer rows.Close()
	var out []PendingAction
	for rows.Next() {
		var p PendingAction
		var v, u int64
		if err := rows.Scan(&v, &u, &p.Action, &p.MoveTo); err != nil {
			return nil, fmt.Errorf("listing pending after-processing: %w", err)
		}
		p.UIDValidity, p.UID = uint32(v), uint32(u)
		out = append(out, p)
	}
	return out, rows.Err()
}

// DonePendingActions forgets after-processing that was done, for the
// messages recorded under uidValidity with uids.
func (s *Store) DonePendingActions(ctx context.Context, imapID int64, uidValidity uint32, uids []uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND message_id IN
				(SELECT id FROM messages WHERE imap_id = $1 AND uid_validity = $2 AND uid = $3)`,
				imapID, int64(uidValidity), int64(u)); err != nil {
				return fmt.Errorf("forgetting after-processing of uid %d: %w", u, err)
			}
		}
		return nil
	})
}

// ClearPendingActions forgets all after-processing owed for imapID under
// another UIDVALIDITY than current: those UIDs no longer exist.
func (s *Store) ClearPendingActions(ctx context.Context, imapID int64, current uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM owed_actions WHERE imap_id = $1 AND message_id IN
			(SELECT id FROM messages WHERE imap_id = $1 AND uid_validity <> $2)`, imapID, int64(current)); err != nil {
			return fmt.Errorf("forgetting stale after-processing: %w", err)
		}
		return nil
	})
}
