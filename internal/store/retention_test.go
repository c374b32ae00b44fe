package store_test

import (
	"context"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		raw := "Subject: old\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\nPDF\r\n--x--\r\n"
		old := incoming(1, raw)
		old.Seen = time.Now().Add(-40 * 24 * time.Hour)
		fresh := incoming(2, msg(2, "fresh@x"))
		var runID int64
		hook := func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
			r := store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: "inbox"}
			_, err := tx.CreateRun(ctx, &r)
			if in.UID == 1 {
				runID = r.ID
			}
			return err
		}
		rec, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2},
			Messages: []store.Incoming{old, fresh}}, hook)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FinishAttempt(ctx, runID, store.Attempt{StartedAt: time.Now(), StatusCode: 200, Response: "ok"}, store.RunDelivered, time.Now()); err != nil {
			t.Fatal(err)
		}
		p, err := s.Prune(ctx, time.Now().Add(-30*24*time.Hour))
		if err != nil || p.Messages != 1 {
			t.Fatalf("got %+v, %v", p, err)
		}
		m, err := s.GetMessage(ctx, rec[0].ID)
		if err != nil || m.Subject != "old" || m.Text != "" || len(m.Attachments) != 1 {
			t.Errorf("old message: got %+v, %v, want its summary kept and its body gone", m, err)
		}
		if raw, _ := s.MessageRaw(ctx, rec[0].ID); len(raw) != 0 {
			t.Error("old raw message kept")
		}
		if raw, _ := s.MessageRaw(ctx, rec[1].ID); len(raw) == 0 {
			t.Error("fresh message pruned")
		}
		// The run finished just now: its attempts stay until it is old.
		runs, _ := s.ListRuns(ctx, store.RunFilter{}, 0, 10)
		for _, r := range runs {
			if r.ID == runID {
				_, attempts, _ := s.GetRun(ctx, r.PublicID)
				if len(attempts) != 1 {
					t.Errorf("got %d attempts, want the fresh run's attempt kept", len(attempts))
				}
			}
		}
		p, err = s.Prune(ctx, time.Now().Add(time.Hour))
		if err != nil || p.Runs != 1 {
			t.Errorf("pruning everything: got %+v, %v", p, err)
		}
	})
}
