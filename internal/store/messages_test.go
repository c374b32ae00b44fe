package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func incoming(uid uint32, raw string) store.Incoming {
	return store.Incoming{UID: uid, Raw: []byte(raw), Msg: mail.Parse([]byte(raw))}
}

func msg(n int, msgID string) string {
	id := ""
	if msgID != "" {
		id = "Message-ID: <" + msgID + ">\r\n"
	}
	return fmt.Sprintf("From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: Invoice %d\r\n%s\r\nbody %d\r\n", n, id, n)
}

func TestRecordBatchExactlyOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 100, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 100, Last: 2},
			Messages: []store.Incoming{incoming(1, msg(1, "one@x")), incoming(2, msg(2, ""))}, Action: "seen"}
		hooked := 0
		hook := func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
			hooked++
			return nil
		}
		rec, skipped, err := s.RecordBatch(ctx, b, hook)
		if err != nil || len(rec) != 2 || skipped != 0 || hooked != 2 {
			t.Fatalf("got %v skipped %d hooked %d, %v", rec, skipped, hooked, err)
		}
		// The same batch again records nothing.
		rec, skipped, err = s.RecordBatch(ctx, b, hook)
		if err != nil || len(rec) != 0 || skipped != 2 || hooked != 2 {
			t.Fatalf("again: got %v skipped %d hooked %d, %v", rec, skipped, hooked, err)
		}
		cp, ok, err := s.GetCheckpoint(ctx, 1)
		if err != nil || !ok || cp != (store.Checkpoint{Kind: store.KindIMAP, Epoch: 100, Last: 2}) {
			t.Errorf("got %v %v %v", cp, ok, err)
		}
		// The checkpoint does not move backwards under one UIDVALIDITY.
		if err := s.SetCheckpoint(ctx, 1, store.Checkpoint{Kind: store.KindIMAP, Epoch: 100, Last: 1}, nil); err != nil {
			t.Fatal(err)
		}
		if cp, _, _ := s.GetCheckpoint(ctx, 1); cp.Last != 2 {
			t.Errorf("checkpoint went back to %d", cp.Last)
		}
		pa, err := s.Owed(ctx, 1)
		if err != nil || len(pa) != 2 || pa[0].Action != "seen" {
			t.Fatalf("got %v, %v", pa, err)
		}
		if err := s.Paid(ctx, 1, 100, []uint32{1, 2}); err != nil {
			t.Fatal(err)
		}
		if pa, _ := s.Owed(ctx, 1); len(pa) != 0 {
			t.Errorf("got %v after done", pa)
		}

		// A new UIDVALIDITY: the folder is read again; what was recorded
		// (by Message-ID or by the hash) is not recorded twice, new mail is.
		b2 := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 200, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 200, Last: 3},
			Messages: []store.Incoming{incoming(1, msg(1, "one@x")), incoming(2, msg(2, "")), incoming(3, msg(3, "three@x"))}}
		rec, skipped, err = s.RecordBatch(ctx, b2, nil)
		if err != nil || len(rec) != 1 || rec[0].UID != 3 || skipped != 2 {
			t.Fatalf("after uidvalidity change: got %v skipped %d, %v", rec, skipped, err)
		}
		if cp, _, _ := s.GetCheckpoint(ctx, 1); cp != (store.Checkpoint{Kind: store.KindIMAP, Epoch: 200, Last: 3}) {
			t.Errorf("got checkpoint %v", cp)
		}

		// A failing hook rolls back the message and the checkpoint.
		b3 := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 200, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 200, Last: 4},
			Messages: []store.Incoming{incoming(4, msg(4, "four@x"))}}
		boom := errors.New("boom")
		if _, _, err := s.RecordBatch(ctx, b3, func(context.Context, *store.Tx, *store.Batch, int64, store.Incoming) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("got %v, want boom", err)
		}
		if cp, _, _ := s.GetCheckpoint(ctx, 1); cp.Last != 3 {
			t.Errorf("a failed batch moved the checkpoint to %d", cp.Last)
		}
		list, err := s.ListMessages(ctx, "INBOX", 0, 10)
		if err != nil || len(list) != 3 {
			t.Fatalf("got %d messages, %v", len(list), err)
		}
		if list[0].UID != 3 || list[0].Subject != "Invoice 3" || list[0].From[0].Address != "a@example.com" {
			t.Errorf("got %+v", list[0])
		}
		page, _ := s.ListMessages(ctx, "", list[0].ID, 10)
		if len(page) != 2 {
			t.Errorf("got %d older messages, want 2", len(page))
		}
		m, err := s.GetMessage(ctx, list[0].ID)
		if err != nil || m.Text == "" {
			t.Errorf("got %+v, %v", m, err)
		}
		raw, err := s.MessageRaw(ctx, list[0].ID)
		if err != nil || string(raw) != msg(3, "three@x") {
			t.Errorf("got %q, %v", raw, err)
		}
	})
}

func TestRecordStoresOddMessages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		raw := "Subject: nul \x00 byte\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--x--\r\n"
		b := store.Batch{IMAPID: 2, IMAPName: "odd", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2},
			Messages: []store.Incoming{incoming(1, raw), incoming(2, "\xff\xfe garbage")}}
		rec, _, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 2 {
			t.Fatalf("got %v, %v", rec, err)
		}
		m, err := s.GetMessage(ctx, rec[0].ID)
		if err != nil || len(m.Attachments) != 1 || m.Attachments[0].Filename != "a.pdf" {
			t.Fatalf("got %+v, %v", m, err)
		}
		a, content, err := s.AttachmentContent(ctx, rec[0].ID, 0)
		if err != nil || string(content) != "%PDF-" || a.ContentType != "application/pdf" {
			t.Errorf("got %+v %q %v", a, content, err)
		}
		bad, err := s.GetMessage(ctx, rec[1].ID)
		if err != nil || bad.ParseError == "" {
			t.Errorf("got %+v, %v, want a parse error recorded", bad, err)
		}
	})
}

func TestListFollowsRenames(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := sampleIMAP("before")
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		hook := func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
			_, err := tx.CreateRun(ctx, &store.Run{FlowID: 1, FlowName: "f", MessageID: id, IMAPName: b.IMAPName})
			return err
		}
		if _, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 1},
			Messages: []store.Incoming{incoming(1, msg(1, "a@x"))}}, hook); err != nil {
			t.Fatal(err)
		}
		c.Name = "after"
		if err := s.UpdateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"before", "AFTER"} {
			ms, err := s.ListMessages(ctx, name, 0, 10)
			if err != nil || len(ms) != 1 {
				t.Errorf("messages of %s: got %d, %v", name, len(ms), err)
			}
			ts, err := s.ReceivedTimes(ctx, name, 10)
			if err != nil || len(ts) != 1 || time.Since(ts[0]) > time.Minute {
				t.Errorf("received times of %s: got %v, %v", name, ts, err)
			}
			rs, err := s.ListRuns(ctx, store.RunFilter{IMAP: name}, 0, 10)
			if err != nil || len(rs) != 1 {
				t.Errorf("runs of %s: got %d, %v", name, len(rs), err)
			}
		}
		if ms, _ := s.ListMessages(ctx, "other", 0, 10); len(ms) != 0 {
			t.Errorf("got %d messages for another name", len(ms))
		}
	})
}

// TestBatchWithoutCheckpoint: a batch without a checkpoint (a first
// connect's backlog) records its messages under its epoch and leaves the
// mailbox without a checkpoint.
func TestBatchWithoutCheckpoint(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 9, IMAPName: "inbox", Epoch: 5,
			Messages: []store.Incoming{incoming(3, msg(3, "k3@x"))}}
		if rec, _, err := s.RecordBatch(ctx, b, nil); err != nil || len(rec) != 1 {
			t.Fatalf("got %v, %v", rec, err)
		}
		if _, ok, err := s.GetCheckpoint(ctx, 9); ok || err != nil {
			t.Errorf("got a checkpoint (%v, %v), want none", ok, err)
		}
		if rec, skipped, err := s.RecordBatch(ctx, b, nil); err != nil || len(rec) != 0 || skipped != 1 {
			t.Errorf("again: got %v skipped %d, %v", rec, skipped, err)
		}
	})
}

func TestMessageSubjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := store.Batch{IMAPID: 3, IMAPName: "subjects", Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2},
			Messages: []store.Incoming{incoming(1, msg(1, "s1@x")), incoming(2, msg(2, "s2@x"))}}
		rec, _, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != 2 {
			t.Fatalf("got %v, %v", rec, err)
		}
		got, err := s.MessageSubjects(ctx, []int64{rec[0].ID, rec[1].ID, 999999})
		if err != nil || len(got) != 2 || got[rec[0].ID] != "Invoice 1" || got[rec[1].ID] != "Invoice 2" {
			t.Errorf("got %v, %v", got, err)
		}
		if got, err := s.MessageSubjects(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("no ids: got %v, %v", got, err)
		}
	})
}
