package store_test

import (
	"context"
	"database/sql"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestBeforeDestructive: on SQLite it fsyncs the WAL (counted); on
// PostgreSQL commits are durable already and it only checks the fence.
func TestBeforeDestructive(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for i := range 2 {
			if err := s.BeforeDestructive(ctx); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
		want := int64(2)
		if s.Dialect() == store.Postgres {
			want = 0
		}
		if got := s.Syncs(); got != want {
			t.Errorf("got %d syncs, want %d", got, want)
		}
	})
}

// BenchmarkBeforeDestructive is the cost of the durability step on SQLite:
// a small commit alone, and followed by BeforeDestructive (the fsync of the
// WAL that a batch pays before its messages are deleted or moved).
func BenchmarkBeforeDestructive(b *testing.B) {
	s := storetest.Open(b, store.SQLite)
	ctx := context.Background()
	if err := s.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE bench_sync (n INTEGER)`)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	commit := func() {
		if err := s.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO bench_sync (n) VALUES (1)`)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("commit", func(b *testing.B) {
		for b.Loop() {
			commit()
		}
	})
	b.Run("commit+sync", func(b *testing.B) {
		for b.Loop() {
			commit()
			if err := s.BeforeDestructive(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
