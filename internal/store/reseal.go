package store

import (
	"context"
	"fmt"

	"mailtrigger/internal/secret"
)

// resealLegacy re-seals the secrets stored before they were bound to their
// row (secret.IsLegacy: bound to their field only) so that they are bound to
// both, and moves plaintext webhook header values into the flows' sealed
// secrets. It runs at every start and finds nothing to do once done. Each
// value is replaced only if it is still the one read, so that an edit made
// meanwhile (another replica) wins. A value that does not open (a wrong key)
// is left as it is: reading it reports the error.
func (s *Store) resealLegacy(ctx context.Context) error {
	if err := s.resealIMAP(ctx); err != nil {
		return fmt.Errorf("re-sealing imap secrets: %w", err)
	}
	if err := s.resealFlows(ctx); err != nil {
		return fmt.Errorf("re-sealing flow secrets: %w", err)
	}
	return nil
}

type legacyValue struct {
	id     int64
	name   string
	column string
	value  []byte
}

func (s *Store) resealIMAP(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, `SELECT id, name, password_sealed, client_secret_sealed FROM imap_configs`)
	if err != nil {
		return err
	}
	var todo []legacyValue
	for rows.Next() {
		var id int64
		var name string
		var pw, cs []byte
		if err := rows.Scan(&id, &name, &pw, &cs); err != nil {
			rows.Close()
			return err
		}
		if secret.IsLegacy(pw) {
			todo = append(todo, legacyValue{id, name, "password_sealed", pw})
		}
		if secret.IsLegacy(cs) {
			todo = append(todo, legacyValue{id, name, "client_secret_sealed", cs})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, v := range todo {
		purpose := purposeIMAPPassword
		if v.column == "client_secret_sealed" {
			purpose = purposeIMAPClientSecret
		}
		plain, err := s.box.Open(v.value, purpose)
		if err != nil {
			s.log.Warn("a stored secret does not open; left as it is", "imap", v.name, "field", v.column, "err", err)
			continue
		}
		sealed, err := s.box.SealRow(plain, purpose, v.id)
		if err != nil {
			return err
		}
		// The column names come from the two constants above.
		if _, err := s.w.ExecContext(ctx, `UPDATE imap_configs SET `+v.column+` = $1 WHERE id = $2 AND `+v.column+` = $3`,
			sealed, v.id, v.value); err != nil {
			return err
		}
		s.log.Info("stored secret re-sealed for its row", "imap", v.name, "field", v.column)
	}
	return nil
}

func (s *Store) resealFlows(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, `SELECT id, name, definition, secrets_sealed FROM flows`)
	if err != nil {
		return err
	}
	type flowRow struct {
		id        int64
		name, def string
		sealed    []byte
	}
	var todo []flowRow
	for rows.Next() {
		var f flowRow
		if err := rows.Scan(&f.id, &f.name, &f.def, &f.sealed); err != nil {
			rows.Close()
			return err
		}
		if secret.IsLegacy(f.sealed) || hasHeaderValues(f.def) {
			todo = append(todo, f)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, f := range todo {
		var fs flowSecrets
		if secret.IsLegacy(f.sealed) {
			plain, err := s.box.Open(f.sealed, purposeFlowSecrets)
			if err != nil {
				s.log.Warn("a flow's stored secrets do not open; left as they are", "flow", f.name, "err", err)
				continue
			}
			if fs, err = decodeFlowSecrets(plain); err != nil {
				s.log.Warn("a flow's stored secrets do not read; left as they are", "flow", f.name, "err", err)
				continue
			}
		} else if fs, err = s.openFlowSecrets(f.sealed, f.id); err != nil {
			s.log.Warn("a flow's stored secrets do not open; left as they are", "flow", f.name, "err", err)
			continue
		}
		def, err := moveHeaderValues(f.def, &fs)
		if err != nil {
			s.log.Warn("a flow's definition does not read; left as it is", "flow", f.name, "err", err)
			continue
		}
		sealed, err := s.sealFlowSecrets(fs, f.id)
		if err != nil {
			return err
		}
		res, err := s.w.ExecContext(ctx, `UPDATE flows SET definition = $1, secrets_sealed = $2 WHERE id = $3 AND definition = $4
			AND COALESCE(secrets_sealed, $5) = COALESCE($6, $5)`, def, sealed, f.id, f.def, []byte{0}, f.sealed)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			s.log.Info("flow secrets re-sealed for their row, header values sealed", "flow", f.name)
		}
	}
	return nil
}
