package store_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// TestCheckpointerCopiesTheWAL: what the ingest commits reaches the SQLite
// database file by the checkpointer, once about 4 MB was written, while the
// writer's own automatic checkpoint (at 4,000 pages, 16 MB) has not come
// yet: without the checkpointer the file would stay as it was.
func TestCheckpointerCopiesTheWAL(t *testing.T) {
	s := storetest.Open(t, store.SQLite)
	next, hook := benchSetup(t, s, "ckpt", 25)
	ctx := context.Background()
	fi, err := os.Stat(s.SQLitePath())
	if err != nil {
		t.Fatal(err)
	}
	before := fi.Size()
	// 12 batches of 25 messages of about 20 KB: 6 MB, some 1,500 pages.
	for range 12 {
		if _, _, err := s.RecordBatch(ctx, next(), hook); err != nil {
			t.Fatal(err)
		}
	}
	err = testwait.UntilErr(10*time.Second, func() error {
		fi, err := os.Stat(s.SQLitePath())
		if err != nil {
			return err
		}
		if fi.Size() < before+4<<20 {
			return fmt.Errorf("database file %d bytes (%d before 6 MB were recorded), want 4 MB more: the WAL was not checkpointed", fi.Size(), before)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
