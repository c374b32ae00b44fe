package store

// The settings of the store's PostgreSQL sessions.

import (
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultIdleInTransaction is Options.IdleInTransaction's default.
const DefaultIdleInTransaction = 5 * time.Second

// openPostgres opens a pool of sessions to url whose server ends a session
// left idle inside a transaction for longer than idle
// (idle_in_transaction_session_timeout), unless url sets that itself.
//
// The store's transactions send their statements one after the other
// without waiting in between, so a session idle in one is a replica that
// froze in the middle: stopped, its VM paused, its process hung. Its
// session stays open (the kernel still answers for it) and keeps its
// locks: the FOR KEY SHARE of its mailbox's lease row, taken by every
// ingest transaction's fence, which the other replicas' takeover (FOR
// UPDATE SKIP LOCKED) then skips for as long as the freeze lasts, the
// mailbox read by nobody; and the runs it was claiming. Ended by the
// server, the session's transaction is rolled back, its locks go, and the
// lease or the runs are taken over as after a crash; the frozen replica,
// when it wakes, finds its session gone and its lease fenced.
func openPostgres(url string, idle time.Duration) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// Not err: its text may repeat the URL, password included (a
		// url.Error does).
		return nil, errors.New("the database URL does not parse; it should read " +
			"postgres://user:password@host:5432/database (it is not repeated here: it may hold a password)")
	}
	if idle <= 0 {
		idle = DefaultIdleInTransaction
	}
	const param = "idle_in_transaction_session_timeout"
	if _, ok := cfg.RuntimeParams[param]; !ok {
		cfg.RuntimeParams[param] = strconv.FormatInt(idle.Milliseconds(), 10)
	}
	return stdlib.OpenDB(*cfg), nil
}
