package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// A replica that froze inside a transaction (stopped, its VM paused) keeps
// its session, and with it the lock its ingest's fence holds on its
// mailbox's lease row: the others' takeover skips locked rows, so the
// mailbox was read by nobody until the replica woke up. The server now ends
// such a session after IdleInTransaction, and the lease is taken over.
func TestFrozenTransactionReleasesItsLease(t *testing.T) {
	ctx := context.Background()
	s, c := idleLimited(t, 500*time.Millisecond)
	if err := s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if got, err := s.ClaimLeases(ctx, "frozen", 1, now, now.Add(time.Second)); err != nil || len(got) != 1 {
		t.Fatalf("the first replica claims %v, %v; want the mailbox", got, err)
	}
	// The frozen replica's ingest: its fence locks the lease row, and it
	// sends nothing more.
	tx, err := store.DB(s).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var owner string
	var token int64
	if err := tx.QueryRowContext(ctx, `SELECT owner, token FROM mailbox_leases WHERE imap_id = $1 FOR KEY SHARE`, c.ID).Scan(&owner, &token); err != nil {
		t.Fatal(err)
	}
	// Another replica, once the lease ran out, takes the mailbox within a
	// few of its rounds.
	var took map[int64]int64
	deadline := time.Now().Add(10 * time.Second)
	for len(took) == 0 && time.Now().Before(deadline) {
		later := time.Now().Add(2 * time.Second)
		if took, err = s.ClaimLeases(ctx, "other", 1, later, later.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if len(took) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(took) == 0 {
		t.Fatalf("the mailbox of a replica frozen in a transaction was not taken over within 10 s")
	}
	t.Logf("taken over from the frozen transaction after %v", time.Since(deadline.Add(-10*time.Second)).Round(10*time.Millisecond))
	if err := tx.Commit(); err == nil {
		t.Errorf("the frozen replica's transaction committed after its session should have been ended")
	}
}

// A database URL that does not parse is not repeated in the error: it may
// hold a password.
func TestBadDatabaseURLNotRepeated(t *testing.T) {
	_, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir(), Box: storetest.Box(t),
		DatabaseURL: "postgres://mt:S3cr3t-pw@db.internal:notaport/mt"})
	if err == nil {
		t.Fatal("opened a database with a URL that does not parse")
	}
	if strings.Contains(err.Error(), "S3cr3t") {
		t.Errorf("the error repeats the password: %v", err)
	}
	t.Log(err)
}

// A sign-in's renewal holds its grant's row in a transaction while the
// provider answers: a provider slower than the idle limit of the store's
// sessions must not have the transaction ended under it, or a rotated
// refresh token would be lost.
func TestSlowRenewalOutlastsTheIdleLimit(t *testing.T) {
	ctx := context.Background()
	s, c := idleLimited(t, 200*time.Millisecond)
	if err := s.SaveOAuthGrant(ctx, store.OAuthGrant{IMAPID: c.ID, Account: "a@example.com", RefreshToken: "RT-1"}); err != nil {
		t.Fatal(err)
	}
	g, err := s.RenewOAuthGrant(ctx, c.ID, func(g store.OAuthGrant) (store.OAuthGrant, error) {
		time.Sleep(time.Second) // the provider, slow
		g.RefreshToken, g.AccessToken, g.AccessExpiry = "RT-2", "AT-2", time.Now().Add(time.Hour)
		return g, nil
	})
	if err != nil {
		t.Fatalf("renewing with a provider slower than the idle limit: %v", err)
	}
	stored, err := s.GetOAuthGrant(ctx, c.ID)
	if err != nil || stored.RefreshToken != "RT-2" || g.RefreshToken != "RT-2" {
		t.Errorf("stored refresh token %q (%v), returned %q; want the rotated RT-2", stored.RefreshToken, err, g.RefreshToken)
	}
}

// An ingest batch written while the one before it commits waits for that
// commit in its transaction (Batch.Await): a wait longer than the idle limit
// of the store's sessions must not end the batch's session.
func TestBatchAwaitOutlastsTheIdleLimit(t *testing.T) {
	ctx := context.Background()
	s, c := idleLimited(t, 200*time.Millisecond)
	b := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 1},
		Messages: []store.Incoming{incoming(1, msg(1, ""))},
		Await:    func() error { time.Sleep(time.Second); return nil }}
	rec, _, err := s.RecordBatch(ctx, b, nil)
	if err != nil || len(rec) != 1 {
		t.Fatalf("recording a batch that waited 1 s for the one before it: %v recorded, %v", len(rec), err)
	}
}

// idleLimited opens a PostgreSQL store whose sessions may sit idle in a
// transaction for idle, with one mailbox configuration.
func idleLimited(t *testing.T, idle time.Duration) (*store.Store, imapconf.Config) {
	t.Helper()
	o := storetest.Options(t, store.Postgres)
	o.IdleInTransaction = idle
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := sampleIMAP("box")
	if err := s.CreateIMAP(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	return s, c
}
