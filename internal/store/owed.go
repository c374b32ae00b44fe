package store

// Owed actions: after-processing owed to the server for committed messages.

import (
	"context"
	"database/sql"
	"fmt"
)

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
	rows, err := s.r.QueryContext(ctx, `SELECT p.uid, u.uidl, p.action, p.move_to FROM pending_actions p
		JOIN messages m ON m.imap_id = p.imap_id AND m.uid_validity = 0 AND m.uid = p.uid
		JOIN pop3_uidls u ON u.imap_id = p.imap_id AND u.message_id = m.id
		WHERE p.imap_id = $1 AND p.uid_validity = 0 ORDER BY p.uid`, imapID)
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

// PendingActions returns the after-processing owed for configuration imapID.
func (s *Store) PendingActions(ctx context.Context, imapID int64) ([]PendingAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT uid_validity, uid, action, move_to FROM pending_actions WHERE imap_id = $1 ORDER BY uid_validity, uid`, imapID)
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

// DonePendingActions forgets after-processing that was done.
func (s *Store) DonePendingActions(ctx context.Context, imapID int64, uidValidity uint32, uids []uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pending_actions WHERE imap_id = $1 AND uid_validity = $2 AND uid = $3`,
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
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_actions WHERE imap_id = $1 AND uid_validity <> $2`, imapID, int64(current)); err != nil {
			return fmt.Errorf("forgetting stale after-processing: %w", err)
		}
		return nil
	})
}
