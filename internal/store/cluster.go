package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrFenced is a write refused because the watcher making it no longer holds
// the lease it was started under: another replica took the mailbox over.
var ErrFenced = errors.New("mailbox lease lost to another replica")

// Replica is one mailtrigger process serving the database.
type Replica struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Version     string    `json:"version"`
	Mailboxes   int       `json:"mailboxes"` // mailboxes it watches, as of its last heartbeat
	StartedAt   time.Time `json:"startedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
}

// Clock returns the database's time on PostgreSQL, so that the replicas
// agree on lease expiry whatever their own clocks say, and this machine's
// time on SQLite (one process).
func (s *Store) Clock(ctx context.Context) (time.Time, error) {
	if s.dialect != Postgres {
		return now(), nil
	}
	var t time.Time
	if err := s.w.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading the database clock: %w", err)
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// Heartbeat records that replica r is alive at the database time t and
// forgets replicas silent since before t-forget (their rows are kept that
// long so that the cluster view shows a replica that just died).
func (s *Store) Heartbeat(ctx context.Context, r Replica, t time.Time, forget time.Duration) error {
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO replicas (id, address, version, mailboxes, started_at, heartbeat_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
				mailboxes = excluded.mailboxes, heartbeat_at = excluded.heartbeat_at`,
			r.ID, r.Address, r.Version, r.Mailboxes, r.StartedAt.UTC(), t); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE heartbeat_at < $1`, t.Add(-forget)); err != nil {
			return err
		}
		// A replica heartbeating is not lost (any more): a later loss
		// alerts again.
		_, err := tx.ExecContext(ctx, `DELETE FROM alert_conditions WHERE key = $1`, "replica:"+r.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("recording heartbeat of replica %s: %w", r.ID, err)
	}
	return nil
}

// RemoveReplica forgets replica id (it is shutting down).
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM replicas WHERE id = $1`, id); err != nil {
		return fmt.Errorf("removing replica %s: %w", id, err)
	}
	return nil
}

// Replicas lists the replicas known, oldest first.
func (s *Store) Replicas(ctx context.Context) ([]Replica, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, address, version, mailboxes, started_at, heartbeat_at FROM replicas ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing replicas: %w", err)
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var r Replica
		if err := rows.Scan(&r.ID, &r.Address, &r.Version, &r.Mailboxes, &r.StartedAt, &r.HeartbeatAt); err != nil {
			return nil, fmt.Errorf("listing replicas: %w", err)
		}
		r.StartedAt, r.HeartbeatAt = r.StartedAt.UTC(), r.HeartbeatAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Fence names the lease a watcher writes under.
type Fence struct {
	IMAPID int64
	Owner  string // the replica
	Token  int64  // the lease's token when the replica took it
}

type fenceKey struct{}

// WithFence returns ctx carrying f: messages recorded with that context are
// marked with f's replica and token, and on PostgreSQL every transaction
// Write runs with it first checks, holding a key-share lock on the lease row until it
// commits, that f's replica still holds the lease with f's token, and fails
// with ErrFenced when not. A takeover (which locks the row FOR UPDATE, skipping
// it while such a lock is held, and bumps the token) therefore either waits
// for the transaction or makes it fail: a replica that lost a mailbox cannot
// record its messages or move its checkpoint.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

func fenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// checkFence checks the fence in ctx, if any, inside tx.
func (s *Store) checkFence(ctx context.Context, tx *sql.Tx) error {
	f, ok := fenceFrom(ctx)
	if !ok || s.dialect != Postgres {
		return nil
	}
	return s.fenceStmt(f).runOn(ctx, tx)
}

// fenceSQL reads the lease of configuration $1 for checkFence.
//
// FOR KEY SHARE holds off a takeover (ClaimLeases locks the row FOR
// UPDATE, skipping it while any transaction holds this) but not the
// owner's renewal, which changes no key. With FOR SHARE every renewal
// waited for the ingest transactions, and since new share lockers go
// ahead of a waiting update, two batches written at once could hold it
// off for as long as a backlog lasted (270–320 ms a renewal in the bench;
// docs/benchmarks.md, session 12). A release (an empty owner) does not wait
// either: the transaction that checked the fence before it was the
// owner's, and the next one finds the lease released.
const fenceSQL = `SELECT owner, token FROM mailbox_leases WHERE imap_id = $1 FOR KEY SHARE`

// fenced is the error of a write whose fence f no longer holds.
func fenced(f Fence) error {
	return fmt.Errorf("imap configuration %d (lease token %d): %w", f.IMAPID, f.Token, ErrFenced)
}

// fenceStmt is checkFence's statement, made at once (runOn) or held and
// sent with others (see held.go): either fails with ErrFenced when f no
// longer holds.
func (s *Store) fenceStmt(f Fence) heldStmt {
	var owner string
	var token int64
	found := false
	return heldStmt{sql: fenceSQL, args: []any{f.IMAPID}, what: fmt.Sprintf("checking the lease of imap configuration %d", f.IMAPID),
		scan: func(row interface{ Scan(...any) error }) error {
			found = true
			return row.Scan(&owner, &token)
		},
		done: func() error {
			if !found || owner != f.Owner || token != f.Token {
				return fenced(f)
			}
			return nil
		}}
}

// CheckFence reports ErrFenced when the fence in ctx no longer holds (no
// fence: nil). Work outside the database that only the lease holder may do
// (after-processing on the mail server) checks it first.
func (s *Store) CheckFence(ctx context.Context) error {
	return s.Write(ctx, func(*sql.Tx) error { return nil })
}

// Lease is the lease of one configuration.
type Lease struct {
	IMAPID    int64
	Owner     string // "" when nobody holds it
	Token     int64
	ExpiresAt time.Time
	Status    string // the owner's last status of the mailbox (JSON)
}

// EnsureLeases creates the lease rows of the enabled configurations that
// have none (unowned).
func (s *Store) EnsureLeases(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO mailbox_leases (imap_id, expires_at)
		SELECT id, created_at FROM imap_configs WHERE enabled ON CONFLICT (imap_id) DO NOTHING`); err != nil {
		return fmt.Errorf("creating mailbox leases: %w", err)
	}
	return nil
}

// RenewLeases extends to until the leases owner holds with the tokens in
// held (configuration id → token), storing each one's status (JSON, may be
// missing), and returns those it still holds: a lease taken over meanwhile
// (another token or owner) is not renewed and is left out. PostgreSQL only.
func (s *Store) RenewLeases(ctx context.Context, owner string, held map[int64]int64, status map[int64]string, until time.Time) (map[int64]int64, error) {
	kept := map[int64]int64{}
	if len(held) == 0 {
		return kept, nil
	}
	ids, tokens, sts := make([]int64, 0, len(held)), make([]int64, 0, len(held)), make([]string, 0, len(held))
	for id, tok := range held {
		ids, tokens, sts = append(ids, id), append(tokens, tok), append(sts, status[id])
	}
	rows, err := s.w.QueryContext(ctx, `UPDATE mailbox_leases l SET expires_at = $1, status = v.status
		FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS v(id, token, status)
		WHERE l.imap_id = v.id AND l.token = v.token AND l.owner = $5
		RETURNING l.imap_id, l.token`, until, ids, tokens, sts, owner)
	kept, err = leaseTokens(rows, err)
	if err != nil {
		return nil, fmt.Errorf("renewing %d mailbox lease(s): %w", len(held), err)
	}
	return kept, nil
}

// leaseTokens collects the (imap_id, token) rows of a query into a map.
func leaseTokens(rows *sql.Rows, err error) (map[int64]int64, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var id, tok int64
		if err := rows.Scan(&id, &tok); err != nil {
			return nil, err
		}
		out[id] = tok
	}
	return out, rows.Err()
}

// ClaimLeases takes for owner, until until, up to n leases of enabled
// configurations that nobody holds or whose holder let them expire before
// now, bumping each one's token, and returns them (id → new token). Two
// replicas claiming at once get different leases. PostgreSQL only.
//
// A lease taken from another replica that has not heartbeated since the
// lease ran out (it stopped; a replica leaving gracefully releases its
// leases first) makes that replica lost: its condition replica:<id> turns
// lost and replica.lost is queued, once per replica, in this transaction.
func (s *Store) ClaimLeases(ctx context.Context, owner string, n int, now, until time.Time) (map[int64]int64, error) {
	out := map[int64]int64{}
	if n <= 0 {
		return out, nil
	}
	type taken struct {
		id        int64
		owner     string
		name      string
		expires   time.Time
		heartbeat *time.Time
		address   *string
	}
	err := s.Write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT m.imap_id, m.owner, c.name, m.expires_at, r.heartbeat_at, r.address
			FROM mailbox_leases m JOIN imap_configs c ON c.id = m.imap_id LEFT JOIN replicas r ON r.id = m.owner
			WHERE c.enabled AND (m.owner = '' OR m.expires_at < $1)
			ORDER BY m.owner <> '', m.imap_id LIMIT $2 FOR UPDATE OF m SKIP LOCKED`, now, n)
		var ts []taken
		var ids []int64
		err = scanRows(rows, err, func(rs *sql.Rows) error {
			var t taken
			err := rs.Scan(&t.id, &t.owner, &t.name, &t.expires, &t.heartbeat, &t.address)
			ts, ids = append(ts, t), append(ids, t.id)
			return err
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		out, err = leaseTokens(tx.QueryContext(ctx, `UPDATE mailbox_leases SET owner = $1, token = token + 1, expires_at = $2, status = ''
			WHERE imap_id = ANY($3::bigint[]) RETURNING imap_id, token`, owner, until, ids))
		if err != nil {
			return err
		}
		// The replicas lost, in the order their leases were taken.
		var lost []string
		moved := map[string][]string{}
		last := map[string]taken{}
		for _, t := range ts {
			if t.owner == "" || t.owner == owner || (t.heartbeat != nil && !t.heartbeat.Before(t.expires)) {
				continue
			}
			if _, ok := moved[t.owner]; !ok {
				lost = append(lost, t.owner)
			}
			moved[t.owner] = append(moved[t.owner], t.name)
			last[t.owner] = t
		}
		for _, r := range lost {
			t := last[r]
			d := struct {
				Host            string     `json:"host,omitempty"`
				LastHeartbeatAt *time.Time `json:"lastHeartbeatAt"`
				MailboxesMoved  []string   `json:"mailboxesMoved"`
				TakenBy         string     `json:"takenBy"`
			}{MailboxesMoved: moved[r], TakenBy: owner}
			var since time.Time
			if t.address != nil {
				d.Host = *t.address
			}
			if t.heartbeat != nil {
				hb := t.heartbeat.UTC()
				d.LastHeartbeatAt, since = &hb, hb
			}
			details, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if _, _, err := s.swapConditionTx(ctx, tx, "replica:"+r, "lost", "", now, func(prev string) (AlertEvent, bool) {
				return AlertEvent{Type: alertReplicaLost, ObjectKind: "replica", ObjectName: r, Previous: prev, Current: "lost",
					Since: since, OccurredAt: now, Details: details}, true
			}); err != nil {
				return fmt.Errorf("noting replica %s lost: %w", r, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming mailbox leases: %w", err)
	}
	return out, nil
}

// ReleaseLeases gives up the leases of ids that owner holds (all of them
// when ids is nil), so that another replica can take them at once.
func (s *Store) ReleaseLeases(ctx context.Context, owner string, ids []int64) error {
	var err error
	if ids == nil {
		_, err = s.w.ExecContext(ctx, `UPDATE mailbox_leases SET owner = '', status = '' WHERE owner = $1`, owner)
	} else if len(ids) > 0 {
		_, err = s.w.ExecContext(ctx, `UPDATE mailbox_leases SET owner = '', status = '' WHERE owner = $1 AND imap_id = ANY($2::bigint[])`, owner, ids)
	}
	if err != nil {
		return fmt.Errorf("releasing mailbox leases: %w", err)
	}
	return nil
}

// ReleaseDisabled gives up the leases owner holds of configurations that
// were disabled, returning their ids.
func (s *Store) ReleaseDisabled(ctx context.Context, owner string) ([]int64, error) {
	rows, err := s.w.QueryContext(ctx, `UPDATE mailbox_leases l SET owner = '', status = '' FROM imap_configs c
		WHERE c.id = l.imap_id AND NOT c.enabled AND l.owner = $1 RETURNING l.imap_id`, owner)
	if err != nil {
		return nil, fmt.Errorf("releasing the leases of disabled mailboxes: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("releasing the leases of disabled mailboxes: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Leases lists every lease.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT imap_id, owner, token, expires_at, status FROM mailbox_leases ORDER BY imap_id`)
	if err != nil {
		return nil, fmt.Errorf("listing mailbox leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.IMAPID, &l.Owner, &l.Token, &l.ExpiresAt, &l.Status); err != nil {
			return nil, fmt.Errorf("listing mailbox leases: %w", err)
		}
		l.ExpiresAt = l.ExpiresAt.UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

// CountEnabled counts the enabled configurations.
func (s *Store) CountEnabled(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM imap_configs WHERE enabled`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting enabled imap configurations: %w", err)
	}
	return n, nil
}

// ConfigVersion returns a value that changes whenever a configuration is
// created, changed or deleted (through any replica): the replicas poll it to
// follow changes made elsewhere within a second.
func (s *Store) ConfigVersion(ctx context.Context) (string, error) {
	var n int64
	var sum string
	q := `SELECT count(*), COALESCE(sum(floor(extract(epoch FROM updated_at) * 1000000)), 0)::text FROM imap_configs`
	if s.dialect != Postgres {
		q = `SELECT count(*), CAST(COALESCE(sum(julianday(updated_at) * 86400000000), 0) AS TEXT) FROM imap_configs`
	}
	if err := s.r.QueryRowContext(ctx, q).Scan(&n, &sum); err != nil {
		return "", fmt.Errorf("reading the configurations' version: %w", err)
	}
	return fmt.Sprintf("%d/%s", n, sum), nil
}

// ClusterView is what GET /api/v1/cluster and the settings page show.
type ClusterView struct {
	Self            string        `json:"self"`     // the replica answering
	Database        Dialect       `json:"database"` // sqlite: one replica; postgres: any number
	Leasing         bool          `json:"leasing"`  // mailboxes spread over the replicas by leases
	LeaseTTLSeconds float64       `json:"leaseTtlSeconds"`
	Replicas        []ReplicaView `json:"replicas"`
}

// ReplicaView is one replica in a ClusterView.
type ReplicaView struct {
	Replica
	Live bool `json:"live"` // its last heartbeat is within the lease time
	Self bool `json:"self"`
}
