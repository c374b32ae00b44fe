package alert

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/store"
)

// Conditions recorded under the alert condition keys.
const (
	CondOK         = "ok"
	CondAuthFailed = "auth_failed"
	CondFailing    = "failing"
	CondBacklog    = "backlog"
)

// Condition keys.
const (
	mailboxKeyPrefix = "mailbox:"
	backlogKey       = "runs:backlog"
)

// MailboxKey is the alert condition key of mailbox configuration id.
func MailboxKey(id int64) string { return mailboxKeyPrefix + strconv.FormatInt(id, 10) }

// MonitorOptions tune the monitor. Zero values take the defaults.
type MonitorOptions struct {
	FailingAfter time.Duration // mailbox.failing after this long without idle or polling; default 5 min
	BacklogRuns  int           // runs.backlog above this many waiting runs; default 100
	BacklogAge   time.Duration // … that have waited longer than this; default 10 min
	Tick         time.Duration // how often thresholds and the backlog are checked; default 5 s
}

func (o *MonitorOptions) defaults() {
	if o.FailingAfter <= 0 {
		o.FailingAfter = 5 * time.Minute
	}
	if o.BacklogRuns <= 0 {
		o.BacklogRuns = 100
	}
	if o.BacklogAge <= 0 {
		o.BacklogAge = 10 * time.Minute
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Second
	}
}

// MonitorDeps are what the monitor needs.
type MonitorDeps struct {
	Store  *store.Store
	Logger *slog.Logger
	// ReplicaID names this replica in the events' details.
	ReplicaID string
	// Secrets are redacted from every error text besides the mailbox's
	// own (the SMTP password, …): a second fence, the texts are meant to
	// be free of secrets already.
	Secrets []string
	// Notify, when set, is called after an event was queued (the
	// sender's Notify).
	Notify  func()
	Options MonitorOptions
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Monitor turns what the watchers and the run queue do into alert events:
// it is told every state change of the mailboxes this replica watches
// (OnState, from watch.Deps) and checks the failing threshold and the run
// backlog on a ticker. Each transition is recorded with
// store.SwapAlertCondition, which queues the event in the same
// transaction: one event per transition, across restarts and replicas.
type Monitor struct {
	st      *store.Store
	log     *slog.Logger
	opts    MonitorOptions
	replica string
	secrets []string
	notify  func()
	now     func() time.Time

	mu      sync.Mutex
	pending []stateChange
	wake    chan struct{}

	// Run's goroutine only.
	boxes        map[int64]*tracked
	recorded     map[int64]string // the mailboxes' conditions other than ok as of the last check; nil unknown
	backlog      string           // the recorded runs:backlog condition as last known; "" unknown
	backlogTicks int              // ticks since backlog was last written
}

type stateChange struct {
	id         int64
	name       string
	prev, next imapconf.Status
}

// tracked is what the monitor knows of a mailbox this replica watches.
type tracked struct {
	name      string
	state     string
	stateAt   time.Time // when it entered state
	lastError string
	// trouble is when the mailbox last went from working (idle or
	// polling, or its start) to failing (error, stale, auth_failed);
	// zero while it works.
	trouble time.Time
	cond    string // the recorded condition as last known; "" unknown
}

// maxPending bounds the state changes waiting for Run; beyond it the
// oldest are dropped (a monitor that far behind is stuck on its database).
const maxPending = 100000

// NewMonitor returns a monitor; Run starts it.
func NewMonitor(d MonitorDeps) *Monitor {
	d.Options.defaults()
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Notify == nil {
		d.Notify = func() {}
	}
	return &Monitor{st: d.Store, log: d.Logger, opts: d.Options, replica: d.ReplicaID, secrets: d.Secrets, notify: d.Notify,
		now: d.Now, wake: make(chan struct{}, 1), boxes: map[int64]*tracked{}}
}

// OnState is watch.Deps.OnState: it queues the change for Run and never
// blocks.
func (m *Monitor) OnState(_ context.Context, id int64, name string, prev, next imapconf.Status) {
	m.mu.Lock()
	if len(m.pending) >= maxPending {
		m.pending = m.pending[1:]
	}
	m.pending = append(m.pending, stateChange{id: id, name: name, prev: prev, next: next})
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run follows the state changes and checks the thresholds until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.opts.Tick)
	defer t.Stop()
	m.check(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
			m.drain(ctx)
		case <-t.C:
			m.check(ctx)
		}
	}
}

// drain applies the queued state changes.
func (m *Monitor) drain(ctx context.Context) {
	m.mu.Lock()
	changes := m.pending
	m.pending = nil
	m.mu.Unlock()
	for _, c := range changes {
		m.apply(ctx, c)
	}
}

func (m *Monitor) apply(ctx context.Context, c stateChange) {
	if c.next.State == imapconf.StateDisabled {
		delete(m.boxes, c.id)
		m.forgetIfGone(ctx, c.id)
		return
	}
	b := m.boxes[c.id]
	if b == nil {
		b = &tracked{}
		m.boxes[c.id] = b
		if m.recorded != nil {
			b.cond = m.recorded[c.id]
			if b.cond == "" {
				b.cond = CondOK
			}
		}
	}
	if c.name != "" {
		b.name = c.name
	}
	b.state, b.stateAt = c.next.State, c.next.Since
	if b.stateAt.IsZero() {
		b.stateAt = m.now().UTC()
	}
	if c.next.LastError != "" {
		b.lastError = c.next.LastError
	}
	switch c.next.State {
	case imapconf.StateIdle, imapconf.StatePolling:
		b.trouble = time.Time{}
	case imapconf.StateError, imapconf.StateStale, imapconf.StateAuthFailed:
		if b.trouble.IsZero() {
			b.trouble = b.stateAt
		}
	}
	m.reconcile(ctx, c.id, b)
}

// check is the ticker's round: it rereads the recorded conditions of the
// mailboxes (forgetting those of mailboxes disabled or deleted), applies
// the failing threshold and checks the run backlog.
func (m *Monitor) check(ctx context.Context) {
	conds, err := m.st.AlertConditions(ctx, mailboxKeyPrefix)
	if err != nil {
		m.recorded = nil
		if ctx.Err() == nil {
			m.log.Error("reading the alert conditions of the mailboxes", "err", err)
		}
	} else {
		recorded := map[int64]string{}
		m.recorded = recorded
		for _, c := range conds {
			id, err := strconv.ParseInt(strings.TrimPrefix(c.Key, mailboxKeyPrefix), 10, 64)
			if err != nil {
				continue
			}
			recorded[id] = c.Condition
			if _, ok := m.boxes[id]; !ok {
				m.forgetIfGone(ctx, id)
			}
		}
		for id, b := range m.boxes {
			if c, ok := recorded[id]; ok {
				b.cond = c
			} else {
				b.cond = CondOK
			}
		}
	}
	m.drain(ctx)
	for id, b := range m.boxes {
		m.reconcile(ctx, id, b)
	}
	m.checkBacklog(ctx)
}

// forgetIfGone forgets the condition of mailbox id unless it is enabled.
func (m *Monitor) forgetIfGone(ctx context.Context, id int64) {
	enabled, err := m.st.IMAPEnabledByID(ctx, id)
	if err == nil && !enabled {
		if err = m.st.ForgetAlertCondition(ctx, MailboxKey(id)); err == nil {
			delete(m.recorded, id)
		}
	}
	if err != nil && ctx.Err() == nil {
		m.log.Error("forgetting the alert condition of a disabled or deleted mailbox", "imap_id", id, "err", err)
	}
}

// want is the condition b's state calls for; "" keeps the recorded one.
func (m *Monitor) want(b *tracked) string {
	switch b.state {
	case imapconf.StateIdle, imapconf.StatePolling:
		return CondOK
	case imapconf.StateAuthFailed:
		return CondAuthFailed
	case imapconf.StateError, imapconf.StateStale, imapconf.StateConnecting:
		if b.trouble.IsZero() || m.now().Sub(b.trouble) < m.opts.FailingAfter {
			return ""
		}
		if b.cond == CondAuthFailed && b.state == imapconf.StateConnecting {
			// Retrying a refused login: still auth_failed.
			return ""
		}
		return CondFailing
	}
	return ""
}

// reconcile records the condition b calls for when it differs from the
// one recorded; the store queues the event of the transition.
func (m *Monitor) reconcile(ctx context.Context, id int64, b *tracked) {
	want := m.want(b)
	if want == "" || want == b.cond {
		return
	}
	cfg, err := m.st.GetIMAP(ctx, b.name)
	if err != nil && !store.OnlySecret(err) {
		// Gone meanwhile: the manager tells, or the next check forgets it.
		m.log.Debug("alert monitor: reading the mailbox", "imap", b.name, "err", err)
	}
	secrets := append([]string{cfg.Password, cfg.ClientSecret}, m.secrets...)
	errText := ""
	if want != CondOK {
		errText, _ = source.Redact(b.lastError, secrets...)
	}
	since := b.stateAt
	if want == CondFailing {
		since = b.trouble
	}
	details, _ := json.Marshal(mailboxDetails{ServerType: cfg.ServerType, Host: cfg.Host, Replica: m.replica, State: b.state})
	prev, queued, err := m.st.SwapAlertCondition(ctx, MailboxKey(id), want, errText, func(prev string) (store.AlertEvent, bool) {
		ev := store.AlertEvent{ObjectKind: "mailbox", ObjectName: b.name, Previous: prev, Current: want, Error: errText,
			Since: since.UTC(), OccurredAt: m.now().UTC(), Details: details}
		switch {
		case want == CondAuthFailed:
			ev.Type = TypeAuthFailed
		case want == CondFailing && prev == CondOK:
			ev.Type = TypeFailing
		case want == CondOK && (prev == CondAuthFailed || prev == CondFailing):
			ev.Type = TypeRecovered
		default:
			return ev, false
		}
		return ev, true
	})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("recording a mailbox's alert condition", "imap", b.name, "condition", want, "err", err)
		}
		return
	}
	b.cond = want
	if queued {
		m.log.Info("mailbox alert", "imap", b.name, "previous", prev, "condition", want, "state", b.state)
		m.notify()
	}
}

type mailboxDetails struct {
	ServerType string `json:"serverType,omitempty"`
	Host       string `json:"host,omitempty"`
	Replica    string `json:"replica,omitempty"`
	State      string `json:"state"`
}

// backlogRewrite is how many ticks the backlog condition may go without
// being written again even when unchanged: another replica may have
// recorded it meanwhile.
const backlogRewrite = 12

// checkBacklog records runs:backlog: backlog while more than BacklogRuns
// runs have waited longer than BacklogAge (runs.backlog on the way in),
// ok again silently.
func (m *Monitor) checkBacklog(ctx context.Context) {
	now := m.now()
	n, err := m.st.CountWaitingRuns(ctx, now.Add(-m.opts.BacklogAge), m.opts.BacklogRuns+1)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("checking the run backlog", "err", err)
		}
		return
	}
	want := CondOK
	if n > m.opts.BacklogRuns {
		want = CondBacklog
	}
	m.backlogTicks++
	if want == m.backlog && m.backlogTicks < backlogRewrite {
		return
	}
	details, _ := json.Marshal(backlogDetails{MoreThan: m.opts.BacklogRuns, WaitingLongerThan: m.opts.BacklogAge.String(), Replica: m.replica})
	_, queued, err := m.st.SwapAlertCondition(ctx, backlogKey, want, "", func(prev string) (store.AlertEvent, bool) {
		return store.AlertEvent{Type: TypeRunsBacklog, ObjectKind: "runs", Previous: prev, Current: want,
			Since: now.UTC(), OccurredAt: now.UTC(), Details: details}, want == CondBacklog && prev == CondOK
	})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("recording the run backlog's alert condition", "condition", want, "err", err)
		}
		return
	}
	m.backlog, m.backlogTicks = want, 0
	if queued {
		m.log.Warn("run backlog alert", "waiting_more_than", m.opts.BacklogRuns, "older_than", m.opts.BacklogAge)
		m.notify()
	}
}

type backlogDetails struct {
	MoreThan          int    `json:"moreThan"`          // more than this many runs …
	WaitingLongerThan string `json:"waitingLongerThan"` // … waited longer than this
	Replica           string `json:"replica,omitempty"`
}
