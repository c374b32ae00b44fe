package store

// Writing many rows in one transaction. On PostgreSQL a set of rows is one
// statement per chunk (INSERT … SELECT FROM unnest of one array per column:
// one round trip, and as many parameters as columns whatever the number of
// rows, far from PostgreSQL's 65,535). On SQLite, in process, there is no
// round trip to save: each row runs one statement, prepared once per
// connection (statements) instead of parsed again for every row.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// col is a column written: its name and its PostgreSQL type (bigint, text,
// boolean, bytea or timestamptz), which says the Go type of its values:
// int64, string, bool, []byte, time.Time or *time.Time (nil for NULL).
type col struct{ name, pgType string }

// pgMaxRows and pgMaxBytes bound one multi-row statement on PostgreSQL:
// its rows, and the bytes of its text and binary values (which the driver
// holds encoded in memory while sending them). Tests lower them.
var (
	pgMaxRows  = 1000
	pgMaxBytes = 4 << 20
)

// insert is an INSERT of rows into table.
type insert struct {
	table string
	cols  []col
	// override inserts the identity column's values given (OVERRIDING
	// SYSTEM VALUE, PostgreSQL).
	override bool
	suffix   string // ON CONFLICT …, RETURNING …
}

// sqlite is q for one row.
func (q insert) sqlite() string {
	names, ps := make([]string, len(q.cols)), make([]string, len(q.cols))
	for i, c := range q.cols {
		names[i], ps[i] = c.name, fmt.Sprintf("$%d", i+1)
	}
	return "INSERT INTO " + q.table + " (" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(ps, ", ") + ") " + q.suffix
}

// postgres is q for any number of rows, one array per column, the rows
// inserted in the arrays' order. The arrays are unnested side by side in
// the select list (in lockstep, as they have the same length), which
// streams the rows where unnest in FROM would first copy every array.
func (q insert) postgres() string {
	names, arrays := make([]string, len(q.cols)), make([]string, len(q.cols))
	for i, c := range q.cols {
		names[i], arrays[i] = `"`+c.name+`"`, fmt.Sprintf("unnest($%d::%s[])", i+1, c.pgType)
	}
	ov := ""
	if q.override {
		ov = " OVERRIDING SYSTEM VALUE"
	}
	return "INSERT INTO " + q.table + " (" + strings.Join(names, ", ") + ")" + ov + " SELECT " + strings.Join(arrays, ", ") + " " + q.suffix
}

// insertRows inserts rows (each one value per column of q, in q's order)
// in t; scan, when set, reads each row the statement returns.
func (t *Tx) insertRows(ctx context.Context, q insert, rows [][]any, scan func(*sql.Rows) error) error {
	if len(rows) == 0 {
		return nil
	}
	if t.s.dialect != Postgres {
		st, err := t.stmt(ctx, q.sqlite())
		if err != nil {
			return err
		}
		for _, row := range rows {
			if scan == nil {
				if _, err := st.ExecContext(ctx, row...); err != nil {
					return err
				}
				continue
			}
			rs, err := st.QueryContext(ctx, row...)
			if err := scanRows(rs, err, scan); err != nil {
				return err
			}
		}
		return nil
	}
	sqlText := q.postgres()
	for len(rows) > 0 {
		n, size := 0, 0
		for n < len(rows) && n < pgMaxRows && (n == 0 || size+rowBytes(rows[n]) <= pgMaxBytes) {
			size += rowBytes(rows[n])
			n++
		}
		args, err := pgArrays(q.cols, rows[:n])
		if err != nil {
			return err
		}
		switch {
		case scan == nil && t.holds():
			t.hold(heldStmt{sql: sqlText, args: args, what: fmt.Sprintf("inserting %d row(s) into %s", n, q.table)})
		case scan == nil:
			if _, err := t.tx.ExecContext(ctx, sqlText, args...); err != nil {
				return err
			}
		default:
			if err := t.send(ctx); err != nil {
				return err
			}
			rs, err := t.tx.QueryContext(ctx, sqlText, args...)
			if err := scanRows(rs, err, scan); err != nil {
				return err
			}
		}
		rows = rows[n:]
	}
	return nil
}

// copyInto is a COPY of rows into table's columns cols (PostgreSQL).
type copyInto struct {
	table string
	cols  []string
}

// copyRows writes rows (each one value per column of c, in c's order) with
// COPY on t's connection: the driver encodes them straight into the
// protocol's 64 KB messages, without holding them all encoded. COPY cannot
// skip a conflicting row: a unique key's violation fails it.
func (t *Tx) copyRows(ctx context.Context, c copyInto, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if err := t.send(ctx); err != nil {
		return err
	}
	return t.conn.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("copying into %s: the driver's connection is a %T, not pgx's", c.table, dc)
		}
		n, err := pc.Conn().CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(rows))
		if err != nil {
			return fmt.Errorf("copying into %s: %w", c.table, err)
		}
		if n != int64(len(rows)) {
			return fmt.Errorf("copying into %s: %d of %d row(s) written", c.table, n, len(rows))
		}
		return nil
	})
}

// scanRows reads every row of a query (rows, err) with scan, and closes
// them.
func scanRows(rows *sql.Rows, err error, scan func(*sql.Rows) error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// rowBytes is the size of a row's text and binary values.
func rowBytes(row []any) int {
	n := 0
	for _, v := range row {
		switch v := v.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		}
	}
	return n
}

// pgArrays turns rows into one array per column.
func pgArrays(cols []col, rows [][]any) ([]any, error) {
	out := make([]any, len(cols))
	for j, c := range cols {
		var err error
		switch c.pgType {
		case "bigint":
			out[j], err = columnOf[int64](rows, j)
		case "text":
			out[j], err = columnOf[string](rows, j)
		case "boolean":
			out[j], err = columnOf[bool](rows, j)
		case "bytea":
			out[j], err = columnOf[[]byte](rows, j)
		case "timestamptz":
			a := make([]pgtype.Timestamptz, len(rows))
			for i, r := range rows {
				switch v := r[j].(type) {
				case time.Time:
					a[i] = pgtype.Timestamptz{Time: v, Valid: true}
				case *time.Time:
					if v != nil {
						a[i] = pgtype.Timestamptz{Time: *v, Valid: true}
					}
				default:
					err = fmt.Errorf("column %s: a %T for a timestamptz", c.name, v)
				}
			}
			out[j] = a
		default:
			err = fmt.Errorf("column %s: unknown type %s", c.name, c.pgType)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// columnOf is column j of rows, whose values are Ts.
func columnOf[T any](rows [][]any, j int) ([]T, error) {
	a := make([]T, len(rows))
	for i, r := range rows {
		v, ok := r[j].(T)
		if !ok {
			return nil, fmt.Errorf("column %d: a %T where a %T belongs", j, r[j], v)
		}
		a[i] = v
	}
	return a, nil
}

// stmt returns query prepared in t (SQLite): the statement the store
// prepared on its connection when it opened (prepareIngest), else one
// prepared for this transaction; kept for the transaction's other rows.
func (t *Tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	var st *sql.Stmt
	var err error
	if ps, ok := t.s.prepared[query]; ok {
		st = t.tx.StmtContext(ctx, ps)
	} else if st, err = t.tx.PrepareContext(ctx, query); err != nil {
		return nil, fmt.Errorf("preparing statement: %w", err)
	}
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[query] = st
	return st, nil
}

// exec runs q in t: on SQLite as a statement prepared once (stmt), on
// PostgreSQL as it is (pgx caches the statements it prepares).
func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if t.s.dialect == Postgres {
		if err := t.send(ctx); err != nil {
			return nil, err
		}
		return t.tx.ExecContext(ctx, q, args...)
	}
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// query runs q in t as exec does, for rows.
func (t *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if t.s.dialect == Postgres {
		if err := t.send(ctx); err != nil {
			return nil, err
		}
		return t.tx.QueryContext(ctx, q, args...)
	}
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRow runs q in t as exec does, for one row.
func (t *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if t.s.dialect != Postgres {
		if st, err := t.stmt(ctx, q); err == nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	// A send that fails aborts the transaction: the query then fails
	// too, and the send's error stays in t.failed.
	_ = t.send(ctx)
	return t.tx.QueryRowContext(ctx, q, args...)
}

// prepareIngest prepares the statements of the ingest path and of the run
// queue (claims, finished deliveries) once on the SQLite writer's only
// connection (database/sql reuses a statement prepared
// on a transaction's connection). One that fails to prepare (an older schema,
// in tests) is prepared per transaction instead.
func (s *Store) prepareIngest(ctx context.Context) {
	if s.dialect == Postgres {
		return // pgx caches the statements it prepares per connection
	}
	s.prepared = map[string]*sql.Stmt{}
	for _, q := range ingestStatements(s.dialect) {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			s.log.Debug("ingest statement not prepared", "error", err)
			continue
		}
		s.prepared[q] = st
	}
}

// closePrepared closes the statements prepareIngest prepared.
func (s *Store) closePrepared() {
	for _, st := range s.prepared {
		st.Close()
	}
}

// ingestStatements are the statements prepareIngest prepares.
func ingestStatements(d Dialect) []string {
	return []string{lookupSQL(d), messageInsert.sqlite(), attachmentInsert.sqlite(), seenInsert.sqlite(), owedInsert.sqlite(),
		matchInsert.sqlite(), runInsert.sqlite(), finishUpdate, attemptInsertOne, claimSQL(d, ""), claimSQL(d, " AND flow_id = $5"), claimSQL(d, sqliteExceptFlows),
		checkpointIMAPSQL, flowsForIMAPSQL}
}
