package graphsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
)

// rememberEvery bounds the ids of read messages skipped by a first
// connect's backlog "unseen" that are held before they are remembered.
const rememberEvery = 500

// Source is the source.Source of a Microsoft Graph mailbox folder: each
// Sync (a poll, every poll interval) runs one delta round.
//
// The checkpoint is the deltaLink, stored in the transaction that records
// the last messages of its delta round (earlier batches of a round keep the
// old link: a crash reads the round again, and the Graph ids, remembered
// with the messages, keep anything from being recorded twice). The
// after-processing owed for each message recorded is remembered in the same
// transaction and applied after the commit that ends the round (never in
// the middle of a round, whose later pages moving or deleting messages
// could shift); what a crash or a failure left undone is applied at the
// start of the next poll.
type Source struct {
	cfg    imapconf.Config
	o      Options
	log    *slog.Logger
	client *Client
	// known and removed serve the client's Options.Known and Removed for
	// the round under way.
	known   func(id string) bool
	removed func(id string)
}

var _ source.Source = (*Source)(nil)

// NewSource returns the Source of configuration cfg (o.Known and o.Removed
// are its own).
func NewSource(cfg imapconf.Config, o Options) *Source {
	return &Source{cfg: cfg, o: o, log: source.Logger(o.Logger)}
}

// Connect makes a new client for the session (it talks to no server yet).
func (s *Source) Connect(context.Context) error {
	o := s.o
	o.Known = func(id string) bool { return s.known(id) }
	o.Removed = func(id string) { s.removed(id) }
	c, err := New(s.cfg, o)
	if err != nil {
		return err
	}
	s.client = c
	return nil
}

// Close implements source.Source.
func (s *Source) Close() error {
	s.client = nil
	return nil
}

// Waiting implements source.Source.
func (s *Source) Waiting() (string, time.Duration) { return imapconf.StatePolling, 0 }

// Wait waits for the poll interval.
func (s *Source) Wait(ctx context.Context) error {
	return source.Sleep(ctx, time.Duration(s.cfg.PollInterval)*time.Second)
}

// apply does after-processing action on the messages owed it: the Apply
// of source.RedoOwed.
func (s *Source) apply(ctx context.Context, action, moveTo string, owed []source.Owed) error {
	ids := make([]string, len(owed))
	for i, o := range owed {
		ids[i] = o.ID
	}
	return s.client.Apply(ctx, action, moveTo, ids)
}

// Sync runs one delta round. The message ids remembered stay bounded by
// what the folder holds: the ids the delta reports as removed are forgotten
// at the end of the round, and a round that read the whole folder (the
// first, or a resync after the delta token expired, which reports no
// removals) forgets every id it did not see. Forgetting comes before the
// commit of the round's deltaLink: if a crash comes between, the round is
// read again and reports the same removals (Graph gives a moved message a
// new id, so a removed id never comes back).
func (s *Source) Sync(ctx context.Context, l source.Ledger) error {
	l.State(imapconf.StateSyncing)
	// What a crash or a failure left owed (Graph has no epochs: 0).
	if err := source.RedoOwed(ctx, l, s.log, 0, s.apply); err != nil {
		return err
	}
	ids, err := l.Known(ctx)
	if err != nil {
		return err
	}
	// seen are the ids of this round's delta, gone those it reported as
	// removed.
	seen := map[string]bool{}
	var gone []string
	s.known = func(id string) bool { seen[id] = true; return ids[id] }
	s.removed = func(id string) { gone = append(gone, id) }
	cp, ok, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	link := cp.Cursor
	skipRead := false
	if !ok {
		switch s.cfg.Backlog {
		case imapconf.BacklogAll:
			s.log.Info("first connect: reading all the mail")
		case imapconf.BacklogUnseen:
			s.log.Info("first connect: reading the unread mail")
			skipRead = true
		default:
			// Prime the delta, remembering every message there is, so
			// that a later change to one (marked read…) is not taken for
			// new mail.
			var present []string
			s.known = func(id string) bool { present = append(present, id); return true }
			primed, err := s.client.Delta(ctx, "", func(Message) error { return nil })
			if err != nil {
				return err
			}
			if err := l.Begin(ctx, source.Checkpoint{Cursor: primed}, present); err != nil {
				return err
			}
			s.log.Info("first connect: only mail arriving from now on is read", "skipped", len(present))
			for _, id := range present {
				ids[id] = true
			}
			s.known = func(id string) bool { seen[id] = true; return ids[id] }
			link = primed
		}
	}

	p, err := l.Pipeline(ctx, source.PipelineOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	// seenRead are ids of read messages a first connect with backlog
	// "unseen" skips: remembered, not recorded.
	var seenRead []string
	remember := func() error {
		if len(seenRead) == 0 {
			return nil
		}
		err := l.Remember(ctx, seenRead)
		seenRead = seenRead[:0]
		return err
	}
	fn := func(m Message) error {
		ids[m.ID], seen[m.ID] = true, true
		if skipRead && m.IsRead {
			if m.Spool != nil {
				_ = m.Spool.Close()
			}
			seenRead = append(seenRead, m.ID)
			if len(seenRead) >= rememberEvery {
				return remember()
			}
			return nil
		}
		return p.Add(source.Message{ID: m.ID, Raw: m.Raw, Spool: m.Spool, Size: m.Size, TooLarge: m.TooLarge})
	}
	full := link == ""
	next, err := s.client.Delta(ctx, link, fn)
	if errors.Is(err, ErrResync) {
		// Graph forgot the delta token: read the folder again from the
		// start; the ids remembered keep what was recorded from being
		// recorded again.
		s.log.Warn("delta token expired; reading the folder again", "err", err)
		if err := p.Flush(nil); err != nil {
			return fmt.Errorf("reading new mail: %w", err)
		}
		clear(seen)
		gone = gone[:0]
		full = true
		next, err = s.client.Delta(ctx, "", fn)
	}
	if err != nil {
		return err
	}
	if err := remember(); err != nil {
		return err
	}
	if full {
		// The whole folder was listed: what it did not list is gone.
		for id := range ids {
			if !seen[id] {
				gone = append(gone, id)
			}
		}
	}
	if len(gone) > 0 {
		if err := l.Forget(ctx, gone); err != nil {
			return err
		}
		for _, id := range gone {
			delete(ids, id)
		}
		s.log.Debug("forgot the ids of messages gone from the folder", "messages", len(gone))
	}
	// The round is over: record its last batch with the deltaLink, and
	// only now act on the messages (moving or deleting them in the middle
	// of a round would shift the pages still to come).
	if err := p.Flush(&source.Checkpoint{Cursor: next}); err != nil {
		return fmt.Errorf("reading new mail: %w", err)
	}
	return source.RedoOwed(ctx, l, nil, 0, s.apply)
}
