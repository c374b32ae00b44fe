package store

import (
	"context"
	"fmt"
	"time"
)

// FlowRecord is a flow as the flows table holds it: the parts the database
// must see (name, the IMAP configuration it reads, enabled) as columns, the
// rest as JSON in Definition.
type FlowRecord struct {
	ID         int64
	Name       string
	IMAPID     int64
	Enabled    bool
	Definition string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// CreateFlow stores a new flow. ErrConflict when its name is taken,
// case-insensitively.
func (s *Store) CreateFlow(ctx context.Context, f *FlowRecord) error {
	t := now()
	err := s.w.QueryRowContext(ctx, `INSERT INTO flows (name, name_lower, imap_id, enabled, definition, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id`, f.Name, lower(f.Name), f.IMAPID, f.Enabled, f.Definition, t).Scan(&f.ID)
	if isUnique(err) {
		return fmt.Errorf("flow %q: %w", f.Name, ErrConflict)
	}
	if isForeignKey(err) {
		return fmt.Errorf("flow %q: imap configuration %d: %w", f.Name, f.IMAPID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("creating flow %s: %w", f.Name, err)
	}
	f.CreatedAt, f.UpdatedAt = t, t
	return nil
}

// DeleteFlow deletes the flow named name.
func (s *Store) DeleteFlow(ctx context.Context, name string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM flows WHERE name_lower = $1`, lower(name))
	if err != nil {
		return fmt.Errorf("deleting flow %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("flow %q: %w", name, ErrNotFound)
	}
	return nil
}
