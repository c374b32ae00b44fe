package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

const withAttachment = "From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: Invoice 7\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nPay.\r\n" +
	"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"

// TestGetMessagesMatchesGetMessage checks that the batch read the run
// worker uses gives what reading each message alone gives.
func TestGetMessagesMatchesGetMessage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 3},
			Messages: []store.Incoming{incoming(1, msg(1, "one@x")), incoming(2, withAttachment), incoming(3, msg(3, ""))}}
		rec, _, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 3 {
			t.Fatalf("recording: %v, %v", rec, err)
		}
		ids := []int64{rec[0].ID, rec[1].ID, rec[2].ID, 999999}
		got, err := s.GetMessages(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("got %d messages, want 3 (the missing id left out)", len(got))
		}
		for _, r := range rec {
			want, err := s.GetMessage(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[r.ID], want) {
				t.Errorf("message %d: got %+v, want %+v", r.ID, got[r.ID], want)
			}
		}
		if n := len(got[rec[1].ID].Attachments); n != 1 {
			t.Errorf("got %d attachments, want 1", n)
		}
	})
}

// TestFinishAttemptsTogether checks that attempts recorded in one
// transaction number and finish each run as FinishAttempt does.
func TestFinishAttemptsTogether(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		runs := claimN(t, s, 1, 2)
		next := time.Now().Add(time.Hour)
		err := s.FinishAttempts(ctx, []store.Finish{
			{RunID: runs[0].ID, Attempt: store.Attempt{StartedAt: time.Now(), StatusCode: 200}, Status: store.RunDelivered, Next: time.Now()},
			{RunID: runs[1].ID, Attempt: store.Attempt{StartedAt: time.Now(), StatusCode: 503, Error: "HTTP 503"}, Status: store.RunRetrying, Next: next},
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			status string
			code   int
		}{{store.RunDelivered, 200}, {store.RunRetrying, 503}} {
			r, attempts, err := s.GetRun(ctx, runs[i].PublicID)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != want.status || r.Attempts != 1 || len(attempts) != 1 || attempts[0].N != 1 || attempts[0].StatusCode != want.code {
				t.Errorf("run %d: got %s with %d attempts %+v, want %s with attempt 1 (%d)", i, r.Status, r.Attempts, attempts, want.status, want.code)
			}
		}
		// The retrying run is not due before its time; nothing else is.
		if again, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute); err != nil || len(again) != 0 {
			t.Errorf("claimed %d runs again, %v; want none", len(again), err)
		}
		if again, err := s.ClaimRuns(ctx, next.Add(time.Second), 10, time.Minute); err != nil || len(again) != 1 || again[0].ID != runs[1].ID {
			t.Errorf("at its time claimed %v, %v; want the retrying run", again, err)
		}
	})
}

// TestClaimRunsExceptFlows checks that a claim leaves the runs of the flows
// it is told to leave out in the queue, unchanged, and that a later claim
// without them takes those runs.
func TestClaimRunsExceptFlows(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2},
			Messages: []store.Incoming{incoming(1, msg(1, "")), incoming(2, msg(2, ""))}}
		_, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
			for _, flow := range []int64{1, 2, 3} {
				r := store.Run{FlowID: flow, FlowName: "f", MessageID: id, IMAPName: "inbox"}
				if _, err := tx.CreateRun(ctx, &r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		claimed, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute, 2, 3)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claimed %d, %v; want flow 1's 2 runs", len(claimed), err)
		}
		for _, r := range claimed {
			if r.FlowID != 1 {
				t.Errorf("claimed a run of flow %d, which was left out", r.FlowID)
			}
		}
		rest, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute)
		if err != nil || len(rest) != 4 {
			t.Fatalf("claimed %d, %v; want the 4 runs left out before", len(rest), err)
		}
		for _, r := range rest {
			if r.FlowID == 1 || r.Status != store.RunDelivering || r.Attempts != 0 {
				t.Errorf("got run of flow %d, %s with %d attempts; want flows 2 and 3, delivering, none", r.FlowID, r.Status, r.Attempts)
			}
		}
	})
}

// TestClaimRunsCapped checks that a claim takes at most a capped flow's
// cap of its runs (oldest due first), none of a flow capped at 0, the
// others' up to the limit, and that a later claim takes what was left.
func TestClaimRunsCapped(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		first := fourRunsEach(t, s, 1, 2, 3)[1] // flow 1's runs, oldest first
		count := func(runs []store.Run) map[int64]int {
			n := map[int64]int{}
			for _, r := range runs {
				n[r.FlowID]++
			}
			return n
		}
		caps := []store.FlowCap{{FlowID: 1, Max: 2}, {FlowID: 2}}
		claimed, err := s.ClaimRunsCapped(ctx, time.Now(), 10, time.Minute, caps)
		if err != nil {
			t.Fatal(err)
		}
		if n := count(claimed); len(claimed) != 6 || n[1] != 2 || n[2] != 0 || n[3] != 4 {
			t.Fatalf("claimed %v of flows 1, 2, 3; want 2, 0, 4", n)
		}
		for _, r := range claimed {
			if r.FlowID == 1 && r.ID != first[0] && r.ID != first[1] {
				t.Errorf("claimed flow 1's run %d, want its oldest two %v", r.ID, first[:2])
			}
		}
		// The limit bounds the capped flows' runs too.
		if again, err := s.ClaimRunsCapped(ctx, time.Now(), 1, time.Minute, []store.FlowCap{{FlowID: 1, Max: 2}}); err != nil || len(again) != 1 || again[0].FlowID != 1 {
			t.Fatalf("claimed %v, %v; want one run of flow 1", again, err)
		}
		rest, err := s.ClaimRuns(ctx, time.Now(), 10, time.Minute)
		if n := count(rest); err != nil || len(rest) != 5 || n[1] != 1 || n[2] != 4 {
			t.Fatalf("claimed %v, %v; want the 5 runs left (flow 1's last, flow 2's 4)", n, err)
		}
	})
}

// TestClaimRunsCappedTakesWhatTheOthersLeft: each capped flow's share of a
// claim is sized by what the capped flows before it took, not by their
// caps: a first capped flow with nothing due leaves the whole limit to the
// next and to the flows not capped. (Sized by the caps, this claim took 1
// run, and TestScaleOut's worker then delivered about a run a second.)
func TestClaimRunsCappedTakesWhatTheOthersLeft(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		fourRunsEach(t, s, 1, 2, 3)
		// Flow 9 has no runs; flow 3 is left out (capped at 0).
		caps := []store.FlowCap{{FlowID: 1, Max: 3}, {FlowID: 3}, {FlowID: 9, Max: 5}, {FlowID: 10, Max: 2}}
		claimed, err := s.ClaimRunsCapped(ctx, time.Now(), 6, time.Minute, []store.FlowCap{caps[2], caps[0], caps[1], caps[3]})
		if err != nil {
			t.Fatal(err)
		}
		n := map[int64]int{}
		for _, r := range claimed {
			n[r.FlowID]++
			if r.Status != store.RunDelivering {
				t.Errorf("run %d claimed with status %s", r.ID, r.Status)
			}
		}
		if len(claimed) != 6 || n[1] != 3 || n[2] != 3 || n[3] != 0 {
			t.Fatalf("claimed %v of flows 1, 2, 3; want 3, 3, 0", n)
		}
		if again, err := s.ClaimRunsCapped(ctx, time.Now(), 10, time.Minute, caps); err != nil || len(again) != 2 {
			t.Fatalf("claimed %d, %v; want flow 1's last run and flow 2's", len(again), err)
		}
	})
}

// fourRunsEach records four messages of configuration 1 and a run of each
// of flows for each message, and returns the runs' ids by flow, oldest
// first.
func fourRunsEach(t *testing.T, s *store.Store, flows ...int64) map[int64][]int64 {
	t.Helper()
	var msgs []store.Incoming
	for i := range uint32(4) {
		msgs = append(msgs, incoming(i+1, msg(int(i+1), "")))
	}
	b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 4},
		Messages: msgs}
	ids := map[int64][]int64{}
	_, _, err := s.RecordBatch(context.Background(), b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
		for _, flow := range flows {
			r := store.Run{FlowID: flow, FlowName: "f", MessageID: id, IMAPName: "inbox"}
			if _, err := tx.CreateRun(ctx, &r); err != nil {
				return err
			}
			ids[flow] = append(ids[flow], r.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// claimN records n messages of configuration imapID, a run of flow imapID
// for each, and claims them all.
func claimN(t *testing.T, s *store.Store, imapID int64, n int) []store.Run {
	t.Helper()
	ctx := context.Background()
	b := store.Batch{IMAPID: imapID, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uint32(n)}}
	for i := 1; i <= n; i++ {
		b.Messages = append(b.Messages, incoming(uint32(i), msg(i, "")))
	}
	var runs []store.Run
	_, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
		r := store.Run{FlowID: imapID, FlowName: "f", MessageID: id, IMAPName: "inbox"}
		if _, err := tx.CreateRun(ctx, &r); err != nil {
			return err
		}
		runs = append(runs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if claimed, err := s.ClaimRuns(ctx, time.Now(), n, time.Minute); err != nil || len(claimed) != n {
		t.Fatalf("claimed %d, %v; want %d", len(claimed), err, n)
	}
	return runs
}

// TestFinishAttemptsTogetherNumbering: attempts recorded together are
// numbered from each run's own count (a run retried before gets 2), the
// delivered ones get delivered_at and the others keep none, and a batch
// naming a run that is not there fails and changes nothing (the run worker
// then records each finish alone).
func TestFinishAttemptsTogetherNumbering(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		runs := claimN(t, s, 1, 3)
		// Run 0 is tried once alone first: it retries, due at once.
		if err := s.FinishAttempt(ctx, runs[0].ID, store.Attempt{StartedAt: time.Now(), StatusCode: 500, Error: "HTTP 500"},
			store.RunRetrying, time.Now()); err != nil {
			t.Fatal(err)
		}
		if again, err := s.ClaimRuns(ctx, time.Now().Add(time.Second), 10, time.Minute); err != nil || len(again) != 1 {
			t.Fatalf("claimed %d, %v; want the retrying run", len(again), err)
		}
		ok := store.Attempt{StartedAt: time.Now(), StatusCode: 200, Response: "ok \xff"}
		later := time.Now().Add(time.Hour)
		missing := []store.Finish{
			{RunID: runs[0].ID, Attempt: ok, Status: store.RunDelivered, Next: time.Now()},
			{RunID: 999999, Attempt: ok, Status: store.RunDelivered, Next: time.Now()},
		}
		if err := s.FinishAttempts(ctx, missing); err == nil {
			t.Fatal("finishing a run that is not there: no error")
		}
		if r, attempts, err := s.GetRun(ctx, runs[0].PublicID); err != nil || r.Status != store.RunDelivering || len(attempts) != 1 {
			t.Fatalf("after the failed batch: run %+v, %d attempts, %v; want delivering with its first attempt only", r, len(attempts), err)
		}
		err := s.FinishAttempts(ctx, []store.Finish{
			{RunID: runs[0].ID, Attempt: ok, Status: store.RunDelivered, Next: time.Now()},
			{RunID: runs[1].ID, Attempt: store.Attempt{StartedAt: time.Now(), StatusCode: 503, Error: "HTTP 503"}, Status: store.RunRetrying, Next: later},
			{RunID: runs[2].ID, Attempt: ok, Status: store.RunDelivered, Next: time.Now()},
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			status    string
			n         int
			delivered bool
			lastError string
		}{{store.RunDelivered, 2, true, ""}, {store.RunRetrying, 1, false, "HTTP 503"}, {store.RunDelivered, 1, true, ""}} {
			r, attempts, err := s.GetRun(ctx, runs[i].PublicID)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != want.status || r.Attempts != want.n || len(attempts) != want.n || attempts[want.n-1].N != want.n ||
				(r.DeliveredAt != nil) != want.delivered || r.LastError != want.lastError {
				t.Errorf("run %d: got %s, %d attempts %+v, delivered %v, last error %q; want %s, %d, delivered %v, %q",
					i, r.Status, r.Attempts, attempts, r.DeliveredAt, r.LastError, want.status, want.n, want.delivered, want.lastError)
			}
			if want.status == store.RunDelivered && attempts[want.n-1].Response != "ok \uFFFD" {
				t.Errorf("run %d: response %q, want the invalid byte replaced", i, attempts[want.n-1].Response)
			}
		}
	})
}

// TestFinishAttemptsRoundTrips: on PostgreSQL, finishing 100 deliveries
// together costs as many round trips as finishing 10.
func TestFinishAttemptsRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, trips := openCounted(t)
	var got [2]int64
	for i, n := range []int{10, 100} {
		runs := claimN(t, s, int64(i+1), n)
		fs := make([]store.Finish, n)
		for j, r := range runs {
			fs[j] = store.Finish{RunID: r.ID, Attempt: store.Attempt{StartedAt: time.Now(), StatusCode: 200}, Status: store.RunDelivered, Next: time.Now()}
		}
		trips.reset()
		if err := s.FinishAttempts(ctx, fs); err != nil {
			t.Fatal(err)
		}
		got[i] = trips.load()
	}
	t.Logf("round trips: %d for 10 finishes, %d for 100", got[0], got[1])
	if got[1] > got[0]+1 { // +1: the driver pings a connection idle for a second
		t.Errorf("%d round trips for 100 finishes, %d for 10: want no more", got[1], got[0])
	}
}
