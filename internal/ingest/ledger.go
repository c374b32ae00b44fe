package ingest

import (
	"context"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/store"
)

// kindOf returns the source kind configuration c reads: the kind of its
// checkpoint in the store.
func kindOf(c imapconf.Config) store.Kind {
	switch {
	case c.Type == imapconf.TypeMSGraph:
		return store.KindGraph
	case c.ServerType == imapconf.ServerPOP3S:
		return store.KindPOP3
	}
	return store.KindIMAP
}

// Ledger is the record of one mailbox, as its source reads and writes it
// (source.Ledger).
type Ledger struct {
	source.Progress
	in   *Ingester
	cfg  imapconf.Config
	kind store.Kind
	lim  Limits
}

// Ledger returns the ledger of configuration c; its pipelines batch by lim
// and report to p.
func (in *Ingester) Ledger(c imapconf.Config, lim Limits, p source.Progress) *Ledger {
	return &Ledger{Progress: p, in: in, cfg: c, kind: kindOf(c), lim: lim}
}

var _ source.Ledger = (*Ledger)(nil)

// Checkpoint implements source.Ledger. A POP3 mailbox whose checkpoint is
// an IMAP one (the configuration read it over IMAP) has not begun.
func (l *Ledger) Checkpoint(ctx context.Context) (source.Checkpoint, bool, error) {
	cp, ok, err := l.in.store.GetCheckpoint(ctx, l.cfg.ID)
	if l.kind == store.KindPOP3 && cp.Kind == store.KindIMAP {
		return source.Checkpoint{}, false, err
	}
	return source.Checkpoint{Epoch: cp.Epoch, Last: cp.Last, Cursor: cp.Cursor}, ok, err
}

// Begin implements source.Ledger.
func (l *Ledger) Begin(ctx context.Context, cp source.Checkpoint, skip []string) error {
	return l.in.store.SetCheckpoint(ctx, l.cfg.ID, store.Checkpoint{Kind: l.kind, Epoch: cp.Epoch, Last: cp.Last, Cursor: cp.Cursor}, skip)
}

// Known implements source.Ledger.
func (l *Ledger) Known(ctx context.Context) (map[string]bool, error) {
	return l.in.store.SeenIDs(ctx, l.cfg.ID)
}

// Remember implements source.Ledger.
func (l *Ledger) Remember(ctx context.Context, ids []string) error {
	return l.in.store.AddSeenIDs(ctx, l.cfg.ID, ids)
}

// Forget implements source.Ledger.
func (l *Ledger) Forget(ctx context.Context, ids []string) error {
	return l.in.store.ForgetSeenIDs(ctx, l.cfg.ID, ids)
}

// Retain implements source.Ledger.
func (l *Ledger) Retain(ctx context.Context, present map[string]bool) error {
	return l.in.store.RetainSeenIDs(ctx, l.cfg.ID, present)
}

// Owed implements source.Ledger: a Graph mailbox acts by id, so it is owed
// only what was recorded by id. POP3 owes nothing here: the ids recorded
// are what it owes (deleted at the next session if still there).
func (l *Ledger) Owed(ctx context.Context) ([]source.Owed, error) {
	if l.kind == store.KindPOP3 {
		return nil, nil
	}
	os, err := l.in.store.Owed(ctx, l.cfg.ID)
	if err != nil {
		return nil, err
	}
	var owed []source.Owed
	for _, o := range os {
		if l.kind == store.KindGraph && o.ID == "" {
			continue
		}
		owed = append(owed, source.Owed(o))
	}
	return owed, nil
}

// Paid implements source.Ledger.
func (l *Ledger) Paid(ctx context.Context, epoch uint32, done []source.Owed) error {
	uids := make([]uint32, len(done))
	for i, o := range done {
		uids[i] = o.UID
	}
	return l.in.store.Paid(ctx, l.cfg.ID, epoch, uids)
}

// ClearOwed implements source.Ledger.
func (l *Ledger) ClearOwed(ctx context.Context, current uint32) error {
	return l.in.store.ClearOwed(ctx, l.cfg.ID, current)
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
	p := newPipeline(ctx, l.in, guard, l.lim, o, l.Progress, l.key(o.Epoch), l.commit(o))
	p.overlap = l.kind == store.KindIMAP && l.in.store.Dialect() == store.Postgres
	return p, nil
}

// key returns the crash-loop breaker's key of a message.
func (l *Ledger) key(epoch uint32) func(source.Message) string {
	switch l.kind {
	case store.KindGraph:
		return func(m source.Message) string { return KeyGraph(m.ID) }
	case store.KindPOP3:
		return func(m source.Message) string { return KeyUIDL(m.ID) }
	}
	return func(m source.Message) string { return KeyUID(epoch, m.UID) }
}

// commit returns the recording of a batch of a pipeline run with o, and
// the checkpoint stored with it: IMAP's moves to the batch's last UID
// (o.Advance; a first connect's backlog leaves it); POP3's says only that
// reading began; Graph's stores the deltaLink that ends a round (cp) and
// keeps the stored one in the middle of a round. A Graph batch owes its
// after-processing by id.
func (l *Ledger) commit(o source.PipelineOptions) commitFunc {
	return func(ctx context.Context, msgs []store.Incoming, key string, cp *source.Checkpoint, ord order) ([]store.Recorded, error) {
		b := store.Batch{Messages: msgs, Attempt: key, Await: ord.await, Reserved: ord.reserved}
		switch l.kind {
		case store.KindGraph:
			next := store.Checkpoint{Kind: store.KindGraph, KeepCursor: cp == nil}
			if cp != nil {
				next.Cursor = cp.Cursor
			}
			b.Checkpoint, b.ActByID = &next, true
		case store.KindPOP3:
			b.Checkpoint = &store.Checkpoint{Kind: store.KindPOP3}
		default:
			b.Epoch = o.Epoch
			if o.Advance {
				next := store.Checkpoint{Kind: store.KindIMAP, Epoch: o.Epoch}
				if len(msgs) > 0 {
					next.Last = msgs[len(msgs)-1].UID
				}
				b.Checkpoint = &next
			}
		}
		return l.in.Record(ctx, l.cfg, b)
	}
}
