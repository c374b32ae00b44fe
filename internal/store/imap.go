package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
)

// Purposes bound to sealed secrets.
const (
	purposeIMAPPassword     = "imap.password"
	purposeIMAPClientSecret = "imap.clientSecret"
)

const imapColumns = `id, name, server_type, type, description, enabled, host, port, username, password_sealed,
	tenant_id, client_id, client_secret_sealed, folder, tls, ca_cert, after_processing, move_to, poll_interval,
	backlog, graph_url, authority_url, auth, token_url, scope, provider, auth_url, created_at, updated_at`

// scanIMAP reads one row. A secret that does not open (a wrong key, a damaged
// value, or one copied from another row) leaves the configuration without it
// and says why in SecretError; GetIMAP turns that into an error.
func (s *Store) scanIMAP(row interface{ Scan(...any) error }) (imapconf.Config, error) {
	var c imapconf.Config
	var pw, cs []byte
	err := row.Scan(&c.ID, &c.Name, &c.ServerType, &c.Type, &c.Description, &c.Enabled, &c.Host, &c.Port,
		&c.Username, &pw, &c.TenantID, &c.ClientID, &cs, &c.Folder, &c.TLS, &c.CACert, &c.AfterProcessing,
		&c.MoveTo, &c.PollInterval, &c.Backlog, &c.GraphURL, &c.AuthorityURL, &c.Auth, &c.TokenURL, &c.Scope,
		&c.Provider, &c.AuthURL, &c.CreatedAt, &c.UpdatedAt)
	if err != nil {
		return c, err
	}
	if c.Password, err = s.box.OpenRow(pw, purposeIMAPPassword, c.ID); err != nil {
		c.Password, c.SecretError = "", "password: "+err.Error()
	}
	if c.ClientSecret, err = s.box.OpenRow(cs, purposeIMAPClientSecret, c.ID); err != nil && c.SecretError == "" {
		c.ClientSecret, c.SecretError = "", "client secret: "+err.Error()
	}
	return c, nil
}

// sealIMAP seals c's secrets for the row c.ID.
func (s *Store) sealIMAP(c *imapconf.Config) (pw, cs []byte, err error) {
	if pw, err = s.box.SealRow(c.Password, purposeIMAPPassword, c.ID); err != nil {
		return nil, nil, fmt.Errorf("sealing password: %w", err)
	}
	if cs, err = s.box.SealRow(c.ClientSecret, purposeIMAPClientSecret, c.ID); err != nil {
		return nil, nil, fmt.Errorf("sealing client secret: %w", err)
	}
	return pw, cs, nil
}

// CreateIMAP stores a new configuration and sets its ID and times.
// ErrConflict when its name is taken, case-insensitively.
func (s *Store) CreateIMAP(ctx context.Context, c *imapconf.Config) error {
	t := now()
	// The secrets are sealed for the new row's id, known once inserted.
	err := s.Write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO imap_configs (name, name_lower, server_type, type, description, enabled,
		host, port, username, password_sealed, tenant_id, client_id, client_secret_sealed, folder, tls, ca_cert,
		after_processing, move_to, poll_interval, backlog, graph_url, authority_url, auth, token_url, scope, provider, auth_url,
		created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, NULL, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
		$24, $25, $26, $26)
		RETURNING id`,
			c.Name, lower(c.Name), c.ServerType, c.Type, c.Description, c.Enabled, c.Host, c.Port, c.Username,
			c.TenantID, c.ClientID, c.Folder, c.TLS, c.CACert, c.AfterProcessing, c.MoveTo, c.PollInterval,
			c.Backlog, c.GraphURL, c.AuthorityURL, c.Auth, c.TokenURL, c.Scope, c.Provider, c.AuthURL, t).Scan(&c.ID)
		if err != nil {
			return err
		}
		if c.ID, err = s.neverReused(ctx, tx, "imap_configs", c.ID); err != nil {
			return err
		}
		pw, cs, err := s.sealIMAP(c)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE imap_configs SET password_sealed = $1, client_secret_sealed = $2 WHERE id = $3`, pw, cs, c.ID)
		return err
	})
	if isUnique(err) {
		c.ID = 0
		return fmt.Errorf("imap configuration %q: %w", c.Name, ErrConflict)
	}
	if err != nil {
		c.ID = 0
		return fmt.Errorf("creating imap configuration %s: %w", c.Name, err)
	}
	c.CreatedAt, c.UpdatedAt = t, t
	return nil
}

// maxCopyNames bounds the search for a free name for a copy.
const maxCopyNames = 1000

// CreateIMAPCopy stores c, a copy of the configuration named original made by
// imapconf.Duplicate. When c.Name is empty the copy takes the first free name
// of imapconf.CopyName(original, 1), (original, 2) …; the unique index
// decides, so that two copies made at once never get the same name. The
// copy has no sign-in (oauth2-delegated): nobody signed in to it yet.
func (s *Store) CreateIMAPCopy(ctx context.Context, c *imapconf.Config, original string) error {
	if c.Name != "" {
		return s.CreateIMAP(ctx, c)
	}
	for n := 1; n <= maxCopyNames; n++ {
		c.Name = imapconf.CopyName(original, n)
		err := s.CreateIMAP(ctx, c)
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
	c.Name = ""
	return fmt.Errorf("no free name for a copy of %q after %d tries: %w", original, maxCopyNames, ErrConflict)
}

// GetIMAP returns the configuration named name, case-insensitively.
func (s *Store) GetIMAP(ctx context.Context, name string) (imapconf.Config, error) {
	c, err := s.scanIMAP(s.r.QueryRowContext(ctx, `SELECT `+imapColumns+` FROM imap_configs WHERE name_lower = $1`, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("imap configuration %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading imap configuration %s: %w", name, err)
	}
	if c.SecretError != "" {
		return c, fmt.Errorf("imap configuration %s: %w", c.Name, &SecretError{Field: c.SecretError})
	}
	return c, nil
}

// SecretError is the error of a configuration whose stored secret does not
// open; it wraps secret.ErrOpen and never carries the secret.
type SecretError struct {
	Field string // the field and why, as Config.SecretError says it
}

func (e *SecretError) Error() string { return e.Field }

// Unwrap lets errors.Is find secret.ErrOpen.
func (e *SecretError) Unwrap() error { return secret.ErrOpen }

// OnlySecret reports whether err is a *SecretError: the configuration was
// read (GetIMAP returns it, without the secret) but its secret does not
// open. Showing it, or editing it with the secret given again, may go on.
func OnlySecret(err error) bool {
	var se *SecretError
	return errors.As(err, &se)
}

// ListIMAP returns up to limit configurations ordered by name,
// case-insensitively, starting after the name after ("" for the first page).
// A configuration whose secret does not open is listed without it, with
// SecretError saying why, so that one bad row does not hide the others.
func (s *Store) ListIMAP(ctx context.Context, after string, limit int) ([]imapconf.Config, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+imapColumns+` FROM imap_configs WHERE name_lower > $1 ORDER BY name_lower LIMIT $2`, lower(after), limit)
	if err != nil {
		return nil, fmt.Errorf("listing imap configurations: %w", err)
	}
	defer rows.Close()
	var out []imapconf.Config
	for rows.Next() {
		c, err := s.scanIMAP(rows)
		if err != nil {
			return nil, fmt.Errorf("listing imap configurations: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing imap configurations: %w", err)
	}
	return out, nil
}

// UpdateIMAP replaces the configuration with ID c.ID by c (a rename included)
// and sets c.UpdatedAt. ErrNotFound when it no longer exists, ErrConflict when
// the new name is taken. When a destination changes
// (imapconf.DestinationChanges), the configuration's sign-in (grant) and
// the sign-ins under way are deleted in the same transaction: its refresh
// token is never sent to another token endpoint, nor an access token to
// another server.
func (s *Store) UpdateIMAP(ctx context.Context, c *imapconf.Config) error {
	pw, cs, err := s.sealIMAP(c)
	if err != nil {
		return err
	}
	t := now()
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR NO KEY UPDATE"
	}
	err = s.Write(ctx, func(tx *sql.Tx) error {
		stored, err := s.scanIMAP(tx.QueryRowContext(ctx, `SELECT `+imapColumns+` FROM imap_configs WHERE id = $1`+lock, c.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("imap configuration %q: %w", c.Name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading the stored configuration: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE imap_configs SET name = $1, name_lower = $2, server_type = $3, type = $4,
		description = $5, enabled = $6, host = $7, port = $8, username = $9, password_sealed = $10, tenant_id = $11,
		client_id = $12, client_secret_sealed = $13, folder = $14, tls = $15, ca_cert = $16, after_processing = $17,
		move_to = $18, poll_interval = $19, backlog = $20, graph_url = $21, authority_url = $22, auth = $23,
		token_url = $24, scope = $25, provider = $26, auth_url = $27, updated_at = $28
		WHERE id = $29`,
			c.Name, lower(c.Name), c.ServerType, c.Type, c.Description, c.Enabled, c.Host, c.Port, c.Username, pw,
			c.TenantID, c.ClientID, cs, c.Folder, c.TLS, c.CACert, c.AfterProcessing, c.MoveTo, c.PollInterval,
			c.Backlog, c.GraphURL, c.AuthorityURL, c.Auth, c.TokenURL, c.Scope, c.Provider, c.AuthURL, t, c.ID)
		if err != nil {
			return err
		}
		if len(imapconf.DestinationChanges(&stored, c)) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_grants WHERE imap_id = $1`, c.ID); err != nil {
			return fmt.Errorf("forgetting the sign-in: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_states WHERE imap_id = $1`, c.ID); err != nil {
			return fmt.Errorf("forgetting the sign-ins under way: %w", err)
		}
		return nil
	})
	if isUnique(err) {
		return fmt.Errorf("imap configuration %q: %w", c.Name, ErrConflict)
	}
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("updating imap configuration %s: %w", c.Name, err)
	}
	c.UpdatedAt = t
	return nil
}

// InUseError is returned when a configuration cannot be deleted because flows
// name it in their Email Trigger.
type InUseError struct {
	Name  string
	Flows []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("imap configuration %q is used by %d flow(s)", e.Name, len(e.Flows))
}

// DeleteIMAP deletes the configuration named name unless a flow names it, in
// which case the error is an *InUseError listing the flows. Messages and runs
// recorded for it are kept; its sign-in (grant) and the sign-ins under way
// go with it (ON DELETE CASCADE).
func (s *Store) DeleteIMAP(ctx context.Context, name string) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM imap_configs WHERE name_lower = $1`, lower(name)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("imap configuration %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("deleting imap configuration %s: %w", name, err)
		}
		flows, err := flowNamesForIMAP(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(flows) > 0 {
			return &InUseError{Name: name, Flows: flows}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM imap_configs WHERE id = $1`, id); err != nil {
			if isForeignKey(err) {
				return &InUseError{Name: name}
			}
			return fmt.Errorf("deleting imap configuration %s: %w", name, err)
		}
		return nil
	})
}

func flowNamesForIMAP(ctx context.Context, tx *sql.Tx, id int64) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM flows WHERE imap_id = $1 ORDER BY name_lower`, id)
	if err != nil {
		return nil, fmt.Errorf("listing flows of imap configuration %d: %w", id, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("listing flows of imap configuration %d: %w", id, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
