package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// corpusBatch returns the golden test's corpus of messages, parsed as ingest
// parses them, numbered from UID 1.
func corpusBatch(t *testing.T) []store.Incoming {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "golden", "testdata", "messages", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	sort.Strings(files)
	var out []store.Incoming
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, store.Incoming{UID: uint32(i + 1), Raw: raw, Msg: mail.Parse(raw), Seen: time.Now()})
	}
	return out
}

// record records msgs in batches of 50 with runHook, returning their ids.
func recordAll(t *testing.T, s *store.Store, msgs []store.Incoming, hook store.RecordHook) []int64 {
	t.Helper()
	var ids []int64
	for start := 0; start < len(msgs); start += 50 {
		b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1, Messages: msgs[start:min(start+50, len(msgs))]}
		rec, _, err := s.RecordBatch(context.Background(), b, hook)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rec {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) != len(msgs) {
		t.Fatalf("recorded %d of %d messages", len(ids), len(msgs))
	}
	return ids
}

// TestGetMessagesKeptBodies: the bodies the run worker reads right after
// ingest, kept from the parse, are those decoded from the raw message, for
// every message of the golden corpus, read once or twice.
func TestGetMessagesKeptBodies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		msgs := corpusBatch(t)
		ids := recordAll(t, s, msgs, runHook)
		laidOut := 0
		for _, m := range msgs {
			if m.Msg.Layout != nil {
				laidOut++
			}
		}
		if got := store.KeptBodies(s); got != laidOut || got == 0 {
			t.Fatalf("%d messages' bodies kept, want %d (those stored once)", got, laidOut)
		}
		kept, err := s.GetMessages(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if got := store.KeptBodies(s); got != laidOut {
			t.Fatalf("%d messages' bodies kept after they were read, want %d: a run handed back reads them again", got, laidOut)
		}
		again, err := s.GetMessages(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		store.ForgetBodies(s)
		decoded, err := s.GetMessages(ctx, ids) // nothing kept now: decoded from raw
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if !reflect.DeepEqual(kept[id], decoded[id]) || !reflect.DeepEqual(again[id], decoded[id]) {
				t.Errorf("message %d (uid %d): kept %+v, decoded %+v", id, i+1, kept[id], decoded[id])
			}
			one, err := s.GetMessage(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if one.Text != kept[id].Text || one.HTML != kept[id].HTML {
				t.Errorf("message %d: GetMessage and GetMessages disagree", id)
			}
		}
	})
}

// TestKeptBodiesOnlyForRuns: bodies are kept only for messages a run was
// created for, and never outlive Prune.
func TestKeptBodiesOnlyForRuns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		msgs := corpusBatch(t)[:20]
		recordAll(t, s, msgs[:10], nil)
		if got := store.KeptBodies(s); got != 0 {
			t.Fatalf("%d messages' bodies kept without runs", got)
		}
		ids := recordAll(t, s, msgs[10:], runHook)
		if store.KeptBodies(s) == 0 {
			t.Fatal("no bodies kept for the messages with runs")
		}
		if _, err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := store.KeptBodies(s); got != 0 {
			t.Fatalf("%d messages' bodies kept after Prune", got)
		}
		got, err := s.GetMessages(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if got[id].Text != "" || got[id].HTML != "" {
				t.Errorf("message %d: bodies %q, %q after Prune", id, got[id].Text, got[id].HTML)
			}
		}
	})
}

// TestKeptBodiesBounded: the oldest bodies go once the cache is over its
// bytes, and all of them once they expire.
func TestKeptBodiesBounded(t *testing.T) {
	s := storetest.Open(t, storetest.Dialects[0])
	msgs := corpusBatch(t)
	laidOut := 0
	for _, m := range msgs {
		if m.Msg.Layout != nil {
			laidOut++
		}
	}
	restore := store.SetBodiesLimits(8<<10, time.Hour)
	defer restore()
	recordAll(t, s, msgs, runHook)
	if n := store.KeptBodies(s); n == 0 || n >= laidOut {
		t.Fatalf("%d of %d messages' bodies kept within 8 KiB", n, laidOut)
	}
	// Expired, they go without another read or write.
	store.SetBodiesLimits(8<<10, 50*time.Millisecond)
	store.ForgetBodies(s)
	recordAll(t, s, []store.Incoming{{UID: 9999, Raw: msgs[0].Raw, Msg: mail.Parse(msgs[0].Raw), Seen: time.Now()}}, runHook)
	if n := store.KeptBodies(s); n != 1 {
		t.Fatalf("%d messages' bodies kept, want 1", n)
	}
	testwait.Until(t, 10*time.Second, func() error {
		if n := store.KeptBodies(s); n != 0 {
			return fmt.Errorf("%d messages' bodies kept past their time", n)
		}
		return nil
	})
}

// TestKeptBodiesOfAnother: bodies kept under a message's id for another
// message (an id SQLite handed out again after a rollback) are not served.
func TestKeptBodiesOfAnother(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		msgs := corpusBatch(t)[:5]
		ids := recordAll(t, s, msgs, nil)
		for _, id := range ids {
			store.KeepBodiesOfAnother(s, id, "not this message's")
		}
		got, err := s.GetMessages(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			want, err := s.GetMessage(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[id], want) {
				t.Errorf("message %d: got %+v, want %+v", id, got[id], want)
			}
		}
	})
}
