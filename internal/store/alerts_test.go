package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

const alertSecret = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1hbGVydHMtMTIzNDU2Nzg="

func sampleAlert(name string, events ...string) store.AlertSubscription {
	if len(events) == 0 {
		events = []string{"mailbox.auth_failed", "mailbox.recovered", "run.failed", "replica.lost"}
	}
	return store.AlertSubscription{Name: name, Description: "ops pager", Kind: store.AlertWebhook,
		URL: "https://hooks.example.com/" + name, Secret: alertSecret, Events: events, Enabled: true}
}

func mustCreateAlert(t *testing.T, s *store.Store, a store.AlertSubscription) store.AlertSubscription {
	t.Helper()
	got, err := s.CreateAlert(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// deliveries lists every delivery of subscription name, oldest first.
func deliveries(t *testing.T, s *store.Store, name string) []store.AlertDelivery {
	t.Helper()
	ds, err := s.ListAlertDeliveries(context.Background(), name, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ds)
	return ds
}

// TestAlertSubscriptions: create, read, list, update (rename, secret kept
// or replaced), conflicts and delete; the secret is sealed at rest.
func TestAlertSubscriptions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := mustCreateAlert(t, s, sampleAlert("Pager"))
		if a.ID == 0 || a.CreatedAt.IsZero() {
			t.Fatalf("created %+v", a)
		}
		mail := mustCreateAlert(t, s, store.AlertSubscription{Name: "mail", Kind: store.AlertEmail,
			To: []string{"ops@example.com", "cto@example.com"}, Events: []string{"run.failed"}})
		if _, err := s.CreateAlert(ctx, sampleAlert("PAGER")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("same name again: %v, want ErrConflict", err)
		}
		got, err := s.GetAlert(ctx, "pager")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Pager" || got.Secret != alertSecret || got.URL != a.URL || !slices.Equal(got.Events, a.Events) ||
			!got.Enabled || got.Description != "ops pager" || !got.CreatedAt.Equal(a.CreatedAt) {
			t.Errorf("got %+v,\nwant %+v", got, a)
		}
		if m, err := s.GetAlert(ctx, "mail"); err != nil || !slices.Equal(m.To, mail.To) || m.Secret != "" || m.Enabled {
			t.Errorf("got %+v, %v", m, err)
		}
		if _, err := s.GetAlert(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing: %v", err)
		}

		// Sealed at rest: the raw column holds no plaintext.
		var raw []byte
		if err := store.DB(s).QueryRowContext(ctx, `SELECT secret_sealed FROM alert_subscriptions WHERE id = $1`, a.ID).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if len(raw) == 0 || bytes.Contains(raw, []byte(alertSecret)) || bytes.Contains(raw, []byte("c2VjcmV0LXNpZ25pbmc")) {
			t.Errorf("secret column %q: want sealed", raw)
		}

		list, err := s.ListAlerts(ctx, "", 10)
		if err != nil || len(list) != 2 || list[0].Name != "mail" || list[1].Name != "Pager" {
			t.Fatalf("list: %+v, %v", list, err)
		}
		if list, err := s.ListAlerts(ctx, "mail", 10); err != nil || len(list) != 1 || list[0].Name != "Pager" {
			t.Fatalf("list after mail: %+v, %v", list, err)
		}

		// Rename with the secret kept.
		up := got
		up.Name, up.Secret, up.Enabled, up.Events = "pager2", "", false, []string{"run.failed"}
		u, err := s.UpdateAlert(ctx, "PAGER", up)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "pager2" || u.Secret != alertSecret || u.Enabled || !slices.Equal(u.Events, up.Events) || u.ID != a.ID {
			t.Errorf("updated %+v", u)
		}
		// A new secret.
		up.Secret = "whsec_bmV3"
		if u, err := s.UpdateAlert(ctx, "pager2", up); err != nil || u.Secret != "whsec_bmV3" {
			t.Errorf("rotated: %+v, %v", u, err)
		}
		if _, err := s.UpdateAlert(ctx, "pager2", sampleAlert("mail")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("rename onto another: %v", err)
		}
		if _, err := s.UpdateAlert(ctx, "gone", up); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update missing: %v", err)
		}

		// Delete takes the deliveries with it.
		if _, err := s.QueueAlertTest(ctx, "pager2", store.AlertEvent{Type: "alert.test", ObjectKind: "alert", ObjectName: "pager2", Test: true}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAlert(ctx, "Pager2"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAlert(ctx, "pager2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delete twice: %v", err)
		}
		var n int
		if err := store.DB(s).QueryRowContext(ctx, `SELECT count(*) FROM alert_deliveries`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d deliveries left, %v", n, err)
		}
		if err := store.DB(s).QueryRowContext(ctx, `SELECT count(*) FROM alert_events`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d events left, %v", n, err)
		}
	})
}

func authFailed(name string) func(prev string) (store.AlertEvent, bool) {
	return func(prev string) (store.AlertEvent, bool) {
		return store.AlertEvent{Type: "mailbox.auth_failed", ObjectKind: "mailbox", ObjectName: name, Previous: prev,
			Current: "auth_failed", Error: "authentication failed"}, true
	}
}

// TestSwapAlertCondition: a change queues the event to every enabled
// subscription that wants it, and only a change does; conditions are
// listed by prefix and forgotten without an event.
func TestSwapAlertCondition(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustCreateAlert(t, s, sampleAlert("wants"))
		mustCreateAlert(t, s, sampleAlert("other", "run.failed"))
		off := sampleAlert("off")
		off.Enabled = false
		mustCreateAlert(t, s, off)

		prev, queued, err := s.SwapAlertCondition(ctx, "mailbox:1", "auth_failed", "authentication failed", authFailed("inbox"))
		if err != nil || prev != "ok" || !queued {
			t.Fatalf("first swap: %q, %v, %v", prev, queued, err)
		}
		prev, queued, err = s.SwapAlertCondition(ctx, "mailbox:1", "auth_failed", "authentication failed again", authFailed("inbox"))
		if err != nil || prev != "auth_failed" || queued {
			t.Fatalf("same condition: %q, %v, %v", prev, queued, err)
		}
		ds := deliveries(t, s, "wants")
		if len(ds) != 1 {
			t.Fatalf("got %d deliveries, want 1", len(ds))
		}
		d := ds[0]
		if d.Event.Type != "mailbox.auth_failed" || d.Event.ObjectName != "inbox" || d.Event.Previous != "ok" ||
			d.Status != store.RunPending || d.Subscription != "wants" || d.Event.OccurredAt.IsZero() ||
			len(d.PublicID) < 10 || d.PublicID[:5] != "alrt_" || d.Event.ID[:4] != "evt_" {
			t.Errorf("delivery %+v", d)
		}
		if n := len(deliveries(t, s, "other")) + len(deliveries(t, s, "off")); n != 0 {
			t.Errorf("%d deliveries to subscriptions that do not want it or are disabled", n)
		}

		// An event func that says no: the condition changes, nothing queued.
		prev, queued, err = s.SwapAlertCondition(ctx, "mailbox:1", "failing", "", func(string) (store.AlertEvent, bool) { return store.AlertEvent{}, false })
		if err != nil || prev != "auth_failed" || queued {
			t.Fatalf("silent swap: %q, %v, %v", prev, queued, err)
		}
		if _, _, err := s.SwapAlertCondition(ctx, "mailbox:2", "failing", "timeout", nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SwapAlertCondition(ctx, "runs:backlog", "backlog", "", nil); err != nil {
			t.Fatal(err)
		}
		cs, err := s.AlertConditions(ctx, "mailbox:")
		if err != nil || len(cs) != 2 || cs[0].Key != "mailbox:1" || cs[0].Condition != "failing" || cs[1].Error != "timeout" || cs[1].Since.IsZero() {
			t.Fatalf("conditions: %+v, %v", cs, err)
		}
		// Back to ok: listed no more.
		prev, queued, err = s.SwapAlertCondition(ctx, "mailbox:1", "ok", "", func(prev string) (store.AlertEvent, bool) {
			return store.AlertEvent{Type: "mailbox.recovered", ObjectKind: "mailbox", ObjectName: "inbox", Previous: prev, Current: "ok"}, true
		})
		if err != nil || prev != "failing" || !queued {
			t.Fatalf("recovery: %q, %v, %v", prev, queued, err)
		}
		if ds := deliveries(t, s, "wants"); len(ds) != 2 || ds[1].Event.Type != "mailbox.recovered" || ds[1].Event.Previous != "failing" {
			t.Errorf("deliveries after recovery: %+v", ds)
		}
		if err := s.ForgetAlertCondition(ctx, "mailbox:2"); err != nil {
			t.Fatal(err)
		}
		if cs, err := s.AlertConditions(ctx, "mailbox:"); err != nil || len(cs) != 0 {
			t.Errorf("conditions after recovery and forget: %+v, %v", cs, err)
		}
		// ok with no row: nothing recorded, nothing queued.
		if prev, queued, err := s.SwapAlertCondition(ctx, "mailbox:3", "ok", "", authFailed("x")); err != nil || prev != "ok" || queued {
			t.Errorf("ok on no row: %q, %v, %v", prev, queued, err)
		}
		if cs, err := s.AlertConditions(ctx, ""); err != nil || len(cs) != 1 || cs[0].Key != "runs:backlog" {
			t.Errorf("all conditions: %+v, %v", cs, err)
		}
	})
}

// TestAlertErrorBounded: a huge error text (a Graph error body) is kept
// cut to a bounded size, on a character boundary, in the condition and
// in the event every delivery carries.
func TestAlertErrorBounded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustCreateAlert(t, s, sampleAlert("wants"))
		huge := strings.Repeat("é", 40000) // 80 KB
		if _, _, err := s.SwapAlertCondition(ctx, "mailbox:1", "auth_failed", huge, func(prev string) (store.AlertEvent, bool) {
			ev, ok := authFailed("inbox")(prev)
			ev.Error = huge
			return ev, ok
		}); err != nil {
			t.Fatal(err)
		}
		ds := deliveries(t, s, "wants")
		if len(ds) != 1 {
			t.Fatalf("got %d deliveries, want 1", len(ds))
		}
		cs, err := s.AlertConditions(ctx, "mailbox:")
		if err != nil || len(cs) != 1 {
			t.Fatalf("conditions: %+v, %v", cs, err)
		}
		for what, got := range map[string]string{"event": ds[0].Event.Error, "condition": cs[0].Error} {
			if len(got) > 2100 || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) || !strings.HasPrefix(got, "éé") {
				t.Errorf("%s error: %d bytes, valid %v, ends %q", what, len(got), utf8.ValidString(got), got[max(0, len(got)-8):])
			}
		}
	})
}

// TestSwapAlertConditionRace: stores sharing one database (replicas) swap
// the same condition at once, many times: one event.
func TestSwapAlertConditionRace(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
			if d == store.Postgres {
				o.DatabaseURL = testenv.PostgresURL(t)
			}
			var stores []*store.Store
			for range 2 {
				s, err := store.Open(ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			mustCreateAlert(t, stores[0], sampleAlert("wants"))
			var wg sync.WaitGroup
			var mu sync.Mutex
			queued := 0
			for i := range 16 {
				wg.Go(func() {
					_, q, err := stores[i%2].SwapAlertCondition(ctx, "mailbox:7", "auth_failed", "", authFailed("inbox"))
					if err != nil {
						t.Error(err)
					}
					if q {
						mu.Lock()
						queued++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if ds := deliveries(t, stores[1], "wants"); queued != 1 || len(ds) != 1 {
				t.Errorf("queued %d times, %d deliveries; want 1", queued, len(ds))
			}
		})
	}
}

// failRun records a message and a run for it, claims the run and returns it.
func claimedRun(t *testing.T, s *store.Store, uid uint32) store.Run {
	t.Helper()
	ctx := context.Background()
	b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid},
		Messages: []store.Incoming{incoming(uid, msg(int(uid), ""))}}
	var r store.Run
	_, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
		r = store.Run{FlowID: 1, FlowName: "invoices", MessageID: id, IMAPName: "inbox"}
		_, err := tx.CreateRun(ctx, &r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute); err != nil || len(c) != 1 {
		t.Fatalf("claimed %v, %v", c, err)
	}
	return r
}

// TestRunFailedAlert: a run moving to failed queues run.failed with its
// failure, in the same transaction, once; retries and deliveries queue
// nothing.
func TestRunFailedAlert(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustCreateAlert(t, s, sampleAlert("wants", "run.failed"))
		mustCreateAlert(t, s, sampleAlert("not", "mailbox.auth_failed"))
		r := claimedRun(t, s, 1)
		fail := store.Attempt{StartedAt: time.Now(), StatusCode: 400, Error: "HTTP 400 Bad Request"}
		if err := s.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: time.Now(), StatusCode: 503, Error: "HTTP 503"}, store.RunRetrying, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := len(deliveries(t, s, "wants")); n != 0 {
			t.Fatalf("%d deliveries after a retry", n)
		}
		if _, err := s.ClaimRuns(ctx, time.Now().Add(time.Second), 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishAttempts(ctx, []store.Finish{{RunID: r.ID, Attempt: fail, Status: store.RunFailed, Next: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		// A worker whose lease ran out records the same outcome again.
		if err := s.FinishAttempt(ctx, r.ID, fail, store.RunFailed, time.Now()); err != nil {
			t.Fatal(err)
		}
		ds := deliveries(t, s, "wants")
		if len(ds) != 1 {
			t.Fatalf("got %d deliveries, want 1", len(ds))
		}
		ev := ds[0].Event
		if ev.Type != "run.failed" || ev.ObjectKind != "run" || ev.ObjectName != r.PublicID || ev.Current != "failed" || ev.Error != fail.Error {
			t.Errorf("event %+v", ev)
		}
		var det struct {
			Flow       string `json:"flow"`
			IMAP       string `json:"imap"`
			MessageID  int64  `json:"messageId"`
			Attempts   int    `json:"attempts"`
			StatusCode int    `json:"statusCode"`
			LastError  string `json:"lastError"`
		}
		if err := json.Unmarshal(ev.Details, &det); err != nil {
			t.Fatalf("details %s: %v", ev.Details, err)
		}
		if det.Flow != "invoices" || det.IMAP != "inbox" || det.MessageID != r.MessageID || det.Attempts != 2 || det.StatusCode != 400 || det.LastError != fail.Error {
			t.Errorf("details %+v", det)
		}
		if n := len(deliveries(t, s, "not")); n != 0 {
			t.Errorf("%d deliveries to a subscription that does not want run.failed", n)
		}
		// Retried by hand and failed again: a new transition, a new alert.
		if _, err := s.RetryRun(ctx, r.PublicID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimRuns(ctx, time.Now().Add(2*time.Second), 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishAttempt(ctx, r.ID, fail, store.RunFailed, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := len(deliveries(t, s, "wants")); n != 2 {
			t.Errorf("%d deliveries after failing again, want 2", n)
		}
		// Delivered: nothing.
		r2 := claimedRun(t, s, 2)
		if err := s.FinishAttempt(ctx, r2.ID, store.Attempt{StartedAt: time.Now(), StatusCode: 200}, store.RunDelivered, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := len(deliveries(t, s, "wants")); n != 2 {
			t.Errorf("%d deliveries after a delivered run, want 2", n)
		}
	})
}

// TestRunFailedWithoutSubscriptions: no subscription wants run.failed: the
// run fails as before and no event is kept.
func TestRunFailedWithoutSubscriptions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		r := claimedRun(t, s, 1)
		if err := s.FinishAttempt(ctx, r.ID, store.Attempt{StartedAt: time.Now(), StatusCode: 400, Error: "HTTP 400"}, store.RunFailed, time.Now()); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.GetRun(ctx, r.PublicID)
		if err != nil || got.Status != store.RunFailed {
			t.Fatalf("run %+v, %v", got, err)
		}
		var n int
		if err := store.DB(s).QueryRowContext(ctx, `SELECT count(*) FROM alert_events`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d events, %v", n, err)
		}
	})
}

// TestReplicaLostAlert: leases taken from a replica that stopped
// heartbeating queue replica.lost once, with the mailboxes moved; leases
// released by a replica leaving, or expired while their replica still
// heartbeats, queue nothing; a replica that heartbeats again can be lost
// again.
func TestReplicaLostAlert(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	mustCreateAlert(t, s, sampleAlert("wants", "replica.lost"))
	var names []string
	for i := range 4 {
		c := sampleIMAP(fmt.Sprintf("box%d", i))
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		names = append(names, c.Name)
	}
	if err := s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := s.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 15 * time.Second
	beat := func(id string, at time.Time) {
		t.Helper()
		if err := s.Heartbeat(ctx, store.Replica{ID: id, Address: id + ".example:8080", StartedAt: now}, at, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	beat("a", now)
	beat("b", now)
	if got, err := s.ClaimLeases(ctx, "a", 2, now, now.Add(ttl)); err != nil || len(got) != 2 {
		t.Fatalf("a claimed %v, %v", got, err)
	}
	if got, err := s.ClaimLeases(ctx, "b", 2, now, now.Add(ttl)); err != nil || len(got) != 2 {
		t.Fatalf("b claimed %v, %v", got, err)
	}
	// b leaves gracefully; a stops (no heartbeat, no release).
	if err := s.ReleaseLeases(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveReplica(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	later := now.Add(ttl + time.Second)
	beat("c", later)
	// c takes b's two first (free), then a's, in two claims.
	if got, err := s.ClaimLeases(ctx, "c", 2, later, later.Add(ttl)); err != nil || len(got) != 2 {
		t.Fatalf("c claimed %v, %v", got, err)
	}
	if n := len(deliveries(t, s, "wants")); n != 0 {
		t.Fatalf("%d deliveries after taking released leases", n)
	}
	if got, err := s.ClaimLeases(ctx, "c", 1, later, later.Add(ttl)); err != nil || len(got) != 1 {
		t.Fatalf("c claimed %v, %v", got, err)
	}
	if got, err := s.ClaimLeases(ctx, "c", 1, later, later.Add(ttl)); err != nil || len(got) != 1 {
		t.Fatalf("c claimed %v, %v", got, err)
	}
	ds := deliveries(t, s, "wants")
	if len(ds) != 1 {
		t.Fatalf("got %d deliveries, want 1 (replica a lost, once)", len(ds))
	}
	ev := ds[0].Event
	var det struct {
		Host            string    `json:"host"`
		LastHeartbeatAt time.Time `json:"lastHeartbeatAt"`
		MailboxesMoved  []string  `json:"mailboxesMoved"`
		TakenBy         string    `json:"takenBy"`
	}
	if err := json.Unmarshal(ev.Details, &det); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "replica.lost" || ev.ObjectName != "a" || ev.Current != "lost" || det.TakenBy != "c" ||
		det.Host != "a.example:8080" || !det.LastHeartbeatAt.Equal(now) || len(det.MailboxesMoved) != 1 ||
		!slices.Contains(names, det.MailboxesMoved[0]) {
		t.Errorf("event %+v, details %+v", ev, det)
	}
	if cs, err := s.AlertConditions(ctx, "replica:"); err != nil || len(cs) != 1 || cs[0].Key != "replica:a" || cs[0].Condition != "lost" {
		t.Errorf("conditions %+v, %v", cs, err)
	}

	// c's leases expire while c still heartbeats: not lost.
	later2 := later.Add(ttl + time.Second)
	beat("c", later2)
	beat("d", later2)
	if got, err := s.ClaimLeases(ctx, "d", 4, later2, later2.Add(ttl)); err != nil || len(got) != 4 {
		t.Fatalf("d claimed %v, %v", got, err)
	}
	if n := len(deliveries(t, s, "wants")); n != 1 {
		t.Errorf("%d deliveries after taking the leases of a live replica, want 1", n)
	}
	// a comes back (heartbeats), takes a lease, and stops again: lost again.
	later3 := later2.Add(ttl + time.Second)
	beat("a", later3)
	beat("d", later3)
	if cs, err := s.AlertConditions(ctx, "replica:"); err != nil || len(cs) != 0 {
		t.Errorf("conditions after a's heartbeat: %+v, %v", cs, err)
	}
	if got, err := s.ClaimLeases(ctx, "a", 1, later3, later3.Add(ttl)); err != nil || len(got) != 1 {
		t.Fatalf("a claimed %v, %v", got, err)
	}
	later4 := later3.Add(ttl + time.Second)
	beat("d", later4)
	if _, err := s.ClaimLeases(ctx, "d", 4, later4, later4.Add(ttl)); err != nil {
		t.Fatal(err)
	}
	if ds := deliveries(t, s, "wants"); len(ds) != 2 || ds[1].Event.ObjectName != "a" {
		t.Errorf("deliveries after a was lost again: %+v", ds)
	}
}

// TestAlertQueue: claims lease due deliveries, the outcome is recorded
// with its attempts, a delivery released for the rate limit comes back
// later, a lease that ran out is claimed again, a test alert reaches a
// disabled subscription.
func TestAlertQueue(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		off := sampleAlert("off")
		off.Enabled = false
		mustCreateAlert(t, s, off)
		mustCreateAlert(t, s, sampleAlert("on", "runs.backlog"))
		if _, ok, err := s.NextAlertDue(ctx); err != nil || ok {
			t.Fatalf("next due on an empty queue: %v, %v", ok, err)
		}
		test, err := s.QueueAlertTest(ctx, "OFF", store.AlertEvent{Type: "alert.test", ObjectKind: "alert", ObjectName: "off", Test: true})
		if err != nil || test.Subscription != "off" || test.PublicID == "" || test.Status != store.RunPending {
			t.Fatalf("test alert %+v, %v", test, err)
		}
		if _, err := s.QueueAlertTest(ctx, "nope", store.AlertEvent{Type: "alert.test"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("test alert to a missing subscription: %v", err)
		}
		since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		n, err := s.QueueAlert(ctx, store.AlertEvent{Type: "runs.backlog", ObjectKind: "runs", Previous: "ok", Current: "backlog",
			Since: since, Details: json.RawMessage(`{"waiting":150}`)})
		if err != nil || n != 1 {
			t.Fatalf("queued %d, %v", n, err)
		}
		if n, err := s.QueueAlert(ctx, store.AlertEvent{Type: "mailbox.failing"}); err != nil || n != 0 {
			t.Errorf("queued %d, %v of an event nobody wants", n, err)
		}
		due, ok, err := s.NextAlertDue(ctx)
		if err != nil || !ok || time.Since(due) > time.Minute {
			t.Fatalf("next due %v, %v, %v", due, ok, err)
		}

		t0 := time.Now()
		claimed, err := s.ClaimAlertDeliveries(ctx, t0, 10, time.Minute)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claimed %d, %v", len(claimed), err)
		}
		if again, err := s.ClaimAlertDeliveries(ctx, t0, 10, time.Minute); err != nil || len(again) != 0 {
			t.Fatalf("claimed again %d, %v", len(again), err)
		}
		var backlog store.AlertDelivery
		for _, d := range claimed {
			if d.Status != store.RunDelivering {
				t.Errorf("claimed %+v", d)
			}
			if d.Event.Type == "runs.backlog" {
				backlog = d
			}
		}
		if backlog.Subscription != "on" || !backlog.Event.Since.Equal(since) || string(backlog.Event.Details) != `{"waiting":150}` {
			t.Errorf("backlog delivery %+v", backlog)
		}

		// The test alert: a 500, then delivered.
		if err := s.FinishAlertAttempt(ctx, test.ID, store.Attempt{StartedAt: t0, Duration: 12 * time.Millisecond, StatusCode: 500,
			Error: "HTTP 500", Response: "oops"}, store.RunRetrying, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		// The backlog alert: released (rate limit) to t0+2s.
		if err := s.ReleaseAlertDelivery(ctx, backlog.ID, t0.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if c, err := s.ClaimAlertDeliveries(ctx, t0.Add(500*time.Millisecond), 10, time.Minute); err != nil || len(c) != 0 {
			t.Fatalf("claimed %d, %v before anything is due", len(c), err)
		}
		c, err := s.ClaimAlertDeliveries(ctx, t0.Add(1500*time.Millisecond), 10, time.Minute)
		if err != nil || len(c) != 1 || c[0].ID != test.ID || c[0].Attempts != 1 {
			t.Fatalf("claimed %+v, %v; want the test alert", c, err)
		}
		if err := s.FinishAlertAttempt(ctx, test.ID, store.Attempt{StartedAt: t0, StatusCode: 204}, store.RunDelivered, t0); err != nil {
			t.Fatal(err)
		}
		d, attempts, err := s.GetAlertDelivery(ctx, test.PublicID)
		if err != nil || d.Status != store.RunDelivered || d.DeliveredAt == nil || d.Attempts != 2 || len(attempts) != 2 ||
			attempts[0].StatusCode != 500 || attempts[0].Response != "oops" || attempts[0].Duration != 12*time.Millisecond || attempts[1].N != 2 {
			t.Errorf("delivery %+v, attempts %+v, %v", d, attempts, err)
		}
		if _, _, err := s.GetAlertDelivery(ctx, "alrt_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing delivery: %v", err)
		}

		// The backlog alert's claimer dies: claimed again once its lease ends.
		if c, err := s.ClaimAlertDeliveries(ctx, t0.Add(3*time.Second), 10, time.Minute); err != nil || len(c) != 1 || c[0].ID != backlog.ID {
			t.Fatalf("claimed %+v, %v", c, err)
		}
		if c, err := s.ClaimAlertDeliveries(ctx, t0.Add(30*time.Second), 10, time.Minute); err != nil || len(c) != 0 {
			t.Fatalf("claimed %d during the lease, %v", len(c), err)
		}
		c, err = s.ClaimAlertDeliveries(ctx, t0.Add(2*time.Minute), 10, time.Minute)
		if err != nil || len(c) != 1 || c[0].ID != backlog.ID || c[0].Attempts != 0 {
			t.Fatalf("claimed %+v, %v after the lease ended", c, err)
		}
		if err := s.FinishAlertAttempt(ctx, backlog.ID, store.Attempt{StartedAt: t0, Error: "dial tcp: connection refused"}, store.RunFailed, t0); err != nil {
			t.Fatal(err)
		}
		if d, _, err := s.GetAlertDelivery(ctx, backlog.PublicID); err != nil || d.Status != store.RunFailed || d.LastError != "dial tcp: connection refused" {
			t.Errorf("failed delivery %+v, %v", d, err)
		}

		// Listing, newest first, paged.
		for range 3 {
			if _, err := s.QueueAlertTest(ctx, "on", store.AlertEvent{Type: "alert.test", Test: true}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := s.ListAlertDeliveries(ctx, "ON", 0, 2)
		if err != nil || len(page) != 2 || page[0].ID < page[1].ID {
			t.Fatalf("page %+v, %v", page, err)
		}
		rest, err := s.ListAlertDeliveries(ctx, "on", page[1].ID, 10)
		if err != nil || len(rest) != 2 || rest[1].ID != backlog.ID {
			t.Fatalf("rest %+v, %v", rest, err)
		}
		if _, err := s.ListAlertDeliveries(ctx, "nope", 0, 10); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deliveries of a missing subscription: %v", err)
		}
	})
}

// TestPruneAlerts: finished deliveries older than the cutoff go, with their
// attempts and events; waiting ones stay.
func TestPruneAlerts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustCreateAlert(t, s, sampleAlert("wants", "runs.backlog"))
		for range 2 {
			if _, err := s.QueueAlert(ctx, store.AlertEvent{Type: "runs.backlog", ObjectKind: "runs"}); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.ClaimAlertDeliveries(ctx, time.Now(), 1, time.Minute)
		if err != nil || len(c) != 1 {
			t.Fatalf("claimed %d, %v", len(c), err)
		}
		if err := s.FinishAlertAttempt(ctx, c[0].ID, store.Attempt{StartedAt: time.Now(), StatusCode: 204}, store.RunDelivered, time.Now()); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Prune(ctx, time.Now().Add(-time.Hour)); err != nil || p.Alerts != 0 {
			t.Fatalf("pruned %+v, %v; want nothing recent", p, err)
		}
		if p, err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil || p.Alerts != 1 {
			t.Fatalf("pruned %+v, %v; want the delivered one", p, err)
		}
		ds := deliveries(t, s, "wants")
		if len(ds) != 1 || ds[0].Status != store.RunPending {
			t.Errorf("left %+v", ds)
		}
		for table, want := range map[string]int{"alert_events": 1, "alert_attempts": 0} {
			var n int
			if err := store.DB(s).QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != want {
				t.Errorf("%s: %d rows, %v; want %d", table, n, err, want)
			}
		}
	})
}

// TestAlertSecretWrongKey: with another key, the subscription still reads
// (without its secret, saying why); the sender's read fails with ErrOpen.
func TestAlertSecretWrongKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, store.Options{DataDir: dir, Box: storetest.Box(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := mustCreateAlert(t, s, sampleAlert("pager"))
	s.Close()
	other, err := secret.NewBox(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(ctx, store.Options{DataDir: dir, Box: other})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetAlert(ctx, "pager")
	if err != nil || got.Secret != "" || got.SecretError == "" || got.URL != a.URL {
		t.Errorf("got %+v, %v", got, err)
	}
	if list, err := s.ListAlerts(ctx, "", 10); err != nil || len(list) != 1 {
		t.Errorf("list %+v, %v", list, err)
	}
	if _, err := s.GetAlertByID(ctx, a.ID); !errors.Is(err, secret.ErrOpen) {
		t.Errorf("GetAlertByID: %v, want ErrOpen", err)
	}
}
