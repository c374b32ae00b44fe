package watch

import (
	"context"
	"errors"
	"fmt"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/store"
)

// graphSession reads a Microsoft Graph mailbox folder (type msgraph) every
// pollInterval until a poll fails or ctx ends. progressed is true once a
// poll went through.
//
// The checkpoint is the deltaLink, stored in the transaction that records
// the last messages of its delta round (earlier batches of a round keep the
// old link: a crash reads the round again, and the Graph ids, remembered
// with the messages like POP3 unique ids, keep anything from being recorded
// twice). The after-processing owed for each message recorded is remembered
// in the same transaction and applied after the commit that ends the round
// (never in the middle of a round, whose later pages moving or deleting
// messages could shift); what a crash or a failure left undone is applied
// at the start of the next poll.
func (w *watcher) graphSession(ctx context.Context) (progressed bool, err error) {
	w.state(imapconf.StateConnecting)
	var known func(id string) bool
	var removed func(id string)
	c, err := graphsource.New(w.cfg, graphsource.Options{Logger: w.log, SizeCap: w.m.opts.SizeCap, Dial: w.m.opts.Egress.Dialer(),
		Known: func(id string) bool { return known(id) }, Removed: func(id string) { removed(id) }})
	if err != nil {
		return false, err
	}
	for {
		if err := w.graphPoll(ctx, c, &known, &removed); err != nil {
			return progressed, err
		}
		progressed = true
		if err := w.polled(ctx); err != nil {
			return progressed, err
		}
	}
}

// graphRedo applies the after-processing owed for recorded messages.
func (w *watcher) graphRedo(ctx context.Context, c *graphsource.Client) error {
	st := w.m.store
	owed, err := st.PendingGraphActions(ctx, w.cfg.ID)
	if err != nil || len(owed) == 0 {
		return err
	}
	type key struct{ action, moveTo string }
	groups := map[key][]store.PendingGraphAction{}
	var order []key
	for _, p := range owed {
		k := key{p.Action, p.MoveTo}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], p)
	}
	for _, k := range order {
		var ids []string
		var uids []uint32
		for _, p := range groups[k] {
			ids, uids = append(ids, p.GraphID), append(uids, p.UID)
		}
		if err := w.beforeAction(ctx, k.action); err != nil {
			return err
		}
		if err := c.Apply(ctx, k.action, k.moveTo, ids); err != nil {
			return fmt.Errorf("after-processing (%s): %w", k.action, err)
		}
		if err := st.DonePendingActions(ctx, w.cfg.ID, 0, uids); err != nil {
			return err
		}
	}
	return nil
}

// graphPoll runs one delta round. The message ids remembered stay bounded
// by what the folder holds: the ids the delta reports as removed are
// forgotten at the end of the round, and a round that read the whole folder
// (the first, or a resync after the delta token expired, which reports no
// removals) forgets every id it did not see. Forgetting comes before the
// commit of the round's deltaLink: if a crash comes between, the round is
// read again and reports the same removals (Graph gives a moved message a
// new id, so a removed id never comes back).
func (w *watcher) graphPoll(ctx context.Context, c *graphsource.Client, known *func(string) bool, removed *func(string)) error {
	st := w.m.store
	o := w.m.opts
	w.state(imapconf.StateSyncing)
	if err := w.graphRedo(ctx, c); err != nil {
		return err
	}
	ids, err := st.POP3UIDLs(ctx, w.cfg.ID)
	if err != nil {
		return err
	}
	// seen are the ids of this round's delta, gone those it reported as
	// removed.
	seen := map[string]bool{}
	var gone []string
	*known = func(id string) bool { seen[id] = true; return ids[id] }
	*removed = func(id string) { gone = append(gone, id) }
	link, ok, err := st.DeltaLink(ctx, w.cfg.ID)
	if err != nil {
		return err
	}
	skipRead := false
	if !ok {
		switch w.cfg.Backlog {
		case imapconf.BacklogAll:
			w.log.Info("first connect: reading all the mail")
		case imapconf.BacklogUnseen:
			w.log.Info("first connect: reading the unread mail")
			skipRead = true
		default:
			// Prime the delta, remembering every message there is, so
			// that a later change to one (marked read…) is not taken for
			// new mail.
			var present []string
			*known = func(id string) bool { present = append(present, id); return true }
			primed, err := c.Delta(ctx, "", func(graphsource.Message) error { return nil })
			if err != nil {
				return err
			}
			if err := st.SetDeltaLink(ctx, w.cfg.ID, primed, present); err != nil {
				return err
			}
			w.log.Info("first connect: only mail arriving from now on is read", "skipped", len(present))
			for _, id := range present {
				ids[id] = true
			}
			*known = func(id string) bool { seen[id] = true; return ids[id] }
			link = primed
		}
	}

	guard, err := w.m.ingest.Guard(ctx, w.cfg)
	if err != nil {
		return err
	}
	var batch []store.Incoming
	var seenRead []string
	var batchBytes int64
	var batchKey string // the key the batch was noted under (ingest.Guard)
	limit := 1
	flush := func(deltaLink *string) error {
		if err := st.RememberIDs(ctx, w.cfg.ID, seenRead); err != nil {
			return err
		}
		seenRead = seenRead[:0]
		if len(batch) == 0 && deltaLink == nil {
			return nil
		}
		rec, err := w.m.ingest.RecordGraph(ctx, w.cfg, deltaLink, batch, batchKey)
		if err != nil {
			return fmt.Errorf("reading new mail: %w", err)
		}
		w.counted(len(batch), len(rec))
		batch, batchBytes, batchKey = batch[:0], 0, ""
		if deltaLink == nil {
			return nil
		}
		// The round is over: only now act on the messages (moving or
		// deleting them in the middle of a round would shift the pages
		// still to come).
		return w.graphRedo(ctx, c)
	}
	fn := func(m graphsource.Message) error {
		ids[m.ID], seen[m.ID] = true, true
		if skipRead && m.IsRead {
			seenRead = append(seenRead, m.ID)
			return nil
		}
		skip := false
		if len(batch) == 0 {
			limit = guard.BatchMessages(max(o.BatchMessages, 1))
			batchKey = ingest.KeyGraph(m.ID)
			var err error
			if skip, err = guard.Begin(ctx, batchKey, limit); err != nil {
				return err
			}
		}
		var in store.Incoming
		if skip {
			in = ingest.Skipped(0, m.Raw, m.Size, m.TooLarge)
		} else {
			in = w.m.ingest.Prepare(0, m.Raw, m.Size, m.TooLarge)
		}
		in.UIDL = m.ID
		batch = append(batch, in)
		batchBytes += int64(len(m.Raw))
		if len(batch) >= limit || batchBytes >= o.BatchBytes {
			return flush(nil)
		}
		return nil
	}
	full := link == ""
	next, err := c.Delta(ctx, link, fn)
	if errors.Is(err, graphsource.ErrResync) {
		// Graph forgot the delta token: read the folder again from the
		// start; the ids remembered keep what was recorded from being
		// recorded again.
		w.log.Warn("delta token expired; reading the folder again", "err", err)
		if err := flush(nil); err != nil {
			return err
		}
		clear(seen)
		gone = gone[:0]
		full = true
		next, err = c.Delta(ctx, "", fn)
	}
	if err != nil {
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
		if err := st.ForgetIDs(ctx, w.cfg.ID, gone); err != nil {
			return err
		}
		for _, id := range gone {
			delete(ids, id)
		}
		w.log.Debug("forgot the ids of messages gone from the folder", "messages", len(gone))
	}
	return flush(&next)
}
