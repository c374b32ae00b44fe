package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Pruned counts what Prune removed.
type Pruned struct {
	Messages int64 // messages whose bodies and attachment contents were dropped
	Runs     int64 // finished runs whose attempt details were dropped
	Alerts   int64 // finished alert deliveries dropped, with their attempts
}

// Prune drops the bulk of what is older than cutoff: the raw bytes, bodies
// and attachment contents of messages received before it, and the attempt
// details of runs finished (delivered or failed) before it. The message and
// run records themselves stay, with their subject, addresses, status and
// verdicts, so the history keeps its summary.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (Pruned, error) {
	var p Pruned
	cutoff = cutoff.UTC()
	err := s.Write(ctx, func(tx *sql.Tx) error {
		// A message stored once (layout) or in chunks loses them with its
		// raw bytes: what is left reads as the copies, emptied.
		const kept = `received_at < $2 AND (length(raw) > 0 OR id IN (SELECT message_id FROM message_chunks))`
		if _, err := tx.ExecContext(ctx, `UPDATE attachments SET content = $1 WHERE message_id IN
			(SELECT id FROM messages WHERE `+kept+`)`, []byte{}, cutoff); err != nil {
			return fmt.Errorf("pruning attachments: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE messages SET raw = $1, text_body = '', html_body = '', layout = ''
			WHERE `+kept, []byte{}, cutoff)
		if err != nil {
			return fmt.Errorf("pruning messages: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM message_chunks WHERE message_id IN
			(SELECT id FROM messages WHERE received_at < $1)`, cutoff); err != nil {
			return fmt.Errorf("pruning message chunks: %w", err)
		}
		p.Messages, _ = res.RowsAffected()
		res, err = tx.ExecContext(ctx, `DELETE FROM run_attempts WHERE run_id IN
			(SELECT id FROM runs WHERE status IN ($1, $2) AND COALESCE(delivered_at, next_attempt_at) < $3)`, RunDelivered, RunFailed, cutoff)
		if err != nil {
			return fmt.Errorf("pruning run attempts: %w", err)
		}
		p.Runs, _ = res.RowsAffected()
		p.Alerts, err = pruneAlerts(ctx, tx, cutoff)
		return err
	})
	// The bodies kept for the run worker may be of messages pruned now.
	s.bodies.clear()
	return p, err
}
