package store

// Ids that SQLite would hand out twice.

import (
	"context"
	"database/sql"
	"fmt"
)

// idSequencesVersion is the migration that adds id_sequences.
const idSequencesVersion = 16

// neverReused returns the id of the row just inserted into table (a
// mailbox configuration or a flow) as id, in tx, after making sure on
// SQLite that no row of table ever had it before. SQLite, without
// AUTOINCREMENT, numbers a new row one above the largest id in the table,
// so once the newest configuration or flow was deleted its id went to the
// next one created, and with it what refers to that id without a foreign
// key: a configuration's checkpoint, seen ids, owed actions and messages;
// a flow's runs (a deleted flow's queued runs went to the new flow's
// webhook). Such a row is renumbered above the largest id the table has
// had, kept in id_sequences (migration 00016); the row is new, so nothing
// refers to it yet. PostgreSQL's sequences never go back: id is returned as
// it is.
func (s *Store) neverReused(ctx context.Context, tx *sql.Tx, table string, id int64) (int64, error) {
	if s.dialect != SQLite || !s.idSequences {
		return id, nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT last FROM id_sequences WHERE name = $1), 0)`, table).Scan(&last); err != nil {
		return 0, fmt.Errorf("reading the largest id %s had: %w", table, err)
	}
	if id <= last {
		// table is one of two names written in this package, never input.
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET id = $1 WHERE id = $2`, last+1, id); err != nil {
			return 0, fmt.Errorf("numbering the new row of %s: %w", table, err)
		}
		id = last + 1
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO id_sequences (name, last) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET last = excluded.last`, table, id); err != nil {
		return 0, fmt.Errorf("keeping the largest id of %s: %w", table, err)
	}
	return id, nil
}
