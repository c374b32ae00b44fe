package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const purposeFlowSecrets = "flow.secrets"

// FlowRecord is a flow as the flows table holds it: the parts the database
// must see (name, the IMAP configuration it reads, enabled) as columns, the
// rest as JSON in Definition, and the activities' secrets sealed: their
// signing secrets and the values of their headers. The Definition stored
// names each header with an empty value; a Definition given to CreateFlow or
// UpdateFlow may carry the values, which are then moved into Headers.
type FlowRecord struct {
	ID         int64
	Name       string
	IMAPID     int64
	IMAPName   string // filled in on reads
	Enabled    bool
	Definition string
	Secrets    []string            // one per activity, plaintext in memory only
	Headers    []map[string]string // per activity, header values, plaintext in memory only
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// flowSecrets is what a flow's sealed column holds. Before header values were
// sealed it was only the JSON array of the signing secrets.
type flowSecrets struct {
	Secrets []string            `json:"secrets"`
	Headers []map[string]string `json:"headers,omitempty"`
}

func decodeFlowSecrets(plain string) (flowSecrets, error) {
	var fs flowSecrets
	if plain == "" {
		return fs, nil
	}
	if strings.HasPrefix(plain, "[") {
		return fs, json.Unmarshal([]byte(plain), &fs.Secrets)
	}
	return fs, json.Unmarshal([]byte(plain), &fs)
}

func (s *Store) sealFlowSecrets(fs flowSecrets, id int64) ([]byte, error) {
	if len(fs.Secrets) == 0 && !anyHeader(fs.Headers) {
		return nil, nil
	}
	data, err := json.Marshal(fs)
	if err != nil {
		return nil, err
	}
	sealed, err := s.box.SealRow(string(data), purposeFlowSecrets, id)
	if err != nil {
		return nil, fmt.Errorf("sealing flow secrets: %w", err)
	}
	return sealed, nil
}

func (s *Store) openFlowSecrets(sealed []byte, id int64) (flowSecrets, error) {
	plain, err := s.box.OpenRow(sealed, purposeFlowSecrets, id)
	if err != nil {
		return flowSecrets{}, err
	}
	return decodeFlowSecrets(plain)
}

func anyHeader(hs []map[string]string) bool {
	for _, h := range hs {
		if len(h) > 0 {
			return true
		}
	}
	return false
}

// hasHeaderValues reports whether a definition holds a header value.
func hasHeaderValues(def string) bool {
	var d struct {
		Activities []struct {
			Headers map[string]string `json:"headers"`
		} `json:"activities"`
	}
	if json.Unmarshal([]byte(def), &d) != nil {
		return false
	}
	for _, a := range d.Activities {
		for _, v := range a.Headers {
			if v != "" {
				return true
			}
		}
	}
	return false
}

// moveHeaderValues moves the header values of definition def into fs.Headers
// and returns def with every value emptied. A header without a value in def
// keeps fs's at the same position; fs's values of headers def no longer
// names are dropped.
func moveHeaderValues(def string, fs *flowSecrets) (string, error) {
	dec := json.NewDecoder(strings.NewReader(def))
	dec.UseNumber()
	var d map[string]any
	if err := dec.Decode(&d); err != nil {
		return "", fmt.Errorf("reading the flow definition: %w", err)
	}
	acts, _ := d["activities"].([]any)
	headers := make([]map[string]string, len(acts))
	for i, a := range acts {
		am, _ := a.(map[string]any)
		hs, _ := am["headers"].(map[string]any)
		if len(hs) == 0 {
			continue
		}
		headers[i] = map[string]string{}
		for k, v := range hs {
			val, _ := v.(string)
			if val == "" && i < len(fs.Headers) {
				val = fs.Headers[i][k]
			}
			headers[i][k] = val
			hs[k] = ""
		}
	}
	fs.Headers = headers
	if !anyHeader(headers) {
		fs.Headers = nil
	}
	out, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// prepareFlow moves f's header values out of its definition and seals its
// secrets for row f.ID.
func (s *Store) prepareFlow(f *FlowRecord) ([]byte, error) {
	fs := flowSecrets{Secrets: f.Secrets, Headers: f.Headers}
	def, err := moveHeaderValues(f.Definition, &fs)
	if err != nil {
		return nil, err
	}
	f.Definition, f.Headers = def, fs.Headers
	return s.sealFlowSecrets(fs, f.ID)
}

// CreateFlow stores a new flow. ErrConflict when its name is taken,
// case-insensitively; ErrNotFound when its IMAP configuration is gone.
func (s *Store) CreateFlow(ctx context.Context, f *FlowRecord) error {
	t := now()
	// The secrets are sealed for the new row's id, known once inserted.
	err := s.Write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO flows (name, name_lower, imap_id, enabled, definition, secrets_sealed, created_at, updated_at)
		VALUES ($1, $2, $3, $4, '{}', NULL, $5, $5) RETURNING id`, f.Name, lower(f.Name), f.IMAPID, f.Enabled, t).Scan(&f.ID)
		if err != nil {
			return err
		}
		if f.ID, err = s.neverReused(ctx, tx, "flows", f.ID); err != nil {
			return err
		}
		sealed, err := s.prepareFlow(f)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE flows SET definition = $1, secrets_sealed = $2 WHERE id = $3`, f.Definition, sealed, f.ID)
		return err
	})
	if err != nil {
		f.ID = 0
	}
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
	sealed, err := s.prepareFlow(f)
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
	fs, err := s.openFlowSecrets(sealed, f.ID)
	if err != nil {
		return f, fmt.Errorf("flow %s: secrets: %w", f.Name, err)
	}
	f.Secrets, f.Headers = fs.Secrets, fs.Headers
	return f, nil
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

// flowsForIMAPSQL reads every flow whose trigger names configuration $1
// (Tx.FlowsForIMAP).
const flowsForIMAPSQL = `SELECT ` + flowColumns + ` FROM flows f LEFT JOIN imap_configs i ON i.id = f.imap_id
		WHERE f.imap_id = $1 ORDER BY f.name_lower`

// flowsStmt is Tx.FlowsForIMAP as a statement held (see held.go): its
// send keeps the flows on configuration imapID for the transaction.
func (t *Tx) flowsStmt(imapID int64) heldStmt {
	var flows []FlowRecord
	return heldStmt{sql: flowsForIMAPSQL, args: []any{imapID}, what: "listing flows",
		scan: func(row interface{ Scan(...any) error }) error {
			f, err := t.s.scanFlow(row)
			flows = append(flows, f)
			return err
		},
		done: func() error {
			if t.flows == nil {
				t.flows = map[int64][]FlowRecord{}
			}
			t.flows[imapID] = flows
			return nil
		}}
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
