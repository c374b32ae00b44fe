package store

// Checkpointing SQLite's write-ahead log off the writer's connection.

import (
	"context"
	"database/sql"
	"log/slog"
	"sync/atomic"
	"time"
)

const (
	// walAutoPages is the writer connection's wal_autocheckpoint: the
	// WAL pages after which a commit checkpoints itself (SQLite's default
	// is 1000). With the checkpointer doing the copying, the writer's own
	// checkpoint finds most frames copied already; it stays, as the one
	// that can start the WAL over (see walCheckpointer).
	walAutoPages = 4000
	// walCheckpointBytes is about how much is committed between two
	// checkpoints of the checkpointer: SQLite's default of 1000 pages.
	walCheckpointBytes = 1000 * 4096
	// commitBytes is what a commit is counted for besides the messages it
	// records: a few pages of rows and index entries.
	commitBytes = 4 * 4096
)

// walCheckpointer copies the WAL into the database file on a connection of
// its own (PRAGMA wal_checkpoint(PASSIVE), which waits for neither the
// writer nor readers), so that the one writer connection mostly does not.
// SQLite's automatic checkpoint runs inside the commit that grows the WAL
// past wal_autocheckpoint pages, holding the writer (an ingest batch, the
// run worker's claims and finishes) while it copies and fsyncs: in the
// bench's backlog that was 1.1 s of the 3.2 s the ingest transactions took
// (docs/benchmarks.md, session 10).
//
// Commits count what they wrote (wrote); past walCheckpointBytes the
// checkpointer wakes and checkpoints. At rest it sleeps. A checkpoint that
// runs while commits go on cannot start the WAL over (the file would grow
// with a backlog); the writer's own automatic checkpoint, kept at
// walAutoPages, runs right after its commit, finds nothing newer, and so
// lets the next transaction start it over.
type walCheckpointer struct {
	db      *sql.DB
	log     *slog.Logger
	pending atomic.Int64
	poke    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// startCheckpointer starts a checkpointer on db, a connection pool of its
// own on the database.
func startCheckpointer(db *sql.DB, log *slog.Logger) *walCheckpointer {
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithCancel(context.Background())
	c := &walCheckpointer{db: db, log: log, poke: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

// wrote counts n bytes committed, waking the checkpointer past
// walCheckpointBytes.
func (c *walCheckpointer) wrote(n int64) {
	if c == nil {
		return
	}
	if c.pending.Add(n+commitBytes) >= walCheckpointBytes {
		c.pending.Store(0)
		select {
		case c.poke <- struct{}{}:
		default:
		}
	}
}

func (c *walCheckpointer) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.poke:
		}
		var busy, frames, copied int64
		err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("checkpointing the sqlite write-ahead log failed", "err", err)
			// Not again at once: the writer's own checkpoints go on.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// close stops the checkpointer and closes its connection.
func (c *walCheckpointer) close() error {
	if c == nil {
		return nil
	}
	c.cancel()
	<-c.done
	return c.db.Close()
}
