package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// Tx is a write transaction as code outside the store sees it: what the
// ingest hook (RecordHook) and a re-trigger write beside a message, the
// verdicts of its flows and its runs, committed with it or not at all.
type Tx struct {
	s  *Store
	tx *sql.Tx
	// conn is tx's connection, when held (PostgreSQL, RecordBatch): for
	// COPY, which database/sql does not offer.
	conn *sql.Conn
	// flows holds FlowsForIMAP's answers: the flows on a mailbox are read
	// once per transaction (which writes no flows), not once per message.
	flows map[int64][]FlowRecord
	// stmts are the statements prepared in the transaction (SQLite), by
	// their SQL.
	stmts map[string]*sql.Stmt

	// On PostgreSQL, the verdicts and runs of the messages that the batch
	// being recorded has just inserted (fresh; no run can exist for them)
	// are kept here and written together (flush) before the transaction
	// commits or reads runs: a statement for all of them, not one per row.
	fresh   map[int64]bool
	left    int              // fresh messages whose hook has yet to run
	matches [][]any          // rows of matchInsert
	matchAt map[[2]int64]int // (message, flow) → index in matches
	runs    [][]any          // rows of runInsertWithID
	runKeys map[[3]int64]bool
	runIDs  []int64 // ids reserved for runs (reserveRunID)
	made    int     // runs buffered so far

	// ranFor holds the messages CreateRun created a run for, and keep
	// the bodies recordBatch keeps for the run worker once the
	// transaction commits (see bodyCache).
	ranFor map[int64]bool
	keep   []keptBodies

	// held are the statements held for sending together (see held.go),
	// and failed the error of a send, which aborted the transaction.
	held   []heldStmt
	failed error
}

// keptBodies are the decoded bodies of message id (who).
type keptBodies struct {
	id         int64
	who        bodiesOf
	text, html string
}

// createdRun notes that a run of message id was created.
func (t *Tx) createdRun(id int64) {
	if t.ranFor == nil {
		t.ranFor = map[int64]bool{}
	}
	t.ranFor[id] = true
}

// WriteTx runs fn in one write transaction, as Write does.
func (s *Store) WriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		t := &Tx{s: s, tx: tx}
		if err := fn(t); err != nil {
			return err
		}
		return t.flush(ctx)
	})
}

// FlowsForIMAP returns every flow whose trigger names configuration imapID,
// as the transaction sees them. They are read once per transaction: a
// batch's messages share the answer.
func (t *Tx) FlowsForIMAP(ctx context.Context, imapID int64) ([]FlowRecord, error) {
	if flows, ok := t.flows[imapID]; ok {
		return flows, nil
	}
	if err := t.send(ctx); err != nil {
		return nil, err
	}
	flows, err := t.s.listFlows(ctx, prepared{t}, flowsForIMAPSQL, imapID)
	if err != nil {
		return nil, err
	}
	if t.flows == nil {
		t.flows = map[int64][]FlowRecord{}
	}
	t.flows[imapID] = flows
	return flows, nil
}

// buffered says whether the writes for message id wait for flush.
func (t *Tx) buffered(id int64) bool { return t.s.dialect == Postgres && t.fresh[id] }

// RecordMatch records m for message messageID (replacing an earlier
// verdict, as a re-trigger does).
func (t *Tx) RecordMatch(ctx context.Context, messageID int64, m Match) error {
	row := []any{messageID, m.FlowID, text(m.FlowName), m.Matched, text(m.Reason)}
	if t.buffered(messageID) {
		k := [2]int64{messageID, m.FlowID}
		if i, ok := t.matchAt[k]; ok {
			t.matches[i] = row // one statement cannot upsert a row twice
			return nil
		}
		if t.matchAt == nil {
			t.matchAt = map[[2]int64]int{}
		}
		t.matchAt[k] = len(t.matches)
		t.matches = append(t.matches, row)
		return nil
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if err := t.insertRows(ctx, matchInsert, [][]any{row}, nil); err != nil {
		return fmt.Errorf("recording match of flow %s: %w", m.FlowName, err)
	}
	return nil
}

// CreateRun creates run r, due now, setting r.ID. created is false when the
// (flow, message, seq) run exists already.
func (t *Tx) CreateRun(ctx context.Context, r *Run) (created bool, err error) {
	tm := now()
	if r.PublicID == "" {
		r.PublicID = NewRunID()
	}
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = tm
	}
	r.Status, r.CreatedAt, r.NextAttemptAt = RunPending, tm, tm
	if t.buffered(r.MessageID) {
		k := [3]int64{r.FlowID, r.MessageID, int64(r.Seq)}
		if t.runKeys[k] {
			return false, nil
		}
		id, err := t.reserveRunID(ctx)
		if err != nil {
			return false, fmt.Errorf("creating run of flow %s for message %d: %w", r.FlowName, r.MessageID, err)
		}
		r.ID = id
		if t.runKeys == nil {
			t.runKeys = map[[3]int64]bool{}
		}
		t.runKeys[k] = true
		t.runs = append(t.runs, append([]any{id}, runRow(r)...))
		t.made++
		t.createdRun(r.MessageID)
		return true, nil
	}
	if err := t.flush(ctx); err != nil {
		return false, err
	}
	err = t.insertRows(ctx, runInsert, [][]any{runRow(r)}, func(rs *sql.Rows) error {
		created = true
		return rs.Scan(&r.ID)
	})
	if err != nil {
		return false, fmt.Errorf("creating run of flow %s for message %d: %w", r.FlowName, r.MessageID, err)
	}
	if created {
		t.createdRun(r.MessageID)
	}
	return created, nil
}

// reserveRunID returns the id of a run to insert later (PostgreSQL),
// reserving ids from the runs' sequence for the runs the batch's remaining
// hooks are likely to create, at the rate they created runs so far.
func (t *Tx) reserveRunID(ctx context.Context) (int64, error) {
	if len(t.runIDs) == 0 {
		done := len(t.fresh) - t.left // messages whose hook ran
		per := max(1, (t.made+done)/(done+1))
		t.holdRunIDs(`SELECT nextval(pg_get_serial_sequence('runs', 'id')) FROM generate_series(1, $1)`, max(1, t.left)*per)
		if err := t.send(ctx); err != nil {
			return 0, err
		}
		if len(t.runIDs) == 0 {
			return 0, fmt.Errorf("reserving run ids: none reserved")
		}
	}
	id := t.runIDs[0]
	t.runIDs = t.runIDs[1:]
	return id, nil
}

// holdRunIDs holds query, which reserves ids for runs (its arguments args),
// adding them to those reserveRunID hands out.
func (t *Tx) holdRunIDs(query string, args ...any) {
	t.hold(heldStmt{sql: query, args: args, what: "reserving run ids",
		scan: func(rs interface{ Scan(...any) error }) error {
			var id int64
			err := rs.Scan(&id)
			t.runIDs = append(t.runIDs, id)
			return err
		},
		done: func() error { slices.Sort(t.runIDs); return nil }})
}

// flush writes the matches and runs buffered (while t holds statements,
// holds those writes).
func (t *Tx) flush(ctx context.Context) error {
	if len(t.matches) > 0 {
		if err := t.insertRows(ctx, matchInsert, t.matches, nil); err != nil {
			return fmt.Errorf("recording %d match(es): %w", len(t.matches), err)
		}
		t.matches = nil
		clear(t.matchAt)
	}
	if len(t.runs) > 0 {
		if err := t.insertRows(ctx, runInsertWithID, t.runs, nil); err != nil {
			return fmt.Errorf("creating %d run(s): %w", len(t.runs), err)
		}
		t.runs = nil
	}
	return nil
}

// NextRunSeq returns the seq a new forced run of flow for message would
// get, and whether a run exists at all.
func (t *Tx) NextRunSeq(ctx context.Context, flowID, messageID int64) (next int, exists bool, err error) {
	if err := t.flush(ctx); err != nil {
		return 0, false, err
	}
	if err := t.send(ctx); err != nil {
		return 0, false, err
	}
	return nextRunSeq(ctx, t.tx, flowID, messageID)
}
