package store_test

import (
	"context"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestRecordBatchPOP3: messages with an id (a POP3 UIDL) are numbered per
// configuration under epoch 0, recorded once per id, owe no pending
// action, and the ids remembered are listed, marked seen and forgotten as
// asked.
func TestRecordBatchPOP3(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		pop := func(uidl string, n int) store.Incoming {
			in := incoming(0, msg(n, uidl+"@x"))
			in.ID = uidl
			return in
		}
		b := store.Batch{IMAPID: 7, IMAPName: "pop", Messages: []store.Incoming{pop("a", 1), pop("b", 2)}, Action: "delete",
			Checkpoint: &store.Checkpoint{Kind: store.KindPOP3}}
		rec, skipped, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 2 || skipped != 0 || rec[0].UID != 1 || rec[1].UID != 2 {
			t.Fatalf("got %v skipped %d, %v", rec, skipped, err)
		}
		// Again, with a new one: only the new one, numbered next.
		b.Messages = []store.Incoming{pop("a", 1), pop("c", 3), pop("b", 2)}
		rec, skipped, err = s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 1 || skipped != 2 || rec[0].UID != 3 {
			t.Fatalf("again: got %v skipped %d, %v", rec, skipped, err)
		}
		if pa, err := s.Owed(ctx, 7); err != nil || len(pa) != 0 {
			t.Errorf("pending actions: got %v, %v", pa, err)
		}
		if err := s.SetCheckpoint(ctx, 7, store.Checkpoint{Kind: store.KindPOP3}, []string{"old1", "old2", "a"}); err != nil {
			t.Fatal(err)
		}
		if cp, ok, err := s.GetCheckpoint(ctx, 7); err != nil || !ok || cp != (store.Checkpoint{Kind: store.KindPOP3}) {
			t.Errorf("checkpoint: got %v %v %v", cp, ok, err)
		}
		known, err := s.SeenIDs(ctx, 7)
		if err != nil || len(known) != 5 || !known["old1"] || !known["c"] {
			t.Fatalf("got %v, %v", known, err)
		}
		if err := s.RetainSeenIDs(ctx, 7, map[string]bool{"c": true, "old2": true, "zzz": true}); err != nil {
			t.Fatal(err)
		}
		known, err = s.SeenIDs(ctx, 7)
		if err != nil || len(known) != 2 || !known["c"] || !known["old2"] {
			t.Fatalf("after forgetting: got %v, %v", known, err)
		}
		// A forgotten UIDL that comes back is a new message; marked seen,
		// it is skipped.
		b.Messages = []store.Incoming{pop("a", 4), pop("old2", 5)}
		rec, skipped, err = s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 1 || skipped != 1 || rec[0].UID != 4 {
			t.Fatalf("after forgetting: got %v skipped %d, %v", rec, skipped, err)
		}
		if n, err := s.CountMessages(ctx, 7); err != nil || n != 4 {
			t.Errorf("got %d messages, %v", n, err)
		}
	})
}
