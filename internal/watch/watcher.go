package watch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sources"
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
	// tokens gets the access tokens of an oauth2 or oauth2-delegated
	// configuration (nil for password logins). It lives as long as the
	// watcher, so that the token is reused across reconnects until it is
	// due.
	tokens sources.Tokens
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) set(fn func(st *imapconf.Status)) { w.m.update(w.cfg.ID, w.cfg.Name, fn) }

func (w *watcher) state(s string) { w.set(func(st *imapconf.Status) { st.State = s }) }

// State implements source.Progress.
func (w *watcher) State(s string) { w.state(s) }

// Backlog implements source.Progress.
func (w *watcher) Backlog(total int) {
	w.set(func(st *imapconf.Status) { st.BacklogDone, st.BacklogTotal = 0, total })
}

// Counted implements source.Progress: a committed batch, read messages,
// recorded of them new.
func (w *watcher) Counted(read, recorded int) {
	now := time.Now().UTC()
	w.set(func(st *imapconf.Status) {
		st.MessagesIngested += int64(recorded)
		st.BacklogDone += read
		if recorded > 0 {
			st.LastMessageAt = &now
		}
	})
}

// run reconnects until ctx ends.
//
// run and session are the frames under a wait for mail, which is where a
// watcher spends its life: they keep little on the stack (the bookkeeping
// is in failed, synced and wait), so that the collector, which halves a
// stack while less than a quarter of it is in use, brings the goroutine's
// stack down to 4 KB (see apart).
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	src, srcErr := w.start()
	failures := 0
	for ctx.Err() == nil {
		progressed, err := false, srcErr
		if err == nil {
			progressed, err = w.session(ctx, src)
		}
		if ctx.Err() != nil {
			break
		}
		wait, stop := w.failed(err, progressed, &failures)
		if stop {
			break
		}
		w.pause(ctx, wait)
	}
	w.logStopped()
}

// start makes the watcher's source.
//
//go:noinline
func (w *watcher) start() (source.Source, error) {
	w.log.Info("watcher started", "host", w.cfg.Host, "folder", w.cfg.Folder)
	src, tokens, err := w.m.newSource(w.cfg, w.log)
	w.tokens = tokens
	return src, err
}

//go:noinline
func (w *watcher) logStopped() { w.log.Info("watcher stopped") }

// failed records the failure err of a session (progressed: it got as far
// as waiting for mail) and returns how long to wait before the next one,
// or stop when the watcher is done.
func (w *watcher) failed(err error, progressed bool, failures *int) (wait time.Duration, stop bool) {
	if isFenced(err) {
		// Another replica holds the mailbox now: this watcher is
		// done; the next lease round drops it.
		w.log.Warn("mailbox taken over by another replica; watcher stopping", "err", err)
		return 0, true
	}
	if w.tokens != nil {
		if errors.Is(err, source.ErrAuth) {
			// Refused (expired or revoked): the next login gets a
			// new token.
			w.tokens.Invalidate()
		}
		err = w.tokens.RedactError(err, source.ErrAuth, source.ErrNoUIDL, errSilent, source.ErrTimeout)
	}
	if progressed {
		*failures = 0
	}
	state, wait := imapconf.StateError, backoff(*failures, w.m.opts.MinBackoff, w.m.opts.MaxBackoff)
	switch {
	case errors.Is(err, source.ErrAuth): // any source's refused login
		state, wait = imapconf.StateAuthFailed, w.m.opts.AuthBackoff
	case egress.IsDenied(err):
		// MAILTRIGGER_EGRESS refuses the server's address: only a
		// change of settings (and a restart) helps.
		wait = w.m.opts.AuthBackoff
	case errors.Is(err, source.ErrNoUIDL):
		// Reading without unique ids would mean guessing what was
		// read: never; retried as slowly as a refused login.
		wait = w.m.opts.AuthBackoff
	case errors.Is(err, errSilent), errors.Is(err, source.ErrTimeout):
		// Silent while waiting for mail, or while answering a
		// command (a stalled FETCH, a login that never ends).
		state = imapconf.StateStale
	}
	*failures++
	now := time.Now().UTC()
	retry := now.Add(wait)
	w.set(func(st *imapconf.Status) {
		st.State, st.LastError, st.LastErrorAt, st.RetryAt = state, err.Error(), &now, &retry
	})
	w.m.metrics.reconnects.Inc()
	w.log.Warn("watcher failed; reconnecting", "state", state, "err", err, "retry_in", wait.Round(time.Millisecond))
	return wait, false
}

// pause waits d (or until ctx ends) before a reconnect, and counts it.
func (w *watcher) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	w.set(func(st *imapconf.Status) { st.Reconnects++ })
}

// session is one session of src: connect, then sync and wait in turn; it
// returns when a step fails or ctx ends. progressed is true when it got as
// far as waiting for mail.
func (w *watcher) session(ctx context.Context, src source.Source) (progressed bool, err error) {
	w.state(imapconf.StateConnecting)
	if err := apart(func() error { return src.Connect(ctx) }); err != nil {
		return false, err
	}
	defer apart(src.Close)
	ledger := w.ledger()
	for {
		if err := apart(func() error { return src.Sync(ctx, ledger) }); err != nil {
			return progressed, err
		}
		maxWait := w.synced(src)
		progressed = true
		if err := w.wait(ctx, src, maxWait); err != nil {
			return progressed, err
		}
	}
}

// ledger is the ingest ledger of the watcher's mailbox.
//
//go:noinline
func (w *watcher) ledger() *ingest.Ledger {
	o := w.m.opts
	return w.m.ingest.Ledger(w.cfg, ingest.Limits{BatchMessages: o.BatchMessages, BatchBytes: o.BatchBytes}, w)
}

// synced records a sync that succeeded and returns the longest wait of
// src for mail.
func (w *watcher) synced(src source.Source) time.Duration {
	state, maxWait := src.Waiting()
	now := time.Now().UTC()
	w.set(func(st *imapconf.Status) {
		st.LastSuccessAt, st.BacklogDone, st.BacklogTotal = &now, 0, 0
		st.State = state
	})
	return maxWait
}

// wait waits for mail on src with a watchdog: a wait that overruns its
// bound (maxWait, none if 0) means the server (or the network) went
// silent, errSilent.
func (w *watcher) wait(ctx context.Context, src source.Source, maxWait time.Duration) error {
	if maxWait <= 0 {
		return src.Wait(ctx)
	}
	wctx, cancel := context.WithTimeoutCause(ctx, maxWait+w.m.opts.SilenceGrace, errSilent)
	defer cancel()
	err := src.Wait(wctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(wctx), errSilent) {
		return errSilent
	}
	return err
}

// apart runs fn on a goroutine of its own and waits for it. The watcher's
// goroutine lives as long as its mailbox is watched and spends that time
// waiting in IDLE, which needs a small stack; the TLS handshake, parsing
// and SQLite of Connect and Sync need a deep one. A goroutine keeps the
// largest stack it ever needed until collections shrink it (by half at a
// time, and a service at rest collects every two minutes), so that deep
// work on the watcher's goroutine would leave every idle mailbox holding
// tens of KB of stack; on a goroutine of its own that stack goes when fn
// returns.
func apart(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return <-done
}
