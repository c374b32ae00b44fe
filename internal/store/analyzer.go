package store

// Fresh planner statistics on PostgreSQL while a backlog fills the tables.

import (
	"context"
	"database/sql"
	"log/slog"
	"sync/atomic"
)

// analyzeMin is the fewest messages recorded between two ANALYZEs.
const analyzeMin = 500

// analyzer runs ANALYZE on the tables a backlog fills (messages, runs) once
// this process has recorded as many messages as half the messages table
// held at the last ANALYZE, and at least analyzeMin: on a new installation
// at 500, 750, 1,125… messages, then ever more rarely.
//
// PostgreSQL's autovacuum analyses a table once a tenth of it changed, but
// looks only once a minute (autovacuum_naptime), and a backlog of 10,000
// messages is recorded in seconds. Meanwhile the planner, believing the
// tables as small as when they were last analysed, chose sequential scans
// for statements that look rows up by id: the run worker's finishes read
// all 10,000 runs to update 20 (docs/benchmarks.md, session 12). Messages
// and runs are kept for weeks, so a table analysed once it was large stays
// about right.
type analyzer struct {
	db      *sql.DB
	log     *slog.Logger
	pending atomic.Int64 // messages recorded since the last ANALYZE began
	next    atomic.Int64 // pending at which the next one begins
	poke    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// startAnalyzer starts an analyzer on db; it sleeps until poked.
func startAnalyzer(db *sql.DB, log *slog.Logger) *analyzer {
	ctx, cancel := context.WithCancel(context.Background())
	a := &analyzer{db: db, log: log, poke: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	a.next.Store(analyzeMin)
	go a.run(ctx)
	return a
}

// recorded counts n messages recorded, waking the analyzer when they are
// enough.
func (a *analyzer) recorded(n int) {
	if a == nil || n == 0 || a.pending.Add(int64(n)) < a.next.Load() {
		return
	}
	a.pending.Store(0)
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

func (a *analyzer) run(ctx context.Context) {
	defer close(a.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.poke:
		}
		// The row counts are what was wrong; one column each keeps it
		// cheap (a whole ANALYZE took 50 ms at 10,000 messages).
		if _, err := a.db.ExecContext(ctx, "ANALYZE messages (imap_id), runs (status)"); err != nil {
			if ctx.Err() == nil {
				// A user that does not own the tables may not;
				// autovacuum still will, later.
				a.log.Warn("analysing the messages and runs tables failed", "err", err)
				a.next.Store(1 << 62)
			}
			continue
		}
		var rows float64
		if err := a.db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass").Scan(&rows); err == nil {
			a.next.Store(max(analyzeMin, int64(rows)/2))
		}
	}
}

// close stops the analyzer, waiting for an ANALYZE under way to be
// cancelled.
func (a *analyzer) close() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}
