package store_test

import (
	"context"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestRecordBatchGraph: Graph messages (by their ids) are recorded
// once per id; the deltaLink moves only with the batch that carries it;
// the after-processing owed is listed by Graph id until done; ids
// remembered without recording are skipped.
func TestRecordBatchGraph(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		g := func(id string, n int) store.Incoming {
			in := incoming(0, msg(n, id+"@x"))
			in.ID = id
			return in
		}
		link := func(want string, wantOK bool) {
			t.Helper()
			if cp, ok, err := s.GetCheckpoint(ctx, 9); err != nil || cp.Cursor != want || ok != wantOK {
				t.Errorf("deltaLink: got %q %v %v, want %q %v", cp.Cursor, ok, err, want, wantOK)
			}
		}
		link("", false)
		if err := s.SetCheckpoint(ctx, 9, store.Checkpoint{Kind: store.KindGraph, Cursor: "https://g/delta?token=1"}, []string{"old"}); err != nil {
			t.Fatal(err)
		}
		link("https://g/delta?token=1", true)
		// A batch in the middle of a round keeps the link.
		b := store.Batch{IMAPID: 9, IMAPName: "graph", Messages: []store.Incoming{g("a", 1), g("old", 2)}, Action: "move",
			MoveTo: "Done", ActByID: true, Checkpoint: &store.Checkpoint{Kind: store.KindGraph, KeepCursor: true}}
		rec, skipped, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 1 || skipped != 1 || rec[0].UID != 1 {
			t.Fatalf("got %v skipped %d, %v", rec, skipped, err)
		}
		link("https://g/delta?token=1", true)
		// The batch that finishes the round stores its link.
		l2 := "https://g/delta?token=2"
		b.Messages, b.Checkpoint = []store.Incoming{g("a", 1), g("b", 3)}, &store.Checkpoint{Kind: store.KindGraph, Cursor: l2}
		rec, skipped, err = s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 1 || skipped != 1 || rec[0].UID != 2 {
			t.Fatalf("again: got %v skipped %d, %v", rec, skipped, err)
		}
		link(l2, true)
		pa, err := s.Owed(ctx, 9)
		if err != nil || len(pa) != 2 || pa[0].ID != "a" || pa[1].ID != "b" || pa[1].Action != "move" || pa[1].MoveTo != "Done" {
			t.Fatalf("pending: got %+v, %v", pa, err)
		}
		if err := s.Paid(ctx, 9, 0, []uint32{pa[0].UID}); err != nil {
			t.Fatal(err)
		}
		if pa, err := s.Owed(ctx, 9); err != nil || len(pa) != 1 || pa[0].ID != "b" {
			t.Errorf("pending after done: got %+v, %v", pa, err)
		}
		if err := s.AddSeenIDs(ctx, 9, []string{"read1"}); err != nil {
			t.Fatal(err)
		}
		if ids, err := s.SeenIDs(ctx, 9); err != nil || len(ids) != 4 || !ids["read1"] || !ids["b"] {
			t.Errorf("ids: got %v, %v", ids, err)
		}
		// An empty batch only moves the link.
		l3 := "https://g/delta?token=3"
		b.Messages, b.Checkpoint = nil, &store.Checkpoint{Kind: store.KindGraph, Cursor: l3}
		if _, _, err := s.RecordBatch(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
		link(l3, true)
		if n, err := s.CountMessages(ctx, 9); err != nil || n != 2 {
			t.Errorf("count: got %d, %v", n, err)
		}

		// Forgetting ids gone from the folder drops them and the
		// after-processing still owed for them; the records stay.
		if err := s.ForgetSeenIDs(ctx, 9, []string{"b", "old", "never-seen"}); err != nil {
			t.Fatal(err)
		}
		if ids, err := s.SeenIDs(ctx, 9); err != nil || len(ids) != 2 || !ids["a"] || !ids["read1"] {
			t.Errorf("ids after forgetting: got %v, %v", ids, err)
		}
		if pa, err := s.Owed(ctx, 9); err != nil || len(pa) != 0 {
			t.Errorf("pending after forgetting: got %+v, %v", pa, err)
		}
		if n, err := s.CountMessages(ctx, 9); err != nil || n != 2 {
			t.Errorf("count after forgetting: got %d, %v", n, err)
		}
	})
}
