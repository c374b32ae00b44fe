package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const purposeFlowSecrets = "flow.secrets"

// FlowRecord is a flow as the flows table holds it: the parts the database
// must see (name, the IMAP configuration it reads, enabled) as columns, the
// rest as JSON in Definition, and the activities' secrets sealed.
type FlowRecord struct {
	ID         int64
	Name       string
	IMAPID     int64
	IMAPName   string // filled in on reads
	Enabled    bool
	Definition string
	Secrets    []string // one per activity, plaintext in memory only
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func (s *Store) sealSecrets(secrets []string) ([]byte, error) {
	if len(secrets) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(secrets)
	if err != nil {
		return nil, err
	}
	sealed, err := s.box.Seal(string(data), purposeFlowSecrets)
	if err != nil {
		return nil, fmt.Errorf("sealing flow secrets: %w", err)
	}
	return sealed, nil
}

func (s *Store) openSecrets(sealed []byte, name string) ([]string, error) {
	plain, err := s.box.Open(sealed, purposeFlowSecrets)
	if err != nil {
		return nil, fmt.Errorf("flow %s: secrets: %w", name, err)
	}
	if plain == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(plain), &out); err != nil {
		return nil, fmt.Errorf("flow %s: secrets: %w", name, err)
	}
	return out, nil
}

// CreateFlow stores a new flow. ErrConflict when its name is taken,
// case-insensitively; ErrNotFound when its IMAP configuration is gone.
func (s *Store) CreateFlow(ctx context.Context, f *FlowRecord) error {
	sealed, err := s.sealSecrets(f.Secrets)
	if err != nil {
		return err
	}
	t := now()
	err = s.w.QueryRowContext(ctx, `INSERT INTO flows (name, name_lower, imap_id, enabled, definition, secrets_sealed, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id`, f.Name, lower(f.Name), f.IMAPID, f.Enabled, f.Definition, sealed, t).Scan(&f.ID)
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

// UpdateFlow replaces flow f.ID by f (a rename included).
func (s *Store) UpdateFlow(ctx context.Context, f *FlowRecord) error {
	sealed, err := s.sealSecrets(f.Secrets)
	if err != nil {
		return err
	}
	t := now()
	res, err := s.w.ExecContext(ctx, `UPDATE flows SET name = $1, name_lower = $2, imap_id = $3, enabled = $4, definition = $5,
		secrets_sealed = $6, updated_at = $7 WHERE id = $8`, f.Name, lower(f.Name), f.IMAPID, f.Enabled, f.Definition, sealed, t, f.ID)
	if isUnique(err) {
		return fmt.Errorf("flow %q: %w", f.Name, ErrConflict)
	}
	if isForeignKey(err) {
		return fmt.Errorf("flow %q: imap configuration %d: %w", f.Name, f.IMAPID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("updating flow %s: %w", f.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("flow %q: %w", f.Name, ErrNotFound)
	}
	f.UpdatedAt = t
	return nil
}

// DeleteFlow deletes the flow named name. Its runs are kept.
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

const flowColumns = `f.id, f.name, f.imap_id, COALESCE(i.name, ''), f.enabled, f.definition, f.secrets_sealed, f.created_at, f.updated_at`

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) scanFlow(row interface{ Scan(...any) error }) (FlowRecord, error) {
	var f FlowRecord
	var sealed []byte
	var imapID sql.NullInt64
	if err := row.Scan(&f.ID, &f.Name, &imapID, &f.IMAPName, &f.Enabled, &f.Definition, &sealed, &f.CreatedAt, &f.UpdatedAt); err != nil {
		return f, err
	}
	f.IMAPID = imapID.Int64
	var err error
	f.Secrets, err = s.openSecrets(sealed, f.Name)
	return f, err
}

// GetFlow returns the flow named name, case-insensitively.
func (s *Store) GetFlow(ctx context.Context, name string) (FlowRecord, error) {
	f, err := s.scanFlow(s.r.QueryRowContext(ctx, `SELECT `+flowColumns+` FROM flows f LEFT JOIN imap_configs i ON i.id = f.imap_id
		WHERE f.name_lower = $1`, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("flow %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("reading flow %s: %w", name, err)
	}
	return f, nil
}

// GetFlowByID returns flow id.
func (s *Store) GetFlowByID(ctx context.Context, id int64) (FlowRecord, error) {
	f, err := s.scanFlow(s.r.QueryRowContext(ctx, `SELECT `+flowColumns+` FROM flows f LEFT JOIN imap_configs i ON i.id = f.imap_id
		WHERE f.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("flow %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("reading flow %d: %w", id, err)
	}
	return f, nil
}

// ListFlows returns up to limit flows by name after the name after.
func (s *Store) ListFlows(ctx context.Context, after string, limit int) ([]FlowRecord, error) {
	return s.listFlows(ctx, s.r, `SELECT `+flowColumns+` FROM flows f LEFT JOIN imap_configs i ON i.id = f.imap_id
		WHERE f.name_lower > $1 ORDER BY f.name_lower LIMIT $2`, lower(after), limit)
}

// FlowsForIMAP returns every flow whose trigger names configuration imapID,
// read in tx when tx is not nil (the ingest transaction).
func (s *Store) FlowsForIMAP(ctx context.Context, tx *sql.Tx, imapID int64) ([]FlowRecord, error) {
	var q querier = s.r
	if tx != nil {
		q = tx
	}
	return s.listFlows(ctx, q, `SELECT `+flowColumns+` FROM flows f LEFT JOIN imap_configs i ON i.id = f.imap_id
		WHERE f.imap_id = $1 ORDER BY f.name_lower`, imapID)
}

func (s *Store) listFlows(ctx context.Context, q querier, query string, args ...any) ([]FlowRecord, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing flows: %w", err)
	}
	defer rows.Close()
	var out []FlowRecord
	for rows.Next() {
		f, err := s.scanFlow(rows)
		if err != nil {
			return nil, fmt.Errorf("listing flows: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing flows: %w", err)
	}
	return out, nil
}
