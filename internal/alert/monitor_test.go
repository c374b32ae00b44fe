package alert

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// monEnv is a monitor on a real store with a clock of the test's, driven
// step by step (drain, check) rather than by Run's goroutine.
type monEnv struct {
	t   *testing.T
	st  *store.Store
	mon *Monitor
	box imapconf.Config

	mu  sync.Mutex
	now time.Time
}

const monPassword = "s3cret-mailbox-password"

func newMonEnv(t *testing.T, st *store.Store, opts MonitorOptions) *monEnv {
	t.Helper()
	ctx := context.Background()
	e := &monEnv{t: t, st: st, now: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	if _, err := st.GetAlert(ctx, "ops"); err != nil {
		secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
		if _, err := st.CreateAlert(ctx, store.AlertSubscription{Name: "ops", Kind: store.AlertWebhook, URL: "http://127.0.0.1:9/alerts",
			Secret: secret, Events: Types, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	box, err := st.GetIMAP(ctx, "watched")
	if err != nil {
		box = imapconf.Config{Name: "watched", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
			Host: "mail.example.com", Port: 993, Username: "u", Password: monPassword, Enabled: true, Folder: "INBOX",
			AfterProcessing: imapconf.AfterSeen, Backlog: imapconf.BacklogAll}
		if err := st.CreateIMAP(ctx, &box); err != nil {
			t.Fatal(err)
		}
	}
	e.box = box
	e.mon = NewMonitor(MonitorDeps{Store: st, ReplicaID: "r1", Secrets: []string{"smtp-secret"}, Options: opts, Now: e.clock})
	return e
}

func (e *monEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *monEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// states feeds the watcher states in turn (each one a change from the one
// before), with lastError on the failing ones, and applies them.
func (e *monEnv) states(lastError string, states ...string) {
	e.t.Helper()
	prev := imapconf.StateConnecting
	if b := e.mon.boxes[e.box.ID]; b != nil {
		prev = b.state
	}
	for _, s := range states {
		next := imapconf.Status{State: s, Since: e.clock()}
		switch s {
		case imapconf.StateError, imapconf.StateStale, imapconf.StateAuthFailed:
			next.LastError = lastError
		}
		e.mon.OnState(context.Background(), e.box.ID, e.box.Name, imapconf.Status{State: prev}, next)
		prev = s
	}
	e.mon.drain(context.Background())
}

// events returns the types of the events queued so far, oldest first.
func (e *monEnv) events() []store.AlertEvent {
	e.t.Helper()
	ds, err := e.st.ListAlertDeliveries(context.Background(), "ops", 0, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AlertEvent
	for i := len(ds) - 1; i >= 0; i-- {
		out = append(out, ds[i].Event)
	}
	return out
}

func types(evs []store.AlertEvent) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type)
	}
	return strings.Join(s, " ")
}

func (e *monEnv) wantEvents(want ...string) []store.AlertEvent {
	e.t.Helper()
	evs := e.events()
	if got := types(evs); got != strings.Join(want, " ") {
		e.t.Fatalf("events %q, want %q", got, strings.Join(want, " "))
	}
	return evs
}

func (e *monEnv) condition() string {
	e.t.Helper()
	cs, err := e.st.AlertConditions(context.Background(), "mailbox:")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		if c.Key == MailboxKey(e.box.ID) {
			return c.Condition
		}
	}
	return CondOK
}

// TestMonitorAuthFailedOnce: a refused login is mailbox.auth_failed at
// once, and once however often the login is refused again; working again
// is one mailbox.recovered, and working on is nothing more.
func TestMonitorAuthFailedOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e.mon.check(context.Background())
		e.states("", imapconf.StateSyncing, imapconf.StateIdle)
		e.wantEvents()
		refused := "login: authentication failed (password " + monPassword + " refused; smtp-secret)"
		e.states(refused, imapconf.StateConnecting, imapconf.StateAuthFailed)
		evs := e.wantEvents(TypeAuthFailed)
		ev := evs[0]
		if ev.ObjectKind != "mailbox" || ev.ObjectName != "watched" || ev.Previous != CondOK || ev.Current != CondAuthFailed {
			t.Errorf("event %+v", ev)
		}
		if strings.Contains(ev.Error, monPassword) || strings.Contains(ev.Error, "smtp-secret") || !strings.Contains(ev.Error, "authentication failed") {
			t.Errorf("error text %q: want it with the secrets redacted", ev.Error)
		}
		var d mailboxDetails
		if err := json.Unmarshal(ev.Details, &d); err != nil || d != (mailboxDetails{ServerType: imapconf.ServerIMAPS,
			Host: "mail.example.com", Replica: "r1", State: imapconf.StateAuthFailed}) {
			t.Errorf("details %s (%v)", ev.Details, err)
		}
		if !ev.Since.Equal(e.clock()) {
			t.Errorf("since %v, want %v", ev.Since, e.clock())
		}
		// Refused again and again, for longer than the failing threshold:
		// no second alert.
		for range 3 {
			e.advance(2 * time.Minute)
			e.states(refused, imapconf.StateConnecting, imapconf.StateAuthFailed)
			e.mon.check(context.Background())
		}
		e.wantEvents(TypeAuthFailed)
		if c := e.condition(); c != CondAuthFailed {
			t.Errorf("condition %q", c)
		}
		e.states("", imapconf.StateConnecting, imapconf.StateSyncing, imapconf.StateIdle)
		evs = e.wantEvents(TypeAuthFailed, TypeRecovered)
		if ev := evs[1]; ev.Previous != CondAuthFailed || ev.Current != CondOK || ev.Error != "" {
			t.Errorf("recovered %+v", ev)
		}
		for range 3 {
			e.states("", imapconf.StateSyncing, imapconf.StateIdle)
			e.mon.check(context.Background())
		}
		e.wantEvents(TypeAuthFailed, TypeRecovered)
		if c := e.condition(); c != CondOK {
			t.Errorf("condition %q", c)
		}
	})
}

// TestMonitorNoFlapping: errors shorter than the threshold are nothing,
// and recovering from them is nothing either; only an error that lasts is
// mailbox.failing, once, and then mailbox.recovered.
func TestMonitorNoFlapping(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e.mon.check(ctx)
		e.states("", imapconf.StateSyncing, imapconf.StateIdle)
		for range 3 {
			e.states("connect: connection refused", imapconf.StateError, imapconf.StateConnecting)
			e.advance(50 * time.Second)
			e.mon.check(ctx)
			e.states("", imapconf.StateSyncing, imapconf.StatePolling)
			e.mon.check(ctx)
		}
		e.wantEvents()

		start := e.clock()
		e.states("connect: connection refused", imapconf.StateError)
		for range 5 { // error, connecting, error … for 50 s
			e.advance(10 * time.Second)
			e.states("connect: connection refused", imapconf.StateConnecting, imapconf.StateError)
			e.mon.check(ctx)
		}
		e.wantEvents()
		e.advance(10 * time.Second)
		e.states("", imapconf.StateConnecting)
		e.mon.check(ctx)
		evs := e.wantEvents(TypeFailing)
		if ev := evs[0]; !ev.Since.Equal(start) || ev.Previous != CondOK || ev.Current != CondFailing ||
			ev.Error != "connect: connection refused" {
			t.Errorf("failing %+v, want since %v", ev, start)
		}
		for range 3 {
			e.advance(time.Minute)
			e.states("read: i/o timeout", imapconf.StateStale, imapconf.StateConnecting)
			e.mon.check(ctx)
		}
		e.wantEvents(TypeFailing)
		e.states("", imapconf.StateSyncing, imapconf.StateIdle)
		e.mon.check(ctx)
		e.wantEvents(TypeFailing, TypeRecovered)

		// Failing, then refused: auth_failed follows failing.
		e.states("connect: connection refused", imapconf.StateError)
		e.advance(2 * time.Minute)
		e.mon.check(ctx)
		e.states("login: authentication failed", imapconf.StateConnecting, imapconf.StateAuthFailed)
		e.mon.check(ctx)
		e.wantEvents(TypeFailing, TypeRecovered, TypeFailing, TypeAuthFailed)
	})
}

// TestMonitorRestart: a new monitor (a restart) on a failing mailbox sends
// nothing while it still fails, and mailbox.recovered when it works.
func TestMonitorRestart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e.mon.check(ctx)
		e.states("connect: connection refused", imapconf.StateError)
		e.advance(2 * time.Minute)
		e.mon.check(ctx)
		e.wantEvents(TypeFailing)

		e2 := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e2.now = e.now
		e2.mon.check(ctx)
		e2.states("connect: connection refused", imapconf.StateError, imapconf.StateConnecting, imapconf.StateError)
		e2.advance(2 * time.Minute)
		e2.mon.check(ctx)
		e2.wantEvents(TypeFailing)
		e2.states("", imapconf.StateConnecting, imapconf.StateSyncing, imapconf.StateIdle)
		e2.wantEvents(TypeFailing, TypeRecovered)
	})
}

// TestMonitorReplicasSendOnce: two monitors seeing the same transition
// (the mailbox moved between replicas) queue one event.
func TestMonitorReplicasSendOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		a := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		b := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		a.mon.check(ctx)
		b.mon.check(ctx)
		a.states("login: authentication failed", imapconf.StateAuthFailed)
		b.states("login: authentication failed", imapconf.StateAuthFailed)
		a.wantEvents(TypeAuthFailed)
		b.states("", imapconf.StateConnecting, imapconf.StateIdle)
		a.states("", imapconf.StateConnecting, imapconf.StateIdle)
		a.mon.check(ctx)
		b.mon.check(ctx)
		a.wantEvents(TypeAuthFailed, TypeRecovered)
	})
}

// TestMonitorForgetsDisabled: a disabled mailbox forgets its condition
// without an event, and so does a deleted one nobody watches.
func TestMonitorForgetsDisabled(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e.mon.check(ctx)
		e.states("login: authentication failed", imapconf.StateAuthFailed)
		e.wantEvents(TypeAuthFailed)
		// The lease went to another replica: the condition stays.
		e.mon.OnState(ctx, e.box.ID, "", imapconf.Status{State: imapconf.StateAuthFailed}, imapconf.Status{State: imapconf.StateDisabled})
		e.mon.drain(ctx)
		e.mon.check(ctx)
		if c := e.condition(); c != CondAuthFailed {
			t.Fatalf("condition of a mailbox still enabled: %q, want it kept", c)
		}
		e.box.Enabled = false
		if err := st.UpdateIMAP(ctx, &e.box); err != nil {
			t.Fatal(err)
		}
		e.mon.check(ctx) // not watched here: forgotten by the check
		if c := e.condition(); c != CondOK {
			t.Errorf("condition of a disabled mailbox: %q, want none", c)
		}
		e.box.Enabled = true
		if err := st.UpdateIMAP(ctx, &e.box); err != nil {
			t.Fatal(err)
		}
		e.states("login: authentication failed", imapconf.StateConnecting, imapconf.StateAuthFailed)
		e.wantEvents(TypeAuthFailed, TypeAuthFailed)
		if err := st.DeleteIMAP(ctx, e.box.Name); err != nil {
			t.Fatal(err)
		}
		e.mon.OnState(ctx, e.box.ID, "", imapconf.Status{State: imapconf.StateAuthFailed}, imapconf.Status{State: imapconf.StateDisabled})
		e.mon.drain(ctx)
		if c := e.condition(); c != CondOK {
			t.Errorf("condition of a deleted mailbox: %q, want none", c)
		}
		e.wantEvents(TypeAuthFailed, TypeAuthFailed)
	})
}

// TestMonitorBacklog: runs.backlog once when more than BacklogRuns runs
// waited longer than BacklogAge; back to ok silently; again after that.
func TestMonitorBacklog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := newMonEnv(t, st, MonitorOptions{BacklogRuns: 2, BacklogAge: time.Minute})
		e.now = time.Now()
		makeRuns(t, st, 1, 3)
		e.mon.check(ctx)
		e.wantEvents() // not old enough
		e.advance(2 * time.Minute)
		for range backlogRewrite + 2 {
			e.mon.check(ctx)
		}
		evs := e.wantEvents(TypeRunsBacklog)
		if ev := evs[0]; ev.ObjectKind != "runs" || ev.Previous != CondOK || ev.Current != CondBacklog {
			t.Errorf("backlog %+v", ev)
		}
		// Two of three delivered: below the threshold.
		if c, err := st.ClaimRuns(ctx, time.Now(), 2, time.Hour); err != nil || len(c) != 2 {
			t.Fatalf("claimed %d, %v", len(c), err)
		}
		e.mon.check(ctx)
		e.wantEvents(TypeRunsBacklog)
		makeRuns(t, st, 10, 2)
		e.advance(2 * time.Minute)
		e.mon.check(ctx)
		e.wantEvents(TypeRunsBacklog, TypeRunsBacklog)
	})
}

// makeRuns records n messages from UID first on, each starting a run.
func makeRuns(t *testing.T, st *store.Store, first, n int) {
	t.Helper()
	var msgs []store.Incoming
	for i := range n {
		uid := uint32(first + i)
		raw := fmt.Sprintf("Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody\r\n", uid, uid)
		msgs = append(msgs, store.Incoming{UID: uid, Raw: []byte(raw), Msg: mail.Parse([]byte(raw))})
	}
	b := store.Batch{IMAPID: 999, IMAPName: "inbox", Epoch: 1,
		Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uint32(first + n - 1)}, Messages: msgs}
	_, _, err := st.RecordBatch(context.Background(), b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, _ store.Incoming) error {
		_, err := tx.CreateRun(ctx, &store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: "inbox"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMonitorRun: the monitor's own goroutine takes the state changes and
// applies the threshold on its ticker.
func TestMonitorRun(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	e := newMonEnv(t, st, MonitorOptions{FailingAfter: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	e.mon.now = time.Now
	notified := make(chan struct{}, 10)
	e.mon.notify = func() { notified <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.mon.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	now := time.Now()
	e.mon.OnState(ctx, e.box.ID, e.box.Name, imapconf.Status{State: imapconf.StateIdle},
		imapconf.Status{State: imapconf.StateError, Since: now, LastError: "connect: connection refused"})
	testwait.Until(t, 5*time.Second, func() error {
		if got := types(e.events()); got != TypeFailing {
			return fmt.Errorf("events %q, want mailbox.failing", got)
		}
		return nil
	})
	if since := time.Since(now); since < 300*time.Millisecond {
		t.Errorf("failing after %v, before the threshold", since)
	}
	select {
	case <-notified:
	default:
		t.Error("the sender was not notified")
	}
	e.mon.OnState(ctx, e.box.ID, e.box.Name, imapconf.Status{State: imapconf.StateError}, imapconf.Status{State: imapconf.StatePolling, Since: time.Now()})
	testwait.Until(t, 5*time.Second, func() error {
		if got := types(e.events()); got != TypeFailing+" "+TypeRecovered {
			return fmt.Errorf("events %q, want failing, recovered", got)
		}
		return nil
	})
}

// TestMonitorRedactsEchoedLogin: a server that echoes AUTHENTICATE PLAIN's
// response echoes the password in base64; the alert's error text has it
// in no form.
func TestMonitorRedactsEchoedLogin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newMonEnv(t, st, MonitorOptions{FailingAfter: time.Minute})
		e.mon.check(context.Background())
		e.states("", imapconf.StateSyncing, imapconf.StateIdle)
		plain := base64.StdEncoding.EncodeToString([]byte("\x00u\x00" + monPassword))
		e.states("login: authentication failed (NO bad response "+plain+")",
			imapconf.StateConnecting, imapconf.StateAuthFailed)
		ev := e.wantEvents(TypeAuthFailed)[0]
		if strings.Contains(ev.Error, plain) || !strings.Contains(ev.Error, "[redacted]") {
			t.Errorf("error text %q: want the encoded secrets redacted", ev.Error)
		}
	})
}
