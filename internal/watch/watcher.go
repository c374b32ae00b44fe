package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/store"
)

// errSilent is a server that said nothing for longer than it should have.
var errSilent = errors.New("server silent past the expected interval")

type watcher struct {
	m      *Manager
	cfg    imapconf.Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	token  int64 // the lease token it runs under (leasing only)
	// tokens gets the access tokens of an oauth2 configuration (nil for
	// password logins). It lives as long as the watcher, so that the token
	// is reused across reconnects until it is due.
	tokens *xoauth2.TokenSource
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) set(fn func(st *imapconf.Status)) { w.m.update(w.cfg.ID, fn) }

func (w *watcher) state(s string) { w.set(func(st *imapconf.Status) { st.State = s }) }

// counted reports a committed batch: read messages, recorded of them new.
func (w *watcher) counted(read, recorded int) {
	now := time.Now().UTC()
	w.set(func(st *imapconf.Status) {
		st.MessagesIngested += int64(recorded)
		st.BacklogDone += read
		if recorded > 0 {
			st.LastMessageAt = &now
		}
	})
}

// polled reports a poll that read all there was (POP3, Graph), then waits
// for the next one.
func (w *watcher) polled(ctx context.Context) error {
	now := time.Now().UTC()
	w.set(func(st *imapconf.Status) {
		st.LastSuccessAt, st.BacklogDone, st.BacklogTotal = &now, 0, 0
		st.State = imapconf.StatePolling
	})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(w.cfg.PollInterval) * time.Second):
		return nil
	}
}

// run reconnects until ctx ends.
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	w.log.Info("watcher started", "host", w.cfg.Host, "folder", w.cfg.Folder)
	session := w.session
	switch {
	case w.cfg.Type == imapconf.TypeMSGraph:
		session = w.graphSession
	case w.cfg.ServerType == imapconf.ServerPOP3S:
		session = w.pop3Session
	}
	if w.cfg.Type == imapconf.TypeGeneric && w.cfg.Auth == imapconf.AuthOAuth2 {
		ts, err := xoauth2.NewTokenSource(w.cfg, xoauth2.Options{Logger: w.log, Dial: w.m.opts.Egress.Dialer()})
		if err != nil {
			session = func(context.Context) (bool, error) { return false, err }
		}
		w.tokens = ts
	}
	failures := 0
	for ctx.Err() == nil {
		progressed, err := session(ctx)
		if ctx.Err() != nil {
			break
		}
		if isFenced(err) {
			// Another replica holds the mailbox now: this watcher is
			// done; the next lease round drops it.
			w.log.Warn("mailbox taken over by another replica; watcher stopping", "err", err)
			break
		}
		if w.tokens != nil {
			if errors.Is(err, source.ErrAuth) {
				// Refused (expired or revoked): the next login gets a
				// new token.
				w.tokens.Invalidate()
			}
			err = w.tokens.RedactError(err, source.ErrAuth, pop3source.ErrNoUIDL, errSilent, source.ErrTimeout)
		}
		if progressed {
			failures = 0
		}
		state, wait := imapconf.StateError, backoff(failures, w.m.opts.MinBackoff, w.m.opts.MaxBackoff)
		switch {
		case errors.Is(err, source.ErrAuth): // any source's refused login
			state, wait = imapconf.StateAuthFailed, w.m.opts.AuthBackoff
		case egress.IsDenied(err):
			// MAILTRIGGER_EGRESS refuses the server's address: only a
			// change of settings (and a restart) helps.
			wait = w.m.opts.AuthBackoff
		case errors.Is(err, pop3source.ErrNoUIDL):
			// Reading without unique ids would mean guessing what was
			// read: never; retried as slowly as a refused login.
			wait = w.m.opts.AuthBackoff
		case errors.Is(err, errSilent), errors.Is(err, source.ErrTimeout):
			// Silent while waiting for mail, or while answering a
			// command (a stalled FETCH, a login that never ends).
			state = imapconf.StateStale
		}
		failures++
		now := time.Now().UTC()
		w.set(func(st *imapconf.Status) {
			st.State, st.LastError, st.LastErrorAt = state, err.Error(), &now
		})
		w.m.metrics.reconnects.Inc()
		w.log.Warn("watcher failed; reconnecting", "state", state, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		w.set(func(st *imapconf.Status) { st.Reconnects++ })
	}
	w.log.Info("watcher stopped")
}

// session is one connection: it returns when the connection fails or ctx
// ends. progressed is true when it got as far as waiting for mail.
func (w *watcher) session(ctx context.Context) (progressed bool, err error) {
	w.state(imapconf.StateConnecting)
	o := w.m.opts
	login, err := w.saslHook(ctx)
	if err != nil {
		return false, err
	}
	conn, err := imapsource.Dial(ctx, w.cfg, imapsource.Options{Logger: w.log, Dial: o.dial(),
		DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout, SASL: login})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	mb, err := conn.Select(ctx, w.cfg.Folder)
	if err != nil {
		return false, err
	}
	cp, err := w.startingPoint(ctx, conn, mb)
	if err != nil {
		return false, err
	}
	if err := w.redoPending(ctx, conn, mb.UIDValidity); err != nil {
		return false, err
	}
	for {
		w.state(imapconf.StateSyncing)
		uids, err := conn.SearchAfter(ctx, cp.LastUID)
		if err != nil {
			return progressed, err
		}
		if cp, err = w.catchUp(ctx, conn, cp, uids, true); err != nil {
			return progressed, err
		}
		now := time.Now().UTC()
		w.set(func(st *imapconf.Status) {
			st.LastSuccessAt, st.BacklogDone, st.BacklogTotal = &now, 0, 0
			st.State = imapconf.StatePolling
			if conn.HasIdle() {
				st.State = imapconf.StateIdle
			}
		})
		progressed = true
		// The watchdog: a wait that overruns its bound means the server
		// (or the network) went silent.
		wctx, cancel := context.WithTimeoutCause(ctx, o.IdleMax+o.SilenceGrace, errSilent)
		err = conn.WaitForMail(wctx, o.IdleMax, time.Duration(w.cfg.PollInterval)*time.Second)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(context.Cause(wctx), errSilent) {
				return progressed, errSilent
			}
			return progressed, err
		}
	}
}

// startingPoint returns the checkpoint to read after: the stored one, a new
// one for a first connect (per the backlog mode), or UID 0 of a new
// UIDVALIDITY when the folder was recreated.
func (w *watcher) startingPoint(ctx context.Context, conn *imapsource.Conn, mb imapsource.Mailbox) (store.Checkpoint, error) {
	cp, ok, err := w.m.store.GetCheckpoint(ctx, w.cfg.ID)
	if err != nil {
		return cp, err
	}
	if ok && cp.UIDValidity == mb.UIDValidity {
		return cp, nil
	}
	if ok {
		// The folder was recreated: read it again; what was recorded
		// already is recognised and not recorded twice.
		w.log.Warn("UIDVALIDITY changed; reading the folder again", "old", cp.UIDValidity, "new", mb.UIDValidity)
		if err := w.m.store.ClearPendingActions(ctx, w.cfg.ID, mb.UIDValidity); err != nil {
			return cp, err
		}
		return store.Checkpoint{UIDValidity: mb.UIDValidity}, nil
	}
	last := uint32(0)
	if mb.UIDNext > 0 {
		last = mb.UIDNext - 1
	}
	switch w.cfg.Backlog {
	case imapconf.BacklogAll:
		return store.Checkpoint{UIDValidity: mb.UIDValidity}, nil
	case imapconf.BacklogUnseen:
		uids, err := conn.SearchUnseen(ctx)
		if err != nil {
			return cp, err
		}
		var old []uint32
		for _, u := range uids {
			if u <= last {
				old = append(old, u)
			}
		}
		w.log.Info("first connect: reading unseen mail", "messages", len(old))
		start := store.Checkpoint{UIDValidity: mb.UIDValidity}
		if _, err := w.catchUp(ctx, conn, start, old, false); err != nil {
			return cp, err
		}
	default:
		w.log.Info("first connect: only mail arriving from now on is read", "after_uid", last)
	}
	newCP := store.Checkpoint{UIDValidity: mb.UIDValidity, LastUID: last}
	return newCP, w.m.store.SetCheckpoint(ctx, w.cfg.ID, newCP)
}

// catchUp reads the messages uids, records them in batches, each batch
// moving the checkpoint to its last UID when advance is set, and then does
// the after-processing they are owed.
func (w *watcher) catchUp(ctx context.Context, conn *imapsource.Conn, cp store.Checkpoint, uids []uint32, advance bool) (store.Checkpoint, error) {
	if len(uids) == 0 {
		return cp, nil
	}
	o := w.m.opts
	guard, err := w.m.ingest.Guard(ctx, w.cfg)
	if err != nil {
		return cp, err
	}
	uidValidity := cp.UIDValidity
	var batch []store.Incoming
	var batchBytes int64
	var batchKey string // the key the batch being gathered was noted under
	limit := 1          // messages in the batch being gathered
	var toApply []uint32
	// Messages are parsed on all cores while the fetch goes on: parsing is
	// most of a backlog's CPU, and one goroutine would leave the other
	// cores idle. flush waits for the batch's parses; sem bounds them.
	var parsing sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	defer parsing.Wait() // on an error, before batch goes away
	// A batch is recorded while the next one is fetched and parsed: at most
	// one is being recorded, and each waits for the one before, so that
	// batches commit in order and the checkpoint only moves forward. Two
	// batches (at most 2 × BatchBytes) are held at a time. recorded gets
	// the recording's result; cp and toApply change only in the recording
	// goroutine, and are read only after its result was received.
	var recorded chan error
	waitRecorded := func() error {
		if recorded == nil {
			return nil
		}
		err := <-recorded
		recorded = nil
		return err
	}
	defer func() { _ = waitRecorded() }() // on an error, before cp is returned
	flush := func() error {
		parsing.Wait()
		if err := waitRecorded(); err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		// A new slice for the next batch, not batch[:0]: parses of the
		// next batch must not write into the one being recorded.
		b, key := batch, batchKey
		batch, batchBytes = nil, 0
		next := cp
		if advance {
			next.LastUID = b[len(b)-1].UID
		}
		done := make(chan error, 1)
		recorded = done
		go func() {
			rec, err := w.m.ingest.Record(ctx, w.cfg, next, advance, b, key)
			if err == nil {
				cp = next
				w.counted(len(b), len(rec))
				for _, m := range b {
					toApply = append(toApply, m.UID)
				}
			}
			done <- err
		}()
		return nil
	}
	read := 0 // messages handed to fn so far
	fn := func(m imapsource.Message) error {
		read++
		skip := false
		if batch == nil {
			// The crash-loop breaker notes the batch before its first
			// parse (see ingest.Guard); while careful, one message at a
			// time, once the one before it is recorded.
			if guard.Careful() {
				if err := waitRecorded(); err != nil {
					return err
				}
			}
			// At most the messages left: a batch of one is what the
			// crash-loop breaker can blame.
			limit = min(guard.BatchMessages(max(o.BatchMessages, 1)), max(len(uids)-read+1, 1))
			batchKey = ingest.KeyUID(uidValidity, m.UID)
			var err error
			if skip, err = guard.Begin(ctx, batchKey, limit); err != nil {
				return err
			}
			// Its final size at once: a parse writes into its slot while
			// more messages are appended, which must not move it.
			batch = make([]store.Incoming, 0, limit)
		}
		batch = append(batch, store.Incoming{UID: m.UID})
		slot := &batch[len(batch)-1]
		if skip {
			*slot = ingest.Skipped(m.UID, m.Raw, m.Size, m.TooLarge)
		} else {
			sem <- struct{}{}
			parsing.Go(func() {
				defer func() { <-sem }()
				*slot = w.m.ingest.Prepare(m.UID, m.Raw, m.Size, m.TooLarge)
			})
		}
		batchBytes += int64(len(m.Raw))
		if len(batch) >= limit || batchBytes >= o.BatchBytes {
			return flush()
		}
		return nil
	}
	w.set(func(st *imapconf.Status) { st.BacklogDone, st.BacklogTotal = 0, len(uids) })
	err = conn.FetchUIDs(ctx, uids, o.SizeCap, fn)
	if err == nil {
		err = flush()
	}
	if werr := waitRecorded(); err == nil {
		err = werr
	}
	if err != nil {
		return cp, fmt.Errorf("reading new mail: %w", err)
	}
	if len(toApply) > 0 && w.cfg.AfterProcessing != imapconf.AfterNone {
		if err := w.apply(ctx, conn, cp.UIDValidity, toApply); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// redoPending does the after-processing that a crash interrupted.
func (w *watcher) redoPending(ctx context.Context, conn *imapsource.Conn, uidValidity uint32) error {
	pending, err := w.m.store.PendingActions(ctx, w.cfg.ID)
	if err != nil {
		return err
	}
	byAction := map[[2]string][]uint32{}
	for _, p := range pending {
		if p.UIDValidity == uidValidity {
			k := [2]string{p.Action, p.MoveTo}
			byAction[k] = append(byAction[k], p.UID)
		}
	}
	for k, uids := range byAction {
		w.log.Info("redoing after-processing interrupted earlier", "action", k[0], "messages", len(uids))
		if err := w.beforeAction(ctx, k[0]); err != nil {
			return err
		}
		if err := conn.Apply(ctx, k[0], k[1], uids); err != nil {
			return fmt.Errorf("redoing %s: %w", k[0], err)
		}
		if err := w.m.store.DonePendingActions(ctx, w.cfg.ID, uidValidity, uids); err != nil {
			return err
		}
	}
	return nil
}

func (w *watcher) apply(ctx context.Context, conn *imapsource.Conn, uidValidity uint32, uids []uint32) error {
	if err := w.beforeAction(ctx, w.cfg.AfterProcessing); err != nil {
		return err
	}
	if err := conn.Apply(ctx, w.cfg.AfterProcessing, w.cfg.MoveTo, uids); err != nil {
		return fmt.Errorf("after-processing (%s): %w", w.cfg.AfterProcessing, err)
	}
	return w.m.store.DonePendingActions(ctx, w.cfg.ID, uidValidity, uids)
}

// beforeAction comes before after-processing action on the mail server:
// only the lease holder acts on the server, so it checks the fence; and
// before mail is deleted or moved out of the folder, the commits that
// recorded it are made durable against power loss (once per batch). Marking
// as seen destroys nothing and pays nothing more.
func (w *watcher) beforeAction(ctx context.Context, action string) error {
	if action == imapconf.AfterDelete || action == imapconf.AfterMove {
		return w.m.store.BeforeDestructive(ctx)
	}
	return w.m.store.CheckFence(ctx)
}
