package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestLookupReadsIndexNotEpoch: the lookup at the start of every ingest
// transaction (which of a batch's UIDs are recorded already) reads a few
// index pages per UID on PostgreSQL, not every message of the epoch. With
// the statistics of a table that filled up since the last ANALYZE (a
// backlog) the planner used to scan the epoch's messages for each batch:
// 1,100 buffers at 5,000 messages, growing with the mailbox.
func TestLookupReadsIndexNotEpoch(t *testing.T) {
	s := storetest.Open(t, store.Postgres)
	next, hook := benchSetup(t, s, "lookup", 25)
	ctx := context.Background()
	var last store.Batch
	for range 200 {
		last = next()
		if _, _, err := s.RecordBatch(ctx, last, hook); err != nil {
			t.Fatal(err)
		}
	}
	keys, uids := []string{}, []int64{}
	for _, m := range last.Messages {
		keys = append(keys, m.Msg.DedupeKey())
		uids = append(uids, int64(m.UID))
	}
	var plan string
	err := store.DB(s).QueryRowContext(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+store.LookupSQL(store.Postgres),
		last.IMAPID, []string{}, keys, int64(last.Epoch), uids, 0).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	var p []struct {
		Plan struct {
			Rows    int64 `json:"Actual Rows"`
			Buffers int64 `json:"Shared Hit Blocks"`
			Read    int64 `json:"Shared Read Blocks"`
		}
	}
	if err := json.Unmarshal([]byte(plan), &p); err != nil || len(p) != 1 {
		t.Fatalf("reading the plan %s: %v", plan, err)
	}
	// 25 dedupe keys, 25 recorded UIDs, the highest UID of epoch 0, no
	// id reserved.
	if got := p[0].Plan.Rows; got != 51 {
		t.Errorf("lookup returned %d rows, want 51", got)
	}
	if got := p[0].Plan.Buffers + p[0].Plan.Read; got > 400 {
		t.Errorf("lookup of 25 messages read %d buffers among 5,000 recorded, want at most 400:\n%s", got, plan)
	}
}
