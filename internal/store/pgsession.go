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

// setIdleSQL sets idle_in_transaction_session_timeout ($1, milliseconds) for
// the transaction it is sent in (set_config's is_local), for the two that
// legitimately wait in the middle: an ingest batch waiting for the one
// before it to commit (RecordBatch's Await), and a sign-in's renewal,
// holding its grant's row while the provider answers (RenewOAuthGrant).
const setIdleSQL = `SELECT set_config('idle_in_transaction_session_timeout', $1, true)`

// renewIdle is how long a sign-in's renewal may hold its transaction idle
// while the provider answers: well over the token request's own timeout
// (oauthflow.RequestTimeout, 30 s).
const renewIdle = 2 * time.Minute

// idleMillis is d as set_config takes it.
func idleMillis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

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
// when it wakes, finds its session gone and its lease fenced. Two kinds of
// transaction wait in the middle by design and set a longer limit for
// themselves (setIdleSQL).
func openPostgres(url string, idle time.Duration) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// Not err: its text may repeat the URL, password included (a
		// url.Error does).
		return nil, errors.New("the database URL does not parse; it should read " +
			"postgres://user:password@host:5432/database (it is not repeated here: it may hold a password)")
	}
	const param = "idle_in_transaction_session_timeout"
	if _, ok := cfg.RuntimeParams[param]; !ok {
		cfg.RuntimeParams[param] = idleMillis(idle)
	}
	return stdlib.OpenDB(*cfg), nil
}
