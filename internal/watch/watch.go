// Package watch supervises the mailboxes: one watcher per enabled mailbox
// drives its source.Source (connect, sync through the ingest pipeline, wait
// for more) and reconnects with backoff after any failure; a watchdog
// takes a wait that overruns for a silent server; the status of each
// mailbox is kept for the API. The manager follows configuration changes
// without a restart and, with replicas, holds the mailbox leases. It knows
// no protocol: package sources picks the Source of a configuration.
package watch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sources"
	"mailtrigger/internal/spool"
	"mailtrigger/internal/store"
)

// Options tune the watchers. Zero values take the defaults.
type Options struct {
	SizeCap       int64         // messages above it are recorded as headers only; default 50 MB
	IdleMax       time.Duration // re-IDLE after this; default 10 min
	MinBackoff    time.Duration // default 1 s
	MaxBackoff    time.Duration // default 5 min
	AuthBackoff   time.Duration // after an authentication failure; default 5 min
	SilenceGrace  time.Duration // a wait may overrun IdleMax by this much before the watcher is stale; default 2 min
	ResyncEvery   time.Duration // how often the manager rereads the configurations; default 30 s
	BatchMessages int           // messages per ingest transaction; default 25 on SQLite, 100 on PostgreSQL
	BatchBytes    int64         // bytes per ingest transaction; default 16 MB
	// DialTimeout bounds connecting, TLS and login; CommandTimeout bounds
	// the wait for each command's answer (body fetches get more in
	// proportion to their size). A server silent for longer is taken for
	// gone: the watcher is stale and reconnects. Defaults are imapsource's
	// (30 s and 1 min).
	DialTimeout    time.Duration
	CommandTimeout time.Duration
	// Dial replaces the network dialer of the IMAP and POP3 connections
	// (tests put a fault-injecting proxy here).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Egress fences every connection to a mail server, token endpoint or
	// Graph (MAILTRIGGER_EGRESS); nil allows every address. A Dial of the
	// tests' replaces it for IMAP and POP3.
	Egress *egress.Policy
	// Spool takes the messages above its threshold into spool files
	// instead of memory (nil: every message is read into memory).
	Spool *spool.Spooler
	// Sources, when set, makes the source of a configuration instead of
	// package sources (tests put a fake source here).
	Sources func(c imapconf.Config) (source.Source, error)
}

// dial is the dialer of the IMAP and POP3 connections: Dial, else the
// egress policy's (nil: the sources' plain net.Dialer).
func (o Options) dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if o.Dial != nil {
		return o.Dial
	}
	return o.Egress.Dialer()
}

// defaults fills in what o leaves zero, for a store of dialect d.
func (o *Options) defaults(d store.Dialect) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.SizeCap == 0 {
		o.SizeCap = 50 << 20
	}
	def(&o.IdleMax, 10*time.Minute)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	def(&o.AuthBackoff, 5*time.Minute)
	def(&o.SilenceGrace, 2*time.Minute)
	def(&o.ResyncEvery, 30*time.Second)
	if o.BatchMessages == 0 {
		// An ingest transaction on PostgreSQL is about ten round trips
		// whatever its size, each a wait for the server; SQLite's are
		// calls in the process, and its one writer connection, held
		// longer by a bigger batch, is what the run worker waits for.
		// Measured with the bench's 10,000-message backlog
		// (docs/benchmarks.md, session 9): 100 messages gave PostgreSQL
		// a third less CPU and the backlog 10-20 % more messages a
		// second; on SQLite 25 and 100 were within the noise.
		o.BatchMessages = 25
		if d == store.Postgres {
			o.BatchMessages = 100
		}
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = 16 << 20
	}
}

// Deps are what the manager needs.
type Deps struct {
	Store    *store.Store
	Ingester *ingest.Ingester
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Options  Options
	Cluster  Cluster
	// OnState, when set, is told every change of state of a mailbox this
	// manager watches (the alert monitor). It is called with the
	// manager's lock held and must not block. next.State is
	// imapconf.StateDisabled when the manager stops keeping the mailbox's
	// status (disabled, deleted, or its lease gone to another replica);
	// name is "" then.
	OnState func(ctx context.Context, id int64, name string, prev, next imapconf.Status)
}

// Manager supervises the watchers.
type Manager struct {
	store   *store.Store
	ingest  *ingest.Ingester
	log     *slog.Logger
	opts    Options
	metrics *metrics
	wake    chan struct{}
	// leaseNow asks the cluster loop for a lease round before its tick
	// (leasing only): a configuration changed.
	leaseNow chan struct{}
	cluster  Cluster
	onState  func(ctx context.Context, id int64, name string, prev, next imapconf.Status)
	leasing  bool      // watch only the mailboxes whose lease is held
	started  time.Time // for the replica registry

	syncMu    sync.Mutex // one sync at a time
	lastRound time.Time  // the last cluster round that reached the database; lease goroutine only

	mu       sync.Mutex
	watchers map[int64]*watcher
	status   map[int64]*imapconf.Status // by configuration id, kept after a watcher stops
	held     map[int64]int64            // leases held: configuration id → token (leasing only)
	leases   map[int64]store.Lease      // every lease as of leasesAt, for the status of mailboxes other replicas hold
	leasesAt time.Time
}

type metrics struct {
	states     *prometheus.GaugeVec
	reconnects prometheus.Counter
}

// New returns a manager; Run starts it.
func New(d Deps) *Manager {
	d.Options.defaults(d.Store.Dialect())
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	m := &metrics{
		states: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailtrigger_watchers", Help: "Mailbox watchers by state."}, []string{"state"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtrigger_watcher_reconnects_total",
			Help: "Times a watcher reconnected after a failure."}),
	}
	if d.Registry != nil {
		d.Registry.MustRegister(m.states, m.reconnects)
	}
	d.Cluster.defaults()
	return &Manager{store: d.Store, ingest: d.Ingester, log: d.Logger, opts: d.Options, metrics: m,
		wake: make(chan struct{}, 1), leaseNow: make(chan struct{}, 1), watchers: map[int64]*watcher{}, status: map[int64]*imapconf.Status{},
		cluster: d.Cluster, onState: d.OnState, leasing: d.Cluster.ReplicaID != "" && d.Store.Dialect() == store.Postgres,
		started: time.Now().UTC(), held: map[int64]int64{}}
}

// Changed asks the manager to reread the configurations now. When leasing
// it also asks for a lease round at once: a mailbox created or enabled
// (through this replica or, seen by pollConfigs, another) is claimed and
// watched within moments, not at the next renewal up to RenewEvery later,
// and one disabled is let go.
func (m *Manager) Changed(context.Context) {
	m.resync()
	if m.leasing {
		select {
		case m.leaseNow <- struct{}{}:
		default:
		}
	}
}

// resync asks the manager to reread the configurations now.
func (m *Manager) resync() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run supervises until ctx ends, then stops every watcher and waits for them:
// a batch being recorded commits or rolls back as a whole. With a replica
// id it keeps the heartbeat and (on PostgreSQL) the mailbox leases, which it
// releases on the way out so that other replicas take the mailboxes at once.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.opts.ResyncEvery)
	defer t.Stop()
	var cluster sync.WaitGroup
	cctx, stopCluster := context.WithCancel(ctx)
	defer stopCluster()
	if m.cluster.ReplicaID != "" {
		m.lastRound = time.Now()
		if m.leasing {
			// "": the database is away; the first version read then
			// is the one compared with.
			v, _ := m.store.ConfigVersion(ctx)
			cluster.Go(func() { m.pollConfigs(cctx, v) })
		}
		cluster.Go(func() { m.runCluster(cctx) })
	}
	for {
		m.sync(ctx)
		select {
		case <-ctx.Done():
			stopCluster()
			cluster.Wait()
			m.stopAll()
			if m.cluster.ReplicaID != "" {
				m.leave()
			}
			return
		case <-t.C:
		case <-m.wake:
		}
	}
}

// Status returns the status of configuration c.
func (m *Manager) Status(c imapconf.Config) *imapconf.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !c.Enabled {
		return &imapconf.Status{State: imapconf.StateDisabled}
	}
	st, ok := m.status[c.ID]
	if !ok {
		if m.leasing {
			if st := m.remoteStatus(c.ID); st != nil {
				return st
			}
		}
		return &imapconf.Status{State: imapconf.StateConnecting}
	}
	cp := *st
	if m.leasing {
		cp.Replica = m.cluster.ReplicaID
	}
	return &cp
}

func (m *Manager) sync(ctx context.Context) {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	// The pages are kept as read and want points into them: this runs
	// every 30 s, and copying each configuration (464 bytes) into one
	// growing slice and then a map of values was most of the garbage a
	// service with thousands of mailboxes makes at rest, which sets how
	// often it collects (docs/memory.md).
	var pages [][]imapconf.Config
	n := 0
	after := ""
	for {
		page, err := m.store.ListIMAP(ctx, after, 500)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Error("reading imap configurations", "err", err)
			}
			return
		}
		pages, n = append(pages, page), n+len(page)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Name
	}
	want := make(map[int64]*imapconf.Config, n)
	m.mu.Lock()
	held := m.held
	for _, page := range pages {
		for i := range page {
			c := &page[i]
			if _, ok := held[c.ID]; c.Enabled && (ok || !m.leasing) {
				want[c.ID] = c
			}
		}
	}
	// Stop the watchers whose configuration went or changed, or whose
	// lease was lost or retaken, without the lock: a stopping watcher may
	// still be reporting its status.
	var stopping []*watcher
	for id, w := range m.watchers {
		c, ok := want[id]
		if !ok || !c.UpdatedAt.Equal(w.cfg.UpdatedAt) || w.token != held[id] {
			stopping = append(stopping, w)
			delete(m.watchers, id)
		}
	}
	m.mu.Unlock()
	for _, w := range stopping {
		w.stop()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.status {
		if _, ok := want[id]; !ok {
			m.stateChanged(id, "", *m.status[id], imapconf.Status{State: imapconf.StateDisabled})
			delete(m.status, id)
		}
	}
	for id, cp := range want {
		if _, ok := m.watchers[id]; ok {
			continue
		}
		c := *cp
		if c.SecretError != "" {
			// The stored secret does not open: report it, never log in
			// without it.
			msg := "the stored " + c.SecretError + "; enter it again"
			if st, ok := m.status[id]; !ok || st.State != imapconf.StateError || st.LastError != msg {
				now := time.Now().UTC()
				var prev imapconf.Status
				if ok {
					prev = *st
				}
				m.status[id] = &imapconf.Status{State: imapconf.StateError, Since: now, LastError: msg, LastErrorAt: &now}
				m.stateChanged(id, c.Name, prev, *m.status[id])
				m.log.Error("imap configuration not watched: its stored secret does not open", "imap", c.Name, "err", c.SecretError)
			}
			continue
		}
		if ok, why := sources.Supported(c); !ok {
			if st, ok := m.status[id]; ok && st.State == imapconf.StateUnsupported {
				continue
			}
			m.status[id] = &imapconf.Status{State: imapconf.StateUnsupported, Since: time.Now().UTC(), LastError: why}
			continue
		}
		w := &watcher{m: m, cfg: c, log: m.log.With("imap", c.Name), done: make(chan struct{}), token: held[id]}
		if _, ok := m.status[id]; !ok {
			m.status[id] = &imapconf.Status{State: imapconf.StateConnecting, Since: time.Now().UTC()}
		}
		wctx := context.WithoutCancel(ctx)
		if m.cluster.ReplicaID != "" {
			// Checked on PostgreSQL (leasing); on SQLite it only names
			// the replica recording.
			wctx = store.WithFence(wctx, store.Fence{IMAPID: id, Owner: m.cluster.ReplicaID, Token: w.token})
		}
		wctx, w.cancel = context.WithCancel(wctx)
		m.watchers[id] = w
		go w.run(wctx)
	}
	m.countStates()
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	ws := make([]*watcher, 0, len(m.watchers))
	for id, w := range m.watchers {
		ws = append(ws, w)
		delete(m.watchers, id)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}

// countStates sets the state gauge; m.mu is held.
func (m *Manager) countStates() {
	m.metrics.states.Reset()
	for _, st := range m.status {
		m.metrics.states.WithLabelValues(st.State).Inc()
	}
}

// update changes the status of configuration id under the lock. The status
// of a configuration that is gone is not brought back.
func (m *Manager) update(id int64, name string, fn func(st *imapconf.Status)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.status[id]
	if !ok {
		return
	}
	prev := *st
	fn(st)
	if st.State != prev.State {
		st.Since = time.Now().UTC()
		m.countStates()
		m.stateChanged(id, name, prev, *st)
	}
}

// stateChanged tells OnState of a change; m.mu is held.
func (m *Manager) stateChanged(id int64, name string, prev, next imapconf.Status) {
	if m.onState != nil && prev.State != next.State {
		if m.leasing {
			next.Replica = m.cluster.ReplicaID
		}
		m.onState(context.Background(), id, name, prev, next)
	}
}

// backoff returns the wait before reconnect attempt n (0-based): exponential
// from min to max, with full jitter in its upper half.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}
