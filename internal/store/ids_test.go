package store_test

import (
	"context"
	"errors"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// A configuration or flow created after the newest one was deleted gets a
// new id, not the deleted one's: on SQLite, which hands out the largest id
// plus one, it inherited the deleted mailbox's checkpoint (and so read its
// folder from the deleted one's place, or all of it under another
// UIDVALIDITY), and a deleted flow's queued runs were delivered to the new
// flow's webhook.
func TestIDsNeverReused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		first, old := sampleIMAP("first_box"), sampleIMAP("old_box")
		for _, c := range []*imapconf.Config{&first, &old} {
			if err := s.CreateIMAP(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetCheckpoint(ctx, old.ID, store.Checkpoint{Kind: store.KindIMAP, Epoch: 77, Last: 5000}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteIMAP(ctx, "old_box"); err != nil {
			t.Fatal(err)
		}
		fresh := sampleIMAP("new_box")
		if err := s.CreateIMAP(ctx, &fresh); err != nil {
			t.Fatal(err)
		}
		if fresh.ID <= old.ID {
			t.Errorf("a configuration created after %d was deleted got id %d", old.ID, fresh.ID)
		}
		if cp, ok, err := s.GetCheckpoint(ctx, fresh.ID); err != nil || ok {
			t.Errorf("the new configuration starts from checkpoint %+v (%v, %v), want none", cp, ok, err)
		}
		got, err := s.GetIMAP(ctx, "new_box")
		if err != nil || got.ID != fresh.ID {
			t.Fatalf("reading the new configuration back: id %d, %v; want %d", got.ID, err, fresh.ID)
		}

		team := store.FlowRecord{Name: "team_a", IMAPID: first.ID, Enabled: true, Definition: `{"name":"team_a"}`, Secrets: []string{"whsec_a"}}
		if err := s.CreateFlow(ctx, &team); err != nil {
			t.Fatal(err)
		}
		b := store.Batch{IMAPID: first.ID, IMAPName: first.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 1},
			Messages: []store.Incoming{incoming(1, msg(1, ""))}}
		var run store.Run
		if _, _, err := s.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, _ store.Incoming) error {
			run = store.Run{FlowID: team.ID, FlowName: team.Name, MessageID: id, IMAPName: first.Name}
			_, err := tx.CreateRun(ctx, &run)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteFlow(ctx, "team_a"); err != nil {
			t.Fatal(err)
		}
		other := store.FlowRecord{Name: "team_b", IMAPID: first.ID, Enabled: true, Definition: `{"name":"team_b"}`, Secrets: []string{"whsec_b"}}
		if err := s.CreateFlow(ctx, &other); err != nil {
			t.Fatal(err)
		}
		if other.ID == team.ID {
			t.Errorf("a flow created after flow %d was deleted got its id", team.ID)
		}
		if f, err := s.GetFlowByID(ctx, run.FlowID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the deleted flow's run %s finds flow %q (%v), want none", run.PublicID, f.Name, err)
		}
		if f, err := s.GetFlow(ctx, "team_b"); err != nil || f.ID != other.ID || len(f.Secrets) != 1 || f.Secrets[0] != "whsec_b" {
			t.Errorf("reading the new flow back: %+v, %v", f, err)
		}
	})
}

// The upgrade to id_sequences takes the ids deleted before it as used: a
// configuration or flow created after the upgrade gets none of the ids that
// messages, checkpoints or runs still refer to.
func TestIDsNeverReusedAcrossTheUpgrade(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := storetest.Options(t, d)
			old, err := store.OpenAt(ctx, o, 15)
			if err != nil {
				t.Fatal(err)
			}
			first, gone := sampleIMAP("first_box"), sampleIMAP("gone_box")
			for _, c := range []*imapconf.Config{&first, &gone} {
				if err := old.CreateIMAP(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			if err := old.SetCheckpoint(ctx, gone.ID, store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 9}, nil); err != nil {
				t.Fatal(err)
			}
			team := store.FlowRecord{Name: "team_a", IMAPID: first.ID, Enabled: true, Definition: `{"name":"team_a"}`}
			if err := old.CreateFlow(ctx, &team); err != nil {
				t.Fatal(err)
			}
			b := store.Batch{IMAPID: first.ID, IMAPName: first.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 1},
				Messages: []store.Incoming{incoming(1, msg(1, ""))}}
			if _, _, err := old.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, _ store.Incoming) error {
				_, err := tx.CreateRun(ctx, &store.Run{FlowID: team.ID, FlowName: team.Name, MessageID: id, IMAPName: first.Name})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if err := old.DeleteFlow(ctx, "team_a"); err != nil {
				t.Fatal(err)
			}
			if err := old.DeleteIMAP(ctx, "gone_box"); err != nil {
				t.Fatal(err)
			}
			old.Close()

			s, err := store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fresh := sampleIMAP("new_box")
			if err := s.CreateIMAP(ctx, &fresh); err != nil {
				t.Fatal(err)
			}
			if fresh.ID <= gone.ID {
				t.Errorf("a configuration created after the upgrade got id %d; %d was deleted before it", fresh.ID, gone.ID)
			}
			other := store.FlowRecord{Name: "team_b", IMAPID: first.ID, Enabled: true, Definition: `{"name":"team_b"}`}
			if err := s.CreateFlow(ctx, &other); err != nil {
				t.Fatal(err)
			}
			if other.ID <= team.ID {
				t.Errorf("a flow created after the upgrade got id %d; %d was deleted before it, its run kept", other.ID, team.ID)
			}
		})
	}
}
