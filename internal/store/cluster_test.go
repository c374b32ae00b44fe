package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// TestLeases: on PostgreSQL, replicas claiming at once get different
// leases; a takeover bumps the token; a renewal under an old token fails;
// a write fenced with a lost lease is refused and changes nothing, while the
// holder's write goes through; released leases are claimable at once.
func TestLeases(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	var ids []int64
	for i := range 10 {
		c := sampleIMAP(fmt.Sprintf("box%d", i))
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	if err := s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := s.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	until := now.Add(15 * time.Second)

	// Three replicas claim 4 each at once: 10 leases, no one twice.
	var mu sync.Mutex
	owner := map[int64]string{}
	var wg sync.WaitGroup
	for _, r := range []string{"a", "b", "c"} {
		wg.Go(func() {
			got, err := s.ClaimLeases(ctx, r, 4, now, until)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for id, tok := range got {
				if prev, ok := owner[id]; ok {
					t.Errorf("lease %d claimed by %s and %s", id, prev, r)
				}
				if tok != 1 {
					t.Errorf("lease %d: token %d after the first claim, want 1", id, tok)
				}
				owner[id] = r
			}
		})
	}
	wg.Wait()
	if len(owner) != 10 {
		t.Fatalf("%d leases claimed, want all 10: %v", len(owner), owner)
	}
	held := func(r string) map[int64]int64 {
		m := map[int64]int64{}
		for id, o := range owner {
			if o == r {
				m[id] = 1
			}
		}
		return m
	}
	// Nothing is free now.
	if got, err := s.ClaimLeases(ctx, "d", 10, now, until); err != nil || len(got) != 0 {
		t.Fatalf("claimed %v, %v while every lease is held", got, err)
	}

	// a's leases expire; d takes them over with token 2.
	aHeld := held("a")
	later := until.Add(time.Second)
	taken, err := s.ClaimLeases(ctx, "d", 10, later, later.Add(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Every lease has expired at "later": d takes the 10 it asked for.
	if len(taken) != 10 {
		t.Fatalf("d took %d leases, want 10", len(taken))
	}
	for id := range aHeld {
		if taken[id] != 2 {
			t.Errorf("lease %d: token %d after the takeover, want 2", id, taken[id])
		}
	}
	// a cannot renew; d can.
	if kept, err := s.RenewLeases(ctx, "a", aHeld, nil, later.Add(time.Minute)); err != nil || len(kept) != 0 {
		t.Errorf("a renewed %v, %v after losing its leases", kept, err)
	}
	if kept, err := s.RenewLeases(ctx, "d", taken, map[int64]string{ids[0]: `{"state":"idle"}`}, later.Add(time.Minute)); err != nil || len(kept) != 10 {
		t.Errorf("d renewed %d of 10, %v", len(kept), err)
	}

	// Fencing: a's write under its old token is refused and changes
	// nothing; d's goes through.
	var anyA int64
	for id := range aHeld {
		anyA = id
		break
	}
	old := store.WithFence(ctx, store.Fence{IMAPID: anyA, Owner: "a", Token: 1})
	err = s.SetCheckpoint(old, anyA, store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 99}, nil)
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write under a lost lease: %v, want ErrFenced", err)
	}
	if _, ok, _ := s.GetCheckpoint(ctx, anyA); ok {
		t.Error("a fenced write moved the checkpoint")
	}
	if err := s.CheckFence(old); !errors.Is(err, store.ErrFenced) {
		t.Errorf("CheckFence under a lost lease: %v", err)
	}
	// The statements sent together (held.go's pipelinedWrite) check the
	// fence too: a hand-back of runs that do not exist would otherwise
	// succeed.
	if err := s.ReleaseRuns(old, []store.Release{{RunID: 1 << 40, Next: later}, {RunID: 1<<40 + 1, Next: later}}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("ReleaseRuns under a lost lease: %v, want ErrFenced", err)
	}
	if _, err := s.ClaimRuns(old, later, 10, time.Minute); !errors.Is(err, store.ErrFenced) {
		t.Errorf("ClaimRuns under a lost lease: %v, want ErrFenced", err)
	}
	cur := store.WithFence(ctx, store.Fence{IMAPID: anyA, Owner: "d", Token: 2})
	if err := s.SetCheckpoint(cur, anyA, store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 99}, nil); err != nil {
		t.Fatalf("the holder's write: %v", err)
	}

	// The status d stored is there for the others to show.
	leases, err := s.Leases(ctx)
	if err != nil || len(leases) != 10 {
		t.Fatalf("leases: %d, %v", len(leases), err)
	}
	for _, l := range leases {
		if l.IMAPID == ids[0] && (l.Owner != "d" || l.Status != `{"state":"idle"}`) {
			t.Errorf("lease %d: %+v", l.IMAPID, l)
		}
	}

	// Released leases are free at once (not expired), and d's writes
	// under them are refused.
	if err := s.ReleaseLeases(ctx, "d", []int64{ids[0], ids[1]}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimLeases(ctx, "b", 5, later, later.Add(time.Minute))
	if err != nil || len(got) != 2 || got[ids[0]] != 3 {
		t.Errorf("after a release b claimed %v, %v", got, err)
	}
	if err := s.ReleaseLeases(ctx, "d", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFence(cur); !errors.Is(err, store.ErrFenced) {
		t.Errorf("CheckFence after release: %v", err)
	}

	// A deleted configuration takes its lease with it.
	if err := s.DeleteIMAP(ctx, "box9"); err != nil {
		t.Fatal(err)
	}
	if leases, _ := s.Leases(ctx); len(leases) != 9 {
		t.Errorf("%d leases after a delete, want 9", len(leases))
	}
}

// TestRegistry: heartbeats upsert, silent replicas are forgotten after the
// forget time, a replica leaving is removed; on both databases.
func TestRegistry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now, err := s.Clock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := store.Replica{ID: "r1", Address: "http://127.0.0.1:1", Version: "v", StartedAt: now}
		if err := s.Heartbeat(ctx, r, now.Add(-time.Hour), time.Minute); err != nil {
			t.Fatal(err)
		}
		r2 := store.Replica{ID: "r2", Address: "http://127.0.0.1:2", Version: "v", Mailboxes: 3, StartedAt: now}
		if err := s.Heartbeat(ctx, r2, now, time.Minute); err != nil { // forgets r1, silent for an hour
			t.Fatal(err)
		}
		reps, err := s.Replicas(ctx)
		if err != nil || len(reps) != 1 || reps[0].ID != "r2" || reps[0].Mailboxes != 3 || !reps[0].HeartbeatAt.Equal(now) {
			t.Fatalf("replicas %+v, %v", reps, err)
		}
		if err := s.RemoveReplica(ctx, "r2"); err != nil {
			t.Fatal(err)
		}
		if reps, _ := s.Replicas(ctx); len(reps) != 0 {
			t.Errorf("replicas after leaving: %+v", reps)
		}
		v1, err := s.ConfigVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := sampleIMAP("one")
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		v2, _ := s.ConfigVersion(ctx)
		// SQLite's julianday keeps about a millisecond: the change must
		// come later than that after the creation to show in the version.
		testwait.Until(t, time.Second, func() error {
			if time.Since(c.UpdatedAt) < 2*time.Millisecond {
				return fmt.Errorf("the clock is not 2 ms past the creation (%v) yet", c.UpdatedAt)
			}
			return nil
		})
		c.Description = "changed"
		if err := s.UpdateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		v3, _ := s.ConfigVersion(ctx)
		if v1 == v2 || v2 == v3 {
			t.Errorf("config version did not follow changes: %q %q %q", v1, v2, v3)
		}
	})
}

// TestReplicasMigrateTogether: replicas starting at once on a fresh
// PostgreSQL database all open it; the migration lock lets one apply the
// migrations while the others wait, and each ends ready.
func TestReplicasMigrateTogether(t *testing.T) {
	url := testenv.PostgresURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := store.Open(context.Background(), store.Options{DatabaseURL: url, Box: storetest.Box(t)})
			if err == nil {
				err = s.Ready(context.Background())
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// TestFenceHoldsOffTakeoverNotRenewal: while an ingest transaction holds
// its fence, another replica cannot take the lease (the claim skips it) but
// the owner renews it at once: before, every renewal waited for the ingest
// transactions, and two batches written at once could hold it off for as
// long as a backlog lasted.
func TestFenceHoldsOffTakeoverNotRenewal(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	next, hook := benchSetup(t, s, "fenced", 1)
	if err := s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := s.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := next()
	held, err := s.ClaimLeases(ctx, "a", 1, now, now.Add(time.Minute))
	if err != nil || held[b.IMAPID] != 1 {
		t.Fatalf("claim: %v, %v", held, err)
	}
	hold, release := make(chan struct{}), make(chan struct{})
	recorded := make(chan error, 1)
	go func() {
		fctx := store.WithFence(ctx, store.Fence{IMAPID: b.IMAPID, Owner: "a", Token: 1})
		_, _, err := s.RecordBatch(fctx, b, func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
			close(hold) // the fence is checked and held until the commit
			<-release
			return hook(ctx, tx, b, id, in)
		})
		recorded <- err
	}()
	<-hold
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kept, err := s.RenewLeases(rctx, "a", held, nil, now.Add(2*time.Minute))
	cancel()
	if err != nil || kept[b.IMAPID] != 1 {
		close(release)
		t.Fatalf("renewing while a batch is recorded: %v, %v; want it renewed at once", kept, err)
	}
	// As if the lease had run out: the claim must still not take it.
	taken, err := s.ClaimLeases(ctx, "b", 1, now.Add(time.Hour), now.Add(2*time.Hour))
	close(release)
	if err != nil || len(taken) != 0 {
		t.Fatalf("another replica's claim while a batch is recorded: %v, %v; want nothing taken", taken, err)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	taken, err = s.ClaimLeases(ctx, "b", 1, now.Add(time.Hour), now.Add(2*time.Hour))
	if err != nil || taken[b.IMAPID] != 2 {
		t.Fatalf("claim after the batch: %v, %v; want the lease with token 2", taken, err)
	}
}
