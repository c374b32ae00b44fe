package store_test

import (
	"context"
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
