package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// TestPostgresStatisticsFollowABacklog: on PostgreSQL, once 500 messages
// are recorded the messages and runs tables are analysed, so that the
// planner knows their size within seconds rather than at autovacuum's next
// look (up to a minute away, when a backlog takes seconds).
func TestPostgresStatisticsFollowABacklog(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	db := store.DB(s)
	next, hook := benchSetup(t, s, "stats", 100)
	for range 6 {
		if _, _, err := s.RecordBatch(ctx, next(), hook); err != nil {
			t.Fatal(err)
		}
	}
	err := testwait.UntilErr(10*time.Second, func() error {
		for _, table := range []string{"messages", "runs"} {
			var rows float64
			if err := db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", table).Scan(&rows); err != nil {
				return err
			}
			if rows < 500 {
				return fmt.Errorf("the planner believes %s holds %.0f rows, with 600 in it", table, rows)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
