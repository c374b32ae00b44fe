package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The alert monitor's reads: the run backlog and whether a mailbox is still
// watched at all.

// CountWaitingRuns counts the runs waiting for delivery (pending or
// retrying) that were created before before, counting no further than
// limit: the monitor only asks whether there are more than its threshold.
func (s *Store) CountWaitingRuns(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE `+waitingRuns+`
		AND created_at < $1 LIMIT $2) w`, before.UTC(), limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the runs waiting since before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}

// IMAPEnabledByID reports whether configuration id exists and is enabled.
func (s *Store) IMAPEnabledByID(ctx context.Context, id int64) (bool, error) {
	var enabled bool
	err := s.r.QueryRowContext(ctx, `SELECT enabled FROM imap_configs WHERE id = $1`, id).Scan(&enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading whether imap configuration %d is enabled: %w", id, err)
	}
	return enabled, nil
}
