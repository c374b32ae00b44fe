package store_test

import (
	"context"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestCountWaitingRuns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 3},
			Messages: []store.Incoming{incoming(1, msg(1, "")), incoming(2, msg(2, "")), incoming(3, msg(3, ""))}}
		_, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
			_, err := tx.CreateRun(ctx, &store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: "inbox"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		count := func(before time.Time, limit int) int {
			t.Helper()
			n, err := s.CountWaitingRuns(ctx, before, limit)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		later, earlier := time.Now().Add(time.Minute), time.Now().Add(-time.Minute)
		if n := count(later, 10); n != 3 {
			t.Errorf("waiting since before a minute from now: %d, want 3", n)
		}
		if n := count(later, 2); n != 2 {
			t.Errorf("counted to %d with limit 2", n)
		}
		if n := count(earlier, 10); n != 0 {
			t.Errorf("waiting for more than a minute: %d, want 0", n)
		}
		// A claimed run is being delivered, not waiting.
		if c, err := s.ClaimRuns(ctx, time.Now(), 1, time.Minute); err != nil || len(c) != 1 {
			t.Fatalf("claimed %d, %v", len(c), err)
		}
		if n := count(later, 10); n != 2 {
			t.Errorf("after a claim: %d waiting, want 2", n)
		}
	})
}

func TestIMAPEnabledByID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mk := func(name string, enabled bool) int64 {
			c := imapconf.Config{Name: name, ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
				Host: "mail.example.com", Port: 993, Username: "u", Password: "p", Enabled: enabled, Folder: "INBOX",
				AfterProcessing: imapconf.AfterSeen, Backlog: imapconf.BacklogAll}
			if err := s.CreateIMAP(ctx, &c); err != nil {
				t.Fatal(err)
			}
			return c.ID
		}
		on, off := mk("on", true), mk("off", false)
		for _, tt := range []struct {
			id   int64
			want bool
		}{{on, true}, {off, false}, {on + off + 100, false}} {
			if got, err := s.IMAPEnabledByID(ctx, tt.id); err != nil || got != tt.want {
				t.Errorf("IMAPEnabledByID(%d) = %v, %v; want %v", tt.id, got, err, tt.want)
			}
		}
	})
}
