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
// did. The run worker's claims, finishes, hand-backs and reads go the same
// way, each as a transaction of its own (pipelinedWrite, pipelinedRead).

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
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
	err := sendHeld(ctx, t.conn, "", held)
	if err != nil {
		t.failed = err
	}
	return err
}

// sendHeld sends held on c as one pgx batch, after the statement first
// when it is not "" (a BEGIN), and reads their results in order.
func sendHeld(ctx context.Context, c *sql.Conn, first string, held []heldStmt) error {
	return c.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("sending %d statement(s): the driver's connection is a %T, not pgx's", len(held), dc)
		}
		b := &pgx.Batch{}
		if first != "" {
			b.Queue(first)
		}
		for _, s := range held {
			b.Queue(s.sql, s.args...)
		}
		br := pc.Conn().SendBatch(ctx, b)
		if first != "" {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("%s: %w", first, err)
			}
		}
		for _, s := range held {
			if err := readHeld(br, s); err != nil {
				br.Close()
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		return br.Close()
	})
}

// pipelinedWrite runs stmts on a PostgreSQL connection in one round trip,
// as one transaction: all of them or none take effect. When check is set,
// it is called once their results are read, and the transaction commits
// only if it returns nil (a second round trip); without it the statements
// are the protocol's implicit transaction, committed with them. When ctx
// carries a Fence (WithFence), the lease is checked first, as Write does,
// and the transaction commits only once it has been read.
//
// The run worker's statements go this way: with a database 10 ms away,
// the BEGIN, each statement and the COMMIT of a claim, of a finish and of
// the reads before a delivery were 10 ms each that the run waited
// (docs/benchmarks.md, session 15).
func (s *Store) pipelinedWrite(ctx context.Context, stmts []heldStmt, check func() error) error {
	if f, ok := fenceFrom(ctx); ok {
		stmts = append([]heldStmt{s.fenceStmt(f)}, stmts...)
		if check == nil {
			check = func() error { return nil }
		}
	}
	return s.pipelined(ctx, stmts, check)
}

// pipelinedRead runs the queries stmts on a PostgreSQL connection in one
// round trip, in one transaction (one snapshot).
func (s *Store) pipelinedRead(ctx context.Context, stmts []heldStmt) error {
	return s.pipelined(ctx, stmts, nil)
}

// pipelined is pipelinedWrite without the fence.
func (s *Store) pipelined(ctx context.Context, stmts []heldStmt, check func() error) error {
	if s.dialect != Postgres {
		return fmt.Errorf("sending %d statement(s) together: only on PostgreSQL", len(stmts))
	}
	if len(stmts) == 0 {
		return nil
	}
	c, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("taking a connection: %w", err)
	}
	defer c.Close()
	if check == nil {
		return sendHeld(ctx, c, "", stmts)
	}
	end := "COMMIT"
	err = sendHeld(ctx, c, "BEGIN", stmts)
	if err == nil {
		err = check()
	}
	if err != nil {
		end = "ROLLBACK"
	}
	if cerr := c.Raw(func(dc any) error {
		_, err := dc.(interface{ Conn() *pgx.Conn }).Conn().Exec(ctx, end)
		if err != nil {
			// The connection may still be in the transaction:
			// never back to the pool.
			return errors.Join(err, driver.ErrBadConn)
		}
		return nil
	}); cerr != nil && err == nil {
		return fmt.Errorf("committing: %w", cerr)
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

// runOn runs s alone on q (a transaction, or SQLite's pool), as send would
// with others: for a check that is held in one transaction and made at
// once in another (the fence), or statements sent together on PostgreSQL
// and one after the other on SQLite (GetMessages).
func (s heldStmt) runOn(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, s.sql, s.args...)
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
	return prepared{t}
}

// prepared runs t's statements as Tx.exec and Tx.query do: on SQLite
// prepared once on the writer's connection when they are among
// ingestStatements, else once per transaction; on PostgreSQL after what t
// holds is sent.
type prepared struct{ t *Tx }

func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.t.exec(ctx, query, args...)
}

func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.t.query(ctx, query, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.t.queryRow(ctx, query, args...)
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
