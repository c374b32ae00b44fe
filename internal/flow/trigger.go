package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// Verdict is the outcome of matching one message against one flow.
type Verdict struct {
	FlowID   int64
	FlowName string
	Matched  bool
	Reason   string
	Start    bool // matched and the flow is enabled: a run starts
}

// Evaluate matches a message (decoded subject, first From address) against
// the flows on its mailbox, compiling each flow's trigger (Matchers.Evaluate
// keeps them compiled).
func Evaluate(flows []store.FlowRecord, subject, from string) ([]Verdict, error) {
	return (*Matchers)(nil).Evaluate(flows, subject, from)
}

// Hook is the ingest hook: inside the transaction that records a message,
// it records, per flow on that mailbox, whether the message matched and
// why not, and creates one run per matching enabled flow. A message can
// never start the same flow twice: runs are unique by (flow, message). The
// hook keeps the flows' triggers compiled until a flow changes.
func Hook(st *store.Store) store.RecordHook {
	ms := NewMatchers()
	return func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
		flows, err := tx.FlowsForIMAP(ctx, b.IMAPID) // read once per transaction
		if err != nil {
			return err
		}
		from := ""
		if len(in.Msg.From) > 0 {
			from = in.Msg.From[0].Address
		}
		// The message was recorded just now, in tx: it has no run yet.
		_, err = apply(ctx, tx, ms, flows, id, b.IMAPName, in.Msg.Subject, from, in.Seen, false, true)
		return err
	}
}

// apply records the verdicts for message id and creates the runs, returning
// those created; ms compiles the flows' triggers. With force, a flow that
// has run for the message already gets another run. fresh says the message
// was recorded in tx, so that no run of it can exist to look for.
func apply(ctx context.Context, tx *store.Tx, ms *Matchers, flows []store.FlowRecord, id int64, imapName, subject, from string, received time.Time, force, fresh bool) ([]store.Run, error) {
	verdicts, err := ms.Evaluate(flows, subject, from)
	if err != nil {
		return nil, err
	}
	var runs []store.Run
	for _, v := range verdicts {
		if err := tx.RecordMatch(ctx, id, store.Match{FlowID: v.FlowID, FlowName: v.FlowName, Matched: v.Matched, Reason: v.Reason}); err != nil {
			return nil, err
		}
		if !v.Start {
			continue
		}
		seq := 0
		if !fresh {
			next, exists, err := tx.NextRunSeq(ctx, v.FlowID, id)
			if err != nil {
				return nil, err
			}
			if exists && !force {
				continue
			}
			seq = next
		}
		r := store.Run{FlowID: v.FlowID, FlowName: v.FlowName, MessageID: id, IMAPName: imapName, Seq: seq, ReceivedAt: received}
		created, err := tx.CreateRun(ctx, &r)
		if err != nil {
			return nil, err
		}
		if created {
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// Retrigger matches a recorded message again against the flows on its
// mailbox now, and starts those that match and have no run for it yet (with
// force, also those that have). It returns the runs created and the verdicts.
func Retrigger(ctx context.Context, st *store.Store, messageID int64, force bool) ([]store.Run, []store.Match, error) {
	m, err := st.GetMessage(ctx, messageID)
	if err != nil {
		return nil, nil, err
	}
	from := ""
	if len(m.From) > 0 {
		from = m.From[0].Address
	}
	var runs []store.Run
	err = st.WriteTx(ctx, func(tx *store.Tx) error {
		flows, err := tx.FlowsForIMAP(ctx, m.IMAPID)
		if err != nil {
			return err
		}
		runs, err = apply(ctx, tx, nil, flows, m.ID, m.IMAPName, m.Subject, from, time.Now(), force, false)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("re-triggering message %d: %w", messageID, err)
	}
	matches, err := st.Matches(ctx, messageID)
	return runs, matches, err
}

// Record resolves the configuration f's trigger names, which must exist,
// and returns the record to store; f's trigger then carries the
// configuration's name as stored. A missing configuration is a valid.Errors
// on start.emailTrigger.imap.
func Record(ctx context.Context, st *store.Store, f *Flow) (store.FlowRecord, error) {
	var imapID int64
	if name := f.Start.EmailTrigger.IMAP; name != "" {
		if m := valid.Line(name); m != "" { // never to the database (PostgreSQL refuses NUL)
			return store.FlowRecord{}, valid.Errors{"start.emailTrigger.imap": m}
		}
		c, err := st.GetIMAP(ctx, name)
		var sealed *store.SecretError
		switch {
		case errors.As(err, &sealed):
			// Only its id is needed here, not its secret.
		case errors.Is(err, store.ErrNotFound):
			return store.FlowRecord{}, valid.Errors{"start.emailTrigger.imap": "no IMAP configuration named " + name}
		case err != nil:
			return store.FlowRecord{}, err
		}
		imapID = c.ID
		f.Start.EmailTrigger.IMAP = c.Name
	}
	return store.FlowRecord{Name: f.Name, IMAPID: imapID, Enabled: f.Enabled, Definition: f.Definition(), Secrets: f.Secrets()}, nil
}
