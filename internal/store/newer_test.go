package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// TestNewerDatabaseRefused: a database that a newer release migrated past
// the migrations this binary embeds is refused at open, saying which
// version it has and which this binary knows, and is left as it was.
func TestNewerDatabaseRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
			if d == store.Postgres {
				o.DatabaseURL = testenv.PostgresURL(t)
			}
			s, err := store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			db := store.DB(s)
			var known int64
			if err := db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version`).Scan(&known); err != nil {
				t.Fatal(err)
			}
			// What a newer release's migration would have recorded.
			newer := known + 1
			if _, err := db.ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, newer); err != nil {
				t.Fatal(err)
			}
			s.Close()

			s, err = store.Open(ctx, o)
			if err == nil {
				s.Close()
				t.Fatalf("opening a database at schema version %d with a binary that knows %d: no error", newer, known)
			}
			want := fmt.Sprintf("database schema version %d is newer than this mailtrigger knows (%d)", newer, known)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got %q, want it to say %q", err, want)
			}
		})
	}
}
