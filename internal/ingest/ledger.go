package ingest

import (
	"context"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/store"
)

// kind is how the store keeps a mailbox's records: it is shaped by the
// protocol (an IMAP checkpoint; POP3 UIDLs; a Graph deltaLink and ids), and
// Ledger maps the source-neutral source.Ledger onto it here, in one place.
type kind int

const (
	kindIMAP kind = iota
	kindPOP3
	kindGraph
)

func kindOf(c imapconf.Config) kind {
	switch {
	case c.Type == imapconf.TypeMSGraph:
		return kindGraph
	case c.ServerType == imapconf.ServerPOP3S:
		return kindPOP3
	}
	return kindIMAP
}

// pop3Checkpoint is the checkpoint row of a POP3 mailbox: it only says that
// the first connect happened (the UIDLs read are the real checkpoint).
var pop3Checkpoint = store.Checkpoint{}

// Ledger is the record of one mailbox, as its source reads and writes it
// (source.Ledger).
type Ledger struct {
	source.Progress
	in   *Ingester
	cfg  imapconf.Config
	kind kind
	lim  Limits
}

// Ledger returns the ledger of configuration c; its pipelines batch by lim
// and report to p.
func (in *Ingester) Ledger(c imapconf.Config, lim Limits, p source.Progress) *Ledger {
	return &Ledger{Progress: p, in: in, cfg: c, kind: kindOf(c), lim: lim}
}

var _ source.Ledger = (*Ledger)(nil)

// Checkpoint implements source.Ledger.
func (l *Ledger) Checkpoint(ctx context.Context) (source.Checkpoint, bool, error) {
	st := l.in.store
	switch l.kind {
	case kindGraph:
		link, ok, err := st.DeltaLink(ctx, l.cfg.ID)
		return source.Checkpoint{Cursor: link}, ok, err
	case kindPOP3:
		cp, ok, err := st.GetCheckpoint(ctx, l.cfg.ID)
		return source.Checkpoint{}, ok && cp.UIDValidity == pop3Checkpoint.UIDValidity, err
	}
	cp, ok, err := st.GetCheckpoint(ctx, l.cfg.ID)
	return source.Checkpoint{Epoch: cp.UIDValidity, Last: cp.LastUID}, ok, err
}

// Begin implements source.Ledger.
func (l *Ledger) Begin(ctx context.Context, cp source.Checkpoint, skip []string) error {
	st := l.in.store
	switch l.kind {
	case kindGraph:
		return st.SetDeltaLink(ctx, l.cfg.ID, cp.Cursor, skip)
	case kindPOP3:
		return st.MarkPOP3Seen(ctx, l.cfg.ID, skip, pop3Checkpoint)
	}
	return st.SetCheckpoint(ctx, l.cfg.ID, store.Checkpoint{UIDValidity: cp.Epoch, LastUID: cp.Last})
}

// Known implements source.Ledger.
func (l *Ledger) Known(ctx context.Context) (map[string]bool, error) {
	return l.in.store.POP3UIDLs(ctx, l.cfg.ID)
}

// Remember implements source.Ledger.
func (l *Ledger) Remember(ctx context.Context, ids []string) error {
	return l.in.store.RememberIDs(ctx, l.cfg.ID, ids)
}

// Forget implements source.Ledger.
func (l *Ledger) Forget(ctx context.Context, ids []string) error {
	return l.in.store.ForgetIDs(ctx, l.cfg.ID, ids)
}

// Retain implements source.Ledger.
func (l *Ledger) Retain(ctx context.Context, present map[string]bool) error {
	return l.in.store.ForgetPOP3UIDLs(ctx, l.cfg.ID, present)
}

// Owed implements source.Ledger. POP3 owes nothing here: the UIDLs
// recorded are what it owes (deleted at the next session if still there).
func (l *Ledger) Owed(ctx context.Context) ([]source.Owed, error) {
	var owed []source.Owed
	switch l.kind {
	case kindGraph:
		ps, err := l.in.store.PendingGraphActions(ctx, l.cfg.ID)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			owed = append(owed, source.Owed{UID: p.UID, ID: p.GraphID, Action: p.Action, MoveTo: p.MoveTo})
		}
	case kindIMAP:
		ps, err := l.in.store.PendingActions(ctx, l.cfg.ID)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			owed = append(owed, source.Owed{Epoch: p.UIDValidity, UID: p.UID, Action: p.Action, MoveTo: p.MoveTo})
		}
	}
	return owed, nil
}

// Paid implements source.Ledger.
func (l *Ledger) Paid(ctx context.Context, epoch uint32, done []source.Owed) error {
	uids := make([]uint32, len(done))
	for i, o := range done {
		uids[i] = o.UID
	}
	return l.in.store.DonePendingActions(ctx, l.cfg.ID, epoch, uids)
}

// ClearOwed implements source.Ledger.
func (l *Ledger) ClearOwed(ctx context.Context, current uint32) error {
	return l.in.store.ClearPendingActions(ctx, l.cfg.ID, current)
}

// BeforeAction implements source.Ledger: only the lease holder acts on the
// server, so it checks the fence; and before mail is deleted or moved out
// of the folder, the commits that recorded it are made durable against
// power loss (once per batch). Marking as seen destroys nothing and pays
// nothing more.
func (l *Ledger) BeforeAction(ctx context.Context, action string) error {
	if action == imapconf.AfterDelete || action == imapconf.AfterMove {
		return l.in.store.BeforeDestructive(ctx)
	}
	return l.in.store.CheckFence(ctx)
}

// Pipeline implements source.Ledger.
func (l *Ledger) Pipeline(ctx context.Context, o source.PipelineOptions) (source.Pipeline, error) {
	guard, err := l.in.Guard(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	if o.Total > 0 {
		l.Backlog(o.Total)
	}
	return newPipeline(ctx, l.in, guard, l.lim, o, l.Progress, l.key(o.Epoch), l.commit(o)), nil
}

// key returns the crash-loop breaker's key of a message.
func (l *Ledger) key(epoch uint32) func(source.Message) string {
	switch l.kind {
	case kindGraph:
		return func(m source.Message) string { return KeyGraph(m.ID) }
	case kindPOP3:
		return func(m source.Message) string { return KeyUIDL(m.ID) }
	}
	return func(m source.Message) string { return KeyUID(epoch, m.UID) }
}

// commit returns the recording of a batch of a pipeline run with o.
func (l *Ledger) commit(o source.PipelineOptions) commitFunc {
	return func(ctx context.Context, msgs []store.Incoming, key string, cp *source.Checkpoint) ([]store.Recorded, error) {
		switch l.kind {
		case kindGraph:
			var link *string
			if cp != nil {
				link = &cp.Cursor
			}
			return l.in.RecordGraph(ctx, l.cfg, link, msgs, key)
		case kindPOP3:
			return l.in.Record(ctx, l.cfg, pop3Checkpoint, true, msgs, key)
		}
		next := store.Checkpoint{UIDValidity: o.Epoch}
		if o.Advance && len(msgs) > 0 {
			next.LastUID = msgs[len(msgs)-1].UID
		}
		return l.in.Record(ctx, l.cfg, next, o.Advance, msgs, key)
	}
}
