package watch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sourcefake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// fakeEnv is a manager supervising one mailbox read from a fake source:
// supervision tested without a mail server.
type fakeEnv struct {
	st  *store.Store
	mgr *watch.Manager
	cfg imapconf.Config
	src *sourcefake.Source

	mu     sync.Mutex
	states []string // every state the manager changed to, in order (OnState)
}

func newFakeEnv(t *testing.T, src *sourcefake.Source, opts watch.Options) *fakeEnv {
	t.Helper()
	e := &fakeEnv{st: storetest.Open(t, store.SQLite), src: src}
	e.cfg = imapconf.Config{Name: "fake", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
		Host: "fake.invalid", Enabled: true, Folder: "INBOX", AfterProcessing: imapconf.AfterSeen, Backlog: imapconf.BacklogAll,
		PollInterval: 60}
	if err := e.st.CreateIMAP(context.Background(), &e.cfg); err != nil {
		t.Fatal(err)
	}
	cfg, err := e.st.GetIMAP(context.Background(), e.cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	opts.Sources = func(imapconf.Config) (source.Source, error) { return src, nil }
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 40*time.Millisecond
	}
	opts.ResyncEvery = time.Hour
	// Every change is noted as the manager makes it: a state held for a
	// moment (an error before a quick reconnect) is not missed, as it
	// could be by sampling the status on a loaded machine.
	onState := func(_ context.Context, _ int64, _ string, _, next imapconf.Status) {
		e.mu.Lock()
		e.states = append(e.states, next.State)
		e.mu.Unlock()
	}
	e.mgr = watch.New(watch.Deps{Store: e.st, Ingester: ingest.New(ingest.Deps{Store: e.st}), Options: opts, OnState: onState})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.mgr.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

func (e *fakeEnv) seen(state string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.states {
		if s == state {
			return true
		}
	}
	return false
}

// waitStatus waits for the status to satisfy cond.
func (e *fakeEnv) waitStatus(t *testing.T, what string, cond func(st *imapconf.Status) bool) *imapconf.Status {
	t.Helper()
	var st *imapconf.Status
	testwait.Until(t, 10*time.Second, func() error {
		if st = e.mgr.Status(e.cfg); !cond(st) {
			return fmt.Errorf("waiting for %s; status %+v", what, *st)
		}
		return nil
	})
	return st
}

func TestSupervisorReadsAndIdles(t *testing.T) {
	src := sourcefake.New(3, time.Minute, imapconf.AfterSeen)
	for i := range 30 {
		src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))
	}
	e := newFakeEnv(t, src, watch.Options{BatchMessages: 7})
	e.waitStatus(t, "idle with 30 messages", func(st *imapconf.Status) bool {
		return st.State == imapconf.StateIdle && st.MessagesIngested == 30 && st.LastSuccessAt != nil
	})
	cp, ok, err := e.st.GetCheckpoint(context.Background(), e.cfg.ID)
	if err != nil || !ok || cp != (store.Checkpoint{Kind: store.KindIMAP, Epoch: 3, Last: 30}) {
		t.Errorf("checkpoint %+v (%v, %v), want 3/30", cp, ok, err)
	}
	// New mail wakes the wait, and is read.
	src.Add("Subject: late\r\n\r\nx\r\n")
	e.waitStatus(t, "31 messages", func(st *imapconf.Status) bool { return st.MessagesIngested == 31 })
	// The after-processing follows the commit.
	testwait.Until(t, 5*time.Second, func() error {
		if got := src.Applied(); len(got) != 31 {
			return fmt.Errorf("after-processing applied to %d messages, want 31", len(got))
		}
		return nil
	})
	if !e.seen(imapconf.StateIdle) {
		t.Error("never idle")
	}
	if n := src.Connects(); n != 1 {
		t.Errorf("%d connects, want 1 (no failure)", n)
	}
}

func TestSupervisorBacksOffAfterFailures(t *testing.T) {
	src := sourcefake.New(3, time.Minute, "")
	src.FailConnect(errors.New("connect: connection refused"), errors.New("connect: connection refused"))
	src.Add("Subject: m\r\n\r\nbody\r\n")
	e := newFakeEnv(t, src, watch.Options{})
	st := e.waitStatus(t, "idle after two failures", func(st *imapconf.Status) bool {
		return st.State == imapconf.StateIdle && st.MessagesIngested == 1
	})
	if st.Reconnects != 2 || st.LastError != "connect: connection refused" || st.LastErrorAt == nil {
		t.Errorf("status %+v, want 2 reconnects and the last error", *st)
	}
	if !e.seen(imapconf.StateError) {
		t.Error("the error state was never shown")
	}
	if n := src.Connects(); n != 3 {
		t.Errorf("%d connects, want 3", n)
	}
}

func TestSupervisorShowsRefusedLogins(t *testing.T) {
	src := sourcefake.New(3, time.Minute, "")
	src.FailConnect(fmt.Errorf("login: %w", source.ErrAuth))
	e := newFakeEnv(t, src, watch.Options{AuthBackoff: time.Hour})
	e.waitStatus(t, "auth failed", func(st *imapconf.Status) bool { return st.State == imapconf.StateAuthFailed })
	// The slow backoff of a refused login: no second try soon.
	testwait.Never(t, 300*time.Millisecond, func() error {
		if n := src.Connects(); n != 1 {
			return fmt.Errorf("%d connects, want 1", n)
		}
		return nil
	})
}

func TestSupervisorWatchdogOnSilence(t *testing.T) {
	src := sourcefake.New(3, 100*time.Millisecond, "")
	src.Silence(true)
	e := newFakeEnv(t, src, watch.Options{SilenceGrace: 100 * time.Millisecond})
	st := e.waitStatus(t, "stale", func(st *imapconf.Status) bool { return st.State == imapconf.StateStale })
	if st.LastError != "server silent past the expected interval" {
		t.Errorf("last error %q, want the watchdog's", st.LastError)
	}
	// It reconnects, and once the server answers again, idles.
	src.Silence(false)
	e.waitStatus(t, "idle again", func(st *imapconf.Status) bool {
		return st.State == imapconf.StateIdle && st.Reconnects > 0
	})
	if n := src.Connects(); n < 2 {
		t.Errorf("%d connects, want a reconnect", n)
	}
}

func TestSupervisorRetriesAFailedSync(t *testing.T) {
	src := sourcefake.New(3, time.Minute, "")
	src.FailSync(errors.New("fetch: connection reset"))
	for i := range 3 {
		src.Add(fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))
	}
	e := newFakeEnv(t, src, watch.Options{})
	st := e.waitStatus(t, "idle with 3 messages", func(st *imapconf.Status) bool {
		return st.State == imapconf.StateIdle && st.MessagesIngested == 3
	})
	if st.Reconnects != 1 || st.LastError != "fetch: connection reset" {
		t.Errorf("status %+v, want one reconnect after the failed sync", *st)
	}
	if !e.seen(imapconf.StateError) {
		t.Error("the error state was never shown")
	}
}
