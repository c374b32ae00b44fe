package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// runHook creates one run of flow 1 per recorded message, and records a
// verdict twice (the second replacing the first).
func runHook(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
	if err := tx.RecordMatch(ctx, id, store.Match{FlowID: 1, FlowName: "f", Matched: false, Reason: "first"}); err != nil {
		return err
	}
	if err := tx.RecordMatch(ctx, id, store.Match{FlowID: 1, FlowName: "f", Matched: true}); err != nil {
		return err
	}
	created, err := tx.CreateRun(ctx, &store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: b.IMAPName, ReceivedAt: in.Seen})
	if err == nil && !created {
		err = fmt.Errorf("run of message %d not created", id)
	}
	return err
}

// subjects returns the subjects of the recorded messages, in order.
func subjects(t *testing.T, s *store.Store, rec []store.Recorded) []string {
	t.Helper()
	var out []string
	for _, r := range rec {
		m, err := s.GetMessage(context.Background(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Subject)
	}
	return out
}

func uids(rec []store.Recorded) []uint32 {
	var out []uint32
	for _, r := range rec {
		out = append(out, r.UID)
	}
	return out
}

// TestRecordBatchDuplicatesWithin: a UID or an id twice in one batch is
// recorded once, the first time; a message with an id whose dedupe key was
// recorded earlier in the batch under another epoch is not recorded, and
// its id is remembered as that message's.
func TestRecordBatchDuplicatesWithin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 5, Action: "seen", Messages: []store.Incoming{
			incoming(1, msg(1, "")), incoming(2, msg(2, "")), incoming(1, msg(3, "")), incoming(3, msg(4, "same@x"))}}
		rec, skipped, err := s.RecordBatch(ctx, b, runHook)
		if err != nil || skipped != 1 || !slices.Equal(uids(rec), []uint32{1, 2, 3}) {
			t.Fatalf("got %v, %d skipped, %v; want uids 1, 2, 3 and 1 skipped", rec, skipped, err)
		}
		if got := subjects(t, s, rec); !slices.Equal(got, []string{"Invoice 1", "Invoice 2", "Invoice 4"}) {
			t.Errorf("got subjects %q", got)
		}

		withID := func(id string, raw string) store.Incoming {
			in := incoming(0, raw)
			in.ID = id
			return in
		}
		p := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 5, ActByID: true, Action: "seen", Messages: []store.Incoming{
			withID("a", msg(5, "")), withID("b", msg(6, "")), withID("a", msg(7, "")), incoming(4, msg(8, "other@x")),
			withID("c", msg(9, "other@x")), withID("d", msg(10, "same@x"))}}
		rec, skipped, err = s.RecordBatch(ctx, p, runHook)
		if err != nil || skipped != 3 || !slices.Equal(uids(rec), []uint32{1, 2, 4}) {
			t.Fatalf("got %v, %d skipped, %v; want uids 1, 2 (epoch 0), 4 and 3 skipped", rec, skipped, err)
		}
		if got := subjects(t, s, rec); !slices.Equal(got, []string{"Invoice 5", "Invoice 6", "Invoice 8"}) {
			t.Errorf("got subjects %q", got)
		}
		seen := seenBy(t, s)
		want := map[string]int64{"a": rec[0].ID, "b": rec[1].ID, "c": rec[2].ID, "d": 0}
		for id, m := range want {
			got, ok := seen[id]
			if !ok || (m != 0 && got != m) {
				t.Errorf("seen id %s: by message %d (remembered %v), want %d", id, got, ok, m)
			}
		}
		runs, err := s.ListRuns(ctx, store.RunFilter{}, 0, 100)
		if err != nil || len(runs) != 6 {
			t.Fatalf("got %d runs, %v; want 6", len(runs), err)
		}
		owed, err := s.Owed(ctx, 1)
		if err != nil || len(owed) != 6 {
			t.Errorf("got %d actions owed, %v; want 6", len(owed), err)
		}
	})
}

// seenBy returns the seen ids of configuration 1 and the message each
// names (0: none).
func seenBy(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	rows, err := store.DB(s).Query(`SELECT source_id, COALESCE(message_id, 0) FROM seen_ids WHERE imap_id = 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var m int64
		if err := rows.Scan(&id, &m); err != nil {
			t.Fatal(err)
		}
		out[id] = m
	}
	return out
}

// TestRecordBatchMixesSeenAndNew: a batch of messages some of which were
// recorded by an earlier batch (by UID, by id) records only the others, in
// order, numbering the new ids after the highest.
func TestRecordBatchMixesSeenAndNew(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 5, Messages: []store.Incoming{incoming(1, msg(1, "")), incoming(2, msg(2, ""))}}
		if _, _, err := s.RecordBatch(ctx, b, runHook); err != nil {
			t.Fatal(err)
		}
		b.Messages = []store.Incoming{incoming(1, msg(1, "")), incoming(3, msg(3, "")), incoming(2, msg(2, "")), incoming(4, msg(4, ""))}
		rec, skipped, err := s.RecordBatch(ctx, b, runHook)
		if err != nil || skipped != 2 || !slices.Equal(uids(rec), []uint32{3, 4}) {
			t.Fatalf("got %v, %d skipped, %v; want uids 3, 4 and 2 skipped", rec, skipped, err)
		}

		withID := func(id string, n int) store.Incoming {
			in := incoming(0, msg(n, ""))
			in.ID = id
			return in
		}
		p := store.Batch{IMAPID: 2, IMAPName: "pop", Messages: []store.Incoming{withID("a", 1), withID("b", 2)}}
		if _, _, err := s.RecordBatch(ctx, p, runHook); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSeenIDs(ctx, 2, []string{"x"}); err != nil {
			t.Fatal(err)
		}
		p.Messages = []store.Incoming{withID("a", 1), withID("c", 3), withID("x", 9), withID("b", 2), withID("d", 4)}
		rec, skipped, err = s.RecordBatch(ctx, p, runHook)
		if err != nil || skipped != 3 || !slices.Equal(uids(rec), []uint32{3, 4}) {
			t.Fatalf("got %v, %d skipped, %v; want uids 3, 4 and 3 skipped", rec, skipped, err)
		}
		if got := subjects(t, s, rec); !slices.Equal(got, []string{"Invoice 3", "Invoice 4"}) {
			t.Errorf("got subjects %q", got)
		}
		runs, err := s.ListRuns(ctx, store.RunFilter{}, 0, 100)
		if err != nil || len(runs) != 8 {
			t.Fatalf("got %d runs, %v; want 8", len(runs), err)
		}
	})
}

// TestRecordBatchLarge records batches larger than one statement can
// carry on PostgreSQL (3,500 messages: 73,500 values, above its 65,535
// parameters; and with the limits lowered, in many chunks): every message
// is recorded once, in order, with its match and its run, the runs
// numbered in the messages' order.
func TestRecordBatchLarge(t *testing.T) {
	for _, c := range []struct {
		name        string
		n           int
		rows, bytes int
	}{{"3500", 3500, 0, 0}, {"chunks", 60, 7, 1000}} {
		t.Run(c.name, func(t *testing.T) {
			if c.rows > 0 {
				t.Cleanup(store.SetInsertLimits(c.rows, c.bytes))
			}
			storetest.Each(t, func(t *testing.T, s *store.Store) {
				ctx := context.Background()
				b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Action: "seen",
					Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uint32(c.n)}}
				for i := range c.n {
					b.Messages = append(b.Messages, incoming(uint32(i+1), withAttachment))
				}
				var made []store.Run
				rec, skipped, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
					r := store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: b.IMAPName}
					if err := tx.RecordMatch(ctx, id, store.Match{FlowID: 1, FlowName: "f", Matched: true}); err != nil {
						return err
					}
					_, err := tx.CreateRun(ctx, &r)
					made = append(made, r)
					return err
				})
				if err != nil || skipped != 0 || len(rec) != c.n {
					t.Fatalf("recorded %d, skipped %d, %v; want %d", len(rec), skipped, err, c.n)
				}
				for i, r := range rec {
					if r.UID != uint32(i+1) || (i > 0 && r.ID <= rec[i-1].ID) {
						t.Fatalf("recorded %d: %+v after %+v, want uid %d with a higher id", i, r, rec[max(i-1, 0)], i+1)
					}
				}
				runs, err := s.ListRuns(ctx, store.RunFilter{}, 0, c.n+1)
				if err != nil || len(runs) != c.n {
					t.Fatalf("got %d runs, %v; want %d", len(runs), err, c.n)
				}
				for i, r := range runs { // newest first
					want := made[c.n-1-i]
					if r.ID != want.ID || r.PublicID != want.PublicID || r.MessageID != rec[c.n-1-i].ID {
						t.Fatalf("run %d: got %+v, want %+v", i, r, want)
					}
				}
				for _, i := range []int{0, c.n / 2, c.n - 1} {
					m, err := s.GetMessage(ctx, rec[i].ID)
					if err != nil || len(m.Attachments) != 1 || m.Subject != "Invoice 7" {
						t.Errorf("message %d: %+v, %v", i, m, err)
					}
					matches, err := s.Matches(ctx, rec[i].ID)
					if err != nil || len(matches) != 1 || !matches[0].Matched {
						t.Errorf("matches of message %d: %+v, %v", i, matches, err)
					}
				}
				owed, err := s.Owed(ctx, 1)
				if err != nil || len(owed) != c.n {
					t.Errorf("got %d actions owed, %v; want %d", len(owed), err, c.n)
				}
			})
		})
	}
}

// TestRecordBatchFenced: on PostgreSQL a batch recorded under a lease lost
// to another replica records nothing (no message, seen id, match, run,
// owed action or checkpoint) and never calls the hook; under the lease
// held it records everything, marked with the replica and token.
func TestRecordBatchFenced(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	c := sampleIMAP("fenced")
	if err := s.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := s.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimLeases(ctx, "a", 1, now, now.Add(-time.Second)); err != nil { // expired at once
		t.Fatal(err)
	}
	taken, err := s.ClaimLeases(ctx, "b", 1, now, now.Add(time.Minute))
	if err != nil || taken[c.ID] != 2 {
		t.Fatalf("takeover: %v, %v", taken, err)
	}
	withID := incoming(0, msg(2, "two@x"))
	withID.ID = "id-2"
	b := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Action: "seen", ActByID: true,
		Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 1},
		Messages:   []store.Incoming{incoming(1, msg(1, "one@x")), withID}}
	called := 0
	hook := func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
		called++
		return runHook(ctx, tx, b, id, in)
	}
	lost := store.WithFence(ctx, store.Fence{IMAPID: c.ID, Owner: "a", Token: 1})
	if _, _, err := s.RecordBatch(lost, b, hook); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("recording under a lost lease: %v, want ErrFenced", err)
	}
	if called != 0 {
		t.Errorf("hook called %d times under a lost lease", called)
	}
	for _, table := range []string{"messages", "attachments", "seen_ids", "message_matches", "runs", "owed_actions", "checkpoints"} {
		var n int
		if err := store.DB(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows, %v; want none", table, n, err)
		}
	}

	held := store.WithFence(ctx, store.Fence{IMAPID: c.ID, Owner: "b", Token: 2})
	rec, _, err := s.RecordBatch(held, b, hook)
	if err != nil || len(rec) != 2 || called != 2 {
		t.Fatalf("recording under the lease: %v, %v, hook called %d times", rec, err, called)
	}
	var replica string
	var token int64
	if err := store.DB(s).QueryRow(`SELECT replica, lease_token FROM messages WHERE id = $1`, rec[1].ID).Scan(&replica, &token); err != nil ||
		replica != "b" || token != 2 {
		t.Errorf("message recorded by %q under token %d, %v; want b, 2", replica, token, err)
	}
	for table, want := range map[string]int{"seen_ids": 1, "message_matches": 2, "runs": 2, "owed_actions": 2, "checkpoints": 1} {
		var n int
		if err := store.DB(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d rows, %v; want %d", table, n, err, want)
		}
	}
}

// TestRecordBatchHeldStatementFails: on PostgreSQL the writes beside the
// messages are held and sent together before the commit (held.go); one of
// them failing fails the batch, names what it was doing, and leaves
// nothing of the batch behind, not even its checkpoint. The same batch is
// then recorded whole.
func TestRecordBatchHeldStatementFails(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	c := sampleIMAP("held")
	if err := s.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	b := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Action: "seen",
		Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2},
		Messages:   []store.Incoming{incoming(1, msg(1, "one@x")), incoming(2, msg(2, "two@x"))}}
	if _, err := store.DB(s).Exec(`ALTER TABLE runs ADD CONSTRAINT held_test CHECK (seq < 0)`); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.RecordBatch(ctx, b, runHook)
	if err == nil || !strings.Contains(err.Error(), "into runs") || !strings.Contains(err.Error(), "held_test") {
		t.Fatalf("recording with runs refused: %v; want an error naming the insert into runs and the constraint", err)
	}
	for _, table := range []string{"messages", "attachments", "message_matches", "runs", "owed_actions", "checkpoints"} {
		var n int
		if err := store.DB(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows, %v; want none", table, n, err)
		}
	}
	if _, err := store.DB(s).Exec(`ALTER TABLE runs DROP CONSTRAINT held_test`); err != nil {
		t.Fatal(err)
	}
	rec, _, err := s.RecordBatch(ctx, b, runHook)
	if err != nil || len(rec) != 2 {
		t.Fatalf("recording again: %v, %v", rec, err)
	}
	for table, want := range map[string]int{"messages": 2, "message_matches": 2, "runs": 2, "owed_actions": 2, "checkpoints": 1} {
		var n int
		if err := store.DB(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d rows, %v; want %d", table, n, err, want)
		}
	}
}

// TestIngestStatementsPrepared: on SQLite every statement of the ingest
// path is prepared once, when the store opens, not per transaction.
func TestIngestStatementsPrepared(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	if got, want := store.Prepared(s); got != want {
		t.Errorf("%d statements prepared, want %d", got, want)
	}
}

// TestRecordBatchRace: on PostgreSQL a batch's messages are written with
// COPY, which cannot skip a row another transaction inserted after the
// batch's lookup. Two transactions recording the same batch (a lease
// changing hands) then record each message once: the second waits for the
// first on the unique key, fails when it commits, and records the batch
// again, finding every message recorded.
func TestRecordBatchRace(t *testing.T) {
	s := storetest.Open(t, store.Postgres)
	ctx := context.Background()
	next, hook := benchSetup(t, s, "race", 3)
	b := next()
	hold, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		n := 0
		_, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
			if n++; n == 1 {
				close(hold) // inserted, not committed
				<-release
			}
			return hook(ctx, tx, b, id, in)
		})
		first <- err
	}()
	<-hold
	second := make(chan error, 1)
	var skipped int
	go func() {
		var err error
		_, skipped, err = s.RecordBatch(ctx, b, hook)
		second <- err
	}()
	// The second waits on the unique key of a row the first inserted.
	err := testwait.UntilErr(10*time.Second, func() error {
		var n int
		if err := store.DB(s).QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the second transaction does not wait for the first")
		}
		return nil
	})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second: %v, want the batch recorded again and skipped", err)
	}
	if skipped != 3 {
		t.Errorf("second skipped %d message(s), want 3", skipped)
	}
	for table, want := range map[string]int{"messages": 3, "runs": 3} {
		var n int
		if err := store.DB(s).QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d rows, %v; want %d", table, n, err, want)
		}
	}
}
