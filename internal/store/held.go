package store

// Statements held back and sent together (PostgreSQL, RecordBatch). A
// database across a network makes every statement a transaction waits for
// cost a round trip: 10 ms away, the eleven of a batch were 110 ms of
// waiting, and with two batches in flight the backlog went no faster than
// about 950 messages a second (docs/benchmarks.md, session 14). The
// statements whose results the batch does not need at once (the inserts
// beside the messages, the checkpoint) and the reads it needs together (the
// fence, the flows, the ids) are held and sent as one pgx batch: the
// protocol's pipelining, one round trip for all of them, run by the server
// in order in the transaction. A statement that fails aborts the
// transaction; its error is the send's, wrapped with what the statement
// did.

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// heldStmt is a statement held for the next send.
type heldStmt struct {
	sql  string
	args []any
	// scan reads each row it returns; nil for a statement whose rows,
	// if any, are not wanted.
	scan func(row interface{ Scan(...any) error }) error
	// done, when set, is called once its rows are read (a check of what
	// scan found).
	done func() error
	what string // what the statement does, for its error
}

// holds reports whether t holds statements back for sending together: a
// batch being recorded on PostgreSQL, on the connection it holds.
func (t *Tx) holds() bool { return t.conn != nil }

// hold queues s for the next send.
func (t *Tx) hold(s heldStmt) { t.held = append(t.held, s) }

// send sends the statements held, in one round trip, and reads their
// results in order. The first that fails ends it; the transaction is then
// aborted on the server and can only be rolled back.
func (t *Tx) send(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if len(t.held) == 0 {
		return nil
	}
	held := t.held
	t.held = nil
	if t.conn == nil {
		return fmt.Errorf("sending %d statement(s) held outside a batch being recorded", len(held))
	}
	err := t.conn.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("sending %d statement(s): the driver's connection is a %T, not pgx's", len(held), dc)
		}
		b := &pgx.Batch{}
		for _, s := range held {
			b.Queue(s.sql, s.args...)
		}
		br := pc.Conn().SendBatch(ctx, b)
		for _, s := range held {
			if err := readHeld(br, s); err != nil {
				br.Close()
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		return br.Close()
	})
	if err != nil {
		t.failed = err
	}
	return err
}

// readHeld reads the result of s from br.
func readHeld(br pgx.BatchResults, s heldStmt) error {
	if s.scan == nil {
		_, err := br.Exec()
		return err
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		if err := s.scan(rows); err != nil {
			rows.Close()
			return err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if s.done != nil {
		return s.done()
	}
	return nil
}

// runOn runs s alone in tx, as send would with others: for a check that
// is held in one transaction and made at once in another (the fence).
func (s heldStmt) runOn(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, s.sql, s.args...)
	if err == nil {
		err = scanRows(rows, nil, func(rs *sql.Rows) error {
			if s.scan == nil {
				return nil
			}
			return s.scan(rs)
		})
	}
	if err == nil && s.done != nil {
		err = s.done()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.what, err)
	}
	return nil
}

// execer runs a statement whose rows nobody reads: a transaction, or
// (heldExec) the statements a batch holds.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// writer is where t's statements that return nothing go: held when t
// holds, else straight to the transaction.
func (t *Tx) writer(what string) execer {
	if t.holds() {
		return heldExec{t: t, what: what}
	}
	return t.tx
}

// heldExec holds each statement it is given: its result is nil, and its
// error comes with the send.
type heldExec struct {
	t    *Tx
	what string
}

func (h heldExec) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	h.t.hold(heldStmt{sql: query, args: args, what: h.what})
	return nil, nil
}
