package watch

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
)

// Cluster identifies this process among the replicas serving the database
// and tunes the mailbox leases. With a ReplicaID the manager keeps a
// heartbeat in the replica registry; on PostgreSQL it also watches only the
// mailboxes whose lease it holds, spread fairly over the live replicas.
type Cluster struct {
	ReplicaID string // "": no registry and no leases (tests that drive one manager)
	Address   string // where the replica serves HTTP, for the cluster view
	Version   string
	// LeaseTTL is how long a lease lasts without renewal: a replica that
	// dies or is cut off loses its mailboxes after that long. Default 15 s.
	LeaseTTL time.Duration
	// RenewEvery is how often leases are renewed, claimed and released and
	// the heartbeat recorded. Default 5 s; it must be well under LeaseTTL.
	RenewEvery time.Duration
	// ConfigPoll is how often the configurations' version is read, so that a
	// change made through another replica reaches this one. Default 0.5 s.
	ConfigPoll time.Duration
}

func (c *Cluster) defaults() {
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 15 * time.Second
	}
	if c.RenewEvery <= 0 {
		c.RenewEvery = 5 * time.Second
	}
	if c.RenewEvery > c.LeaseTTL/2 {
		c.RenewEvery = c.LeaseTTL / 2
	}
	if c.ConfigPoll <= 0 {
		c.ConfigPoll = 500 * time.Millisecond
	}
}

// forgetReplicas is how long a silent replica stays in the registry.
const forgetReplicas = 10 * time.Minute

// Cluster returns the replicas serving the database, as this one sees them.
func (m *Manager) Cluster(ctx context.Context) (store.ClusterView, error) {
	now, err := m.store.Clock(ctx)
	if err != nil {
		return store.ClusterView{}, err
	}
	reps, err := m.store.Replicas(ctx)
	if err != nil {
		return store.ClusterView{}, err
	}
	v := store.ClusterView{Self: m.cluster.ReplicaID, Database: m.store.Dialect(), Leasing: m.leasing,
		LeaseTTLSeconds: m.cluster.LeaseTTL.Seconds(), Replicas: []store.ReplicaView{}}
	for _, r := range reps {
		v.Replicas = append(v.Replicas, store.ReplicaView{Replica: r, Self: r.ID == m.cluster.ReplicaID,
			Live: !r.HeartbeatAt.Before(now.Add(-m.cluster.LeaseTTL))})
	}
	return v, nil
}

// runCluster keeps the heartbeat and the leases until ctx ends: a round
// every RenewEvery, and one at once when a configuration changed (Changed).
func (m *Manager) runCluster(ctx context.Context) {
	t := time.NewTicker(m.cluster.RenewEvery)
	defer t.Stop()
	for {
		m.clusterRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.leaseNow:
		}
	}
}

// pollConfigs asks for a resync whenever the configurations change in the
// database (through another replica), from the version last (read before
// the first lease round, so that no change after that round is missed).
func (m *Manager) pollConfigs(ctx context.Context, last string) {
	t := time.NewTicker(m.cluster.ConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := m.store.ConfigVersion(ctx)
		if err != nil {
			continue // the lease round reports the database being away
		}
		if last != "" && v != last {
			m.Changed(ctx)
		}
		last = v
	}
}

// clusterRound records the heartbeat and, when leasing, renews the leases
// held, gives up those above the fair share and claims free ones up to it.
func (m *Manager) clusterRound(ctx context.Context) {
	start := time.Now()
	now, err := m.store.Clock(ctx)
	if err == nil {
		m.mu.Lock()
		n := len(m.watchers)
		if m.leasing {
			n = len(m.held)
		}
		m.mu.Unlock()
		err = m.store.Heartbeat(ctx, store.Replica{ID: m.cluster.ReplicaID, Address: m.cluster.Address,
			Version: m.cluster.Version, Mailboxes: n, StartedAt: m.started}, now, forgetReplicas)
	}
	if err == nil && m.leasing {
		err = m.leaseRound(ctx, now)
	}
	if err == nil {
		m.lastRound = start
		return
	}
	if ctx.Err() != nil {
		return
	}
	m.log.Error("cluster round failed", "replica", m.cluster.ReplicaID, "err", err)
	// Unable to renew for a whole lease time: the leases may be someone
	// else's now. Stop the watchers (fencing would refuse their writes
	// anyway) rather than keep connections to mailboxes not ours.
	if m.leasing && time.Since(m.lastRound) > m.cluster.LeaseTTL {
		m.mu.Lock()
		dropped := len(m.held)
		m.held = map[int64]int64{}
		m.mu.Unlock()
		if dropped > 0 {
			m.log.Warn("leases not renewed within their time; stopping this replica's watchers", "replica", m.cluster.ReplicaID, "mailboxes", dropped)
			m.sync(ctx)
		}
	}
}

func (m *Manager) leaseRound(ctx context.Context, now time.Time) error {
	me := m.cluster.ReplicaID
	until := now.Add(m.cluster.LeaseTTL)
	if err := m.store.EnsureLeases(ctx); err != nil {
		return err
	}
	// A disabled mailbox's watcher is stopped by the sync that noticed the
	// change; its lease no longer counts towards the share.
	disabled, err := m.store.ReleaseDisabled(ctx, me)
	if err != nil {
		return err
	}
	m.mu.Lock()
	for _, id := range disabled {
		delete(m.held, id)
	}
	held := make(map[int64]int64, len(m.held))
	status := make(map[int64]string, len(m.held))
	for id, tok := range m.held {
		held[id] = tok
		if st, ok := m.status[id]; ok {
			cp := *st
			cp.Replica = me
			if b, err := json.Marshal(cp); err == nil {
				status[id] = string(b)
			}
		}
	}
	m.mu.Unlock()
	kept, err := m.store.RenewLeases(ctx, me, held, status, until)
	if err != nil {
		return err
	}
	for id := range held {
		if _, ok := kept[id]; !ok {
			m.log.Warn("mailbox lease lost to another replica; stopping its watcher", "replica", me, "imap_id", id)
		}
	}

	reps, err := m.store.Replicas(ctx)
	if err != nil {
		return err
	}
	live := 0
	for _, r := range reps {
		if r.ID == me || !r.HeartbeatAt.Before(now.Add(-m.cluster.LeaseTTL)) {
			live++
		}
	}
	enabled, err := m.store.CountEnabled(ctx)
	if err != nil {
		return err
	}
	share := (enabled + live - 1) / max(live, 1)

	var release []int64
	if len(kept) > share {
		ids := make([]int64, 0, len(kept))
		for id := range kept {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		release = ids[share:]
		for _, id := range release {
			delete(kept, id)
		}
	}
	changed := len(kept) != len(held)
	for id, tok := range kept {
		if held[id] != tok {
			changed = true
		}
	}
	m.mu.Lock()
	m.held = kept
	m.mu.Unlock()
	if changed || len(release) > 0 {
		// Stop the watchers of leases lost or given up before the release,
		// so that nothing of theirs is written after another replica took
		// over (fencing would refuse it anyway).
		m.sync(ctx)
	}
	if len(release) > 0 {
		if err := m.store.ReleaseLeases(ctx, me, release); err != nil {
			return err
		}
		m.log.Info("released mailboxes above this replica's fair share", "replica", me, "released", len(release),
			"share", share, "replicas", live)
	}
	if len(kept) < share {
		claimed, err := m.store.ClaimLeases(ctx, me, share-len(kept), now, until)
		if err != nil {
			return err
		}
		if len(claimed) > 0 {
			m.mu.Lock()
			for id, tok := range claimed {
				m.held[id] = tok
			}
			n := len(m.held)
			m.mu.Unlock()
			m.log.Info("took mailbox leases", "replica", me, "claimed", len(claimed), "held", n,
				"share", share, "replicas", live)
			m.resync()
		}
	}
	leases, err := m.store.Leases(ctx)
	if err != nil {
		return err
	}
	cache := make(map[int64]store.Lease, len(leases))
	for _, l := range leases {
		cache[l.IMAPID] = l
	}
	m.mu.Lock()
	m.leases, m.leasesAt = cache, now
	m.mu.Unlock()
	return nil
}

// leave gives up every lease this replica holds (graceful shutdown: the
// watchers are stopped already), and leaves the registry.
func (m *Manager) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m.leasing {
		if err := m.store.ReleaseLeases(ctx, m.cluster.ReplicaID, nil); err != nil {
			m.log.Error("releasing mailbox leases on shutdown", "replica", m.cluster.ReplicaID, "err", err)
		} else {
			m.log.Info("released mailbox leases", "replica", m.cluster.ReplicaID)
		}
	}
	if err := m.store.RemoveReplica(ctx, m.cluster.ReplicaID); err != nil {
		m.log.Error("leaving the replica registry", "replica", m.cluster.ReplicaID, "err", err)
	}
}

// remoteStatus is the status another replica reported for configuration id
// (nil when no replica holds it); m.mu is held.
func (m *Manager) remoteStatus(id int64) *imapconf.Status {
	l, ok := m.leases[id]
	if !ok || l.Owner == "" || l.Owner == m.cluster.ReplicaID || l.ExpiresAt.Before(m.leasesAt) {
		return nil
	}
	st := &imapconf.Status{State: imapconf.StateConnecting}
	if l.Status != "" {
		if err := json.Unmarshal([]byte(l.Status), st); err != nil {
			st = &imapconf.Status{State: imapconf.StateConnecting}
		}
	}
	st.Replica = l.Owner
	return st
}

// isFenced reports a write refused because the lease was lost.
func isFenced(err error) bool { return errors.Is(err, store.ErrFenced) }
