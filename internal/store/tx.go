package store

import (
	"context"
	"database/sql"
)

// Tx is a write transaction as code outside the store sees it: what the
// ingest hook (RecordHook) and a re-trigger write beside a message, the
// verdicts of its flows and its runs, committed with it or not at all.
type Tx struct {
	s  *Store
	tx *sql.Tx
	// flows holds FlowsForIMAP's answers: the flows on a mailbox are read
	// once per transaction (which writes no flows), not once per message.
	flows map[int64][]FlowRecord
}

// WriteTx runs fn in one write transaction, as Write does.
func (s *Store) WriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return fn(&Tx{s: s, tx: tx}) })
}

// FlowsForIMAP returns every flow whose trigger names configuration imapID,
// as the transaction sees them. They are read once per transaction: a
// batch's messages share the answer.
func (t *Tx) FlowsForIMAP(ctx context.Context, imapID int64) ([]FlowRecord, error) {
	if flows, ok := t.flows[imapID]; ok {
		return flows, nil
	}
	flows, err := t.s.FlowsForIMAP(ctx, t.tx, imapID)
	if err != nil {
		return nil, err
	}
	if t.flows == nil {
		t.flows = map[int64][]FlowRecord{}
	}
	t.flows[imapID] = flows
	return flows, nil
}

// RecordMatch records m for message messageID (replacing an earlier
// verdict, as a re-trigger does).
func (t *Tx) RecordMatch(ctx context.Context, messageID int64, m Match) error {
	return recordMatch(ctx, t.tx, messageID, m)
}

// CreateRun creates run r, due now. created is false when the (flow,
// message, seq) run exists already.
func (t *Tx) CreateRun(ctx context.Context, r *Run) (created bool, err error) {
	return createRun(ctx, t.tx, r)
}

// NextRunSeq returns the seq a new forced run of flow for message would
// get, and whether a run exists at all.
func (t *Tx) NextRunSeq(ctx context.Context, flowID, messageID int64) (next int, exists bool, err error) {
	return nextRunSeq(ctx, t.tx, flowID, messageID)
}
