package watch

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/store"
)

// pop3Checkpoint is the checkpoint row of a POP3 mailbox: it only says that
// the first connect happened (the UIDLs read are the real checkpoint).
var pop3Checkpoint = store.Checkpoint{}

// pop3Session reads a POP3 mailbox every pollInterval, one connection per
// poll, until a connection fails or ctx ends. progressed is true once a poll
// went through. Each poll: list the unique ids, forget the remembered ones
// the server no longer has, mark for deletion (afterProcessing delete) the
// ones recorded already (a crash may have come between the commit and
// QUIT), read and record the others in batches, marking each batch for
// deletion once committed, and QUIT, on which the server removes what was
// marked.
func (w *watcher) pop3Session(ctx context.Context) (progressed bool, err error) {
	for {
		w.state(imapconf.StateConnecting)
		if err := w.pop3Poll(ctx); err != nil {
			return progressed, err
		}
		progressed = true
		if err := w.polled(ctx); err != nil {
			return progressed, err
		}
	}
}

func (w *watcher) pop3Poll(ctx context.Context) error {
	o := w.m.opts
	login, err := w.saslHook(ctx)
	if err != nil {
		return err
	}
	conn, err := pop3source.Dial(ctx, w.cfg, pop3source.Options{Logger: w.log, Dial: o.dial(),
		DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout, SASL: login})
	if err != nil {
		return err
	}
	defer conn.Close()
	w.state(imapconf.StateSyncing)
	entries, err := conn.UIDL(ctx)
	if err != nil {
		return err
	}
	st := w.m.store
	cp, ok, err := st.GetCheckpoint(ctx, w.cfg.ID)
	if err != nil {
		return err
	}
	if !ok || cp.UIDValidity != pop3Checkpoint.UIDValidity {
		var seen []string
		if w.cfg.Backlog != imapconf.BacklogAll {
			for _, e := range entries {
				seen = append(seen, e.UIDL)
			}
			w.log.Info("first connect: only mail arriving from now on is read", "skipped", len(seen))
		} else {
			w.log.Info("first connect: reading all the mail", "messages", len(entries))
		}
		if err := st.MarkPOP3Seen(ctx, w.cfg.ID, seen, pop3Checkpoint); err != nil {
			return err
		}
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.UIDL] = true
	}
	if err := st.ForgetPOP3UIDLs(ctx, w.cfg.ID, present); err != nil {
		return err
	}
	known, err := st.POP3UIDLs(ctx, w.cfg.ID)
	if err != nil {
		return err
	}
	del := w.cfg.AfterProcessing == imapconf.AfterDelete
	marked := 0
	dele := func(nums []int) error {
		if len(nums) > 0 {
			// Only the lease holder deletes, and only what is durably
			// recorded.
			if err := w.beforeAction(ctx, imapconf.AfterDelete); err != nil {
				return err
			}
		}
		for _, n := range nums {
			if err := conn.Dele(ctx, n); err != nil {
				return fmt.Errorf("after-processing (delete): %w", err)
			}
		}
		marked += len(nums)
		return nil
	}
	var read []pop3source.Entry
	var owed []int
	for _, e := range entries {
		switch {
		case !known[e.UIDL]:
			read = append(read, e)
		case del:
			owed = append(owed, e.Num)
		}
	}
	if len(owed) > 0 {
		w.log.Info("deleting messages recorded earlier", "messages", len(owed))
		if err := dele(owed); err != nil {
			return err
		}
	}

	guard, err := w.m.ingest.Guard(ctx, w.cfg)
	if err != nil {
		return err
	}
	var batch []store.Incoming
	var nums []int
	var batchBytes int64
	var batchKey string // the key the batch was noted under (ingest.Guard)
	limit := 1
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		rec, err := w.m.ingest.Record(ctx, w.cfg, pop3Checkpoint, true, batch, batchKey)
		if err != nil {
			return fmt.Errorf("reading new mail: %w", err)
		}
		w.counted(len(batch), len(rec))
		if del {
			if err := dele(nums); err != nil {
				return err
			}
		}
		batch, nums, batchBytes = batch[:0], nums[:0], 0
		return nil
	}
	if len(read) > 0 {
		w.set(func(st *imapconf.Status) { st.BacklogDone, st.BacklogTotal = 0, len(read) })
	}
	for i, e := range read {
		m, err := conn.Retr(ctx, e.Num, o.SizeCap)
		if err != nil {
			return fmt.Errorf("reading new mail: %w", err)
		}
		skip := false
		if len(batch) == 0 {
			// At most the messages left: a batch of one is what the
			// crash-loop breaker can blame.
			limit = min(guard.BatchMessages(max(o.BatchMessages, 1)), len(read)-i)
			batchKey = ingest.KeyUIDL(e.UIDL)
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
		in.UIDL = e.UIDL
		batch = append(batch, in)
		nums = append(nums, e.Num)
		batchBytes += int64(len(m.Raw))
		if len(batch) >= limit || batchBytes >= o.BatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// QUIT only now, every message marked being committed: the server
	// removes the marked messages on QUIT.
	if err := conn.Quit(ctx); err != nil && marked > 0 {
		return fmt.Errorf("after-processing (delete): %w", err)
	}
	return nil
}

// TestConnection is the test-connection operation for configuration c: it
// tries the server the way its watcher reads it (IMAP, POP3 or Microsoft
// Graph) and returns the source's result in its JSON form. Every address
// may be connected to; Manager.TestConnection applies the egress policy.
func TestConnection(ctx context.Context, c imapconf.Config, log *slog.Logger) any {
	return testConnection(ctx, c, log, nil)
}

// TestConnection is the package's TestConnection under the manager's
// egress policy: a refused address fails the step that connects to it
// (connect, or token for an OAuth2 token endpoint) with the reason.
func (m *Manager) TestConnection(ctx context.Context, c imapconf.Config) any {
	return testConnection(ctx, c, m.log.With("imap", c.Name), m.opts.Egress.Dialer())
}

func testConnection(ctx context.Context, c imapconf.Config, log *slog.Logger, dial egress.DialFunc) any {
	if c.Type == imapconf.TypeMSGraph {
		return graphsource.Test(ctx, c, graphsource.Options{Logger: log, Dial: dial})
	}
	pop3 := c.ServerType == imapconf.ServerPOP3S
	if c.Auth != imapconf.AuthOAuth2 {
		if pop3 {
			return pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: dial})
		}
		return imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: dial})
	}
	// OAuth2: the token first, so that a refused client secret is named
	// as such whatever the mail server would say.
	tokenFailed := func(err error) any {
		step, msg := source.StepOf(err, xoauth2.StepToken)
		if pop3 {
			return pop3source.TestResult{Step: step, Error: msg}
		}
		return imapsource.TestResult{Step: step, Error: msg}
	}
	ts, err := xoauth2.NewTokenSource(c, xoauth2.Options{Logger: log, Dial: dial})
	if err != nil {
		return tokenFailed(err)
	}
	if _, err := ts.Token(ctx); err != nil {
		return tokenFailed(err)
	}
	if pop3 {
		res := pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: dial, SASL: ts.SASL})
		res.Error = ts.Redact(res.Error)
		return res
	}
	res := imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: dial, SASL: ts.SASL})
	res.Error = ts.Redact(res.Error)
	return res
}

// saslHook returns the SASL hook of the sources for an oauth2
// configuration, nil for password logins. It gets the token first (from the
// cache when not due), so that a failure to get one is reported as the
// token step before any connection is made.
func (w *watcher) saslHook(ctx context.Context) (func(context.Context, imapconf.Config) (sasl.Client, error), error) {
	if w.tokens == nil {
		return nil, nil
	}
	if _, err := w.tokens.Token(ctx); err != nil {
		return nil, err
	}
	return w.tokens.SASL, nil
}
