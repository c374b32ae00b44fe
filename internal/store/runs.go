package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Run statuses.
const (
	RunPending    = "pending"
	RunDelivering = "delivering"
	RunRetrying   = "retrying"
	RunDelivered  = "delivered"
	RunFailed     = "failed"
)

// Run is one start of a flow by one message, and the delivery job of its
// activities.
type Run struct {
	ID            int64  // internal, for ordering
	PublicID      string // "run_…": the id the API and the webhook show; the idempotency key
	FlowID        int64
	FlowName      string
	MessageID     int64
	IMAPName      string
	Seq           int // 0 for the run the message started, then 1, 2 … for forced re-triggers
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	CreatedAt     time.Time
	ReceivedAt    time.Time // when the watcher read the message
	DeliveredAt   *time.Time
	LastError     string
}

// Attempt is one delivery attempt of a run.
type Attempt struct {
	N          int
	StartedAt  time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no response came
	Error      string // empty on success
	Response   string // the first KB of the response body
}

// NewRunID returns a new public run id.
func NewRunID() string { return "run_" + strings.ToLower(rand.Text()) }

// Match is whether one flow matched one message, and why not.
type Match struct {
	FlowID   int64
	FlowName string
	Matched  bool
	Reason   string
}

// matchInsert records verdicts (replacing earlier ones).
var matchInsert = insert{table: "message_matches",
	cols: []col{{"message_id", "bigint"}, {"flow_id", "bigint"}, {"flow_name", "text"}, {"matched", "boolean"}, {"reason", "text"}},
	suffix: `ON CONFLICT (message_id, flow_id) DO UPDATE SET flow_name = excluded.flow_name, matched = excluded.matched,
		reason = excluded.reason`}

// Matches returns the verdicts recorded for message id, by flow name.
func (s *Store) Matches(ctx context.Context, messageID int64) ([]Match, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT flow_id, flow_name, matched, reason FROM message_matches WHERE message_id = $1 ORDER BY flow_name`, messageID)
	if err != nil {
		return nil, fmt.Errorf("listing matches of message %d: %w", messageID, err)
	}
	defer rows.Close()
	out := []Match{}
	for rows.Next() {
		var m Match
		if err := rows.Scan(&m.FlowID, &m.FlowName, &m.Matched, &m.Reason); err != nil {
			return nil, fmt.Errorf("listing matches of message %d: %w", messageID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// runColumnsNew are the columns of a new run (runRow).
var runColumnsNew = []col{{"public_id", "text"}, {"flow_id", "bigint"}, {"flow_name", "text"}, {"message_id", "bigint"},
	{"imap_name", "text"}, {"seq", "bigint"}, {"status", "text"}, {"attempts", "bigint"}, {"next_attempt_at", "timestamptz"},
	{"created_at", "timestamptz"}, {"received_at", "timestamptz"}, {"last_error", "text"}}

// runRow is the row of runColumnsNew that creates r.
func runRow(r *Run) []any {
	return []any{r.PublicID, r.FlowID, r.FlowName, r.MessageID, r.IMAPName, int64(r.Seq), r.Status, int64(0), r.NextAttemptAt,
		r.CreatedAt, r.ReceivedAt.UTC(), ""}
}

// runInsert creates a run, returning its id unless it exists already;
// runInsertWithID creates runs whose ids were reserved (Tx.reserveRunID).
var (
	runInsert       = insert{table: "runs", cols: runColumnsNew, suffix: "ON CONFLICT (flow_id, message_id, seq) DO NOTHING RETURNING id"}
	runInsertWithID = insert{table: "runs", cols: append([]col{{"id", "bigint"}}, runColumnsNew...), override: true,
		suffix: "ON CONFLICT (flow_id, message_id, seq) DO NOTHING"}
)

func nextRunSeq(ctx context.Context, tx *sql.Tx, flowID, messageID int64) (next int, exists bool, err error) {
	var max sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM runs WHERE flow_id = $1 AND message_id = $2`, flowID, messageID).Scan(&max); err != nil {
		return 0, false, fmt.Errorf("reading runs of flow %d for message %d: %w", flowID, messageID, err)
	}
	if !max.Valid {
		return 0, false, nil
	}
	return int(max.Int64) + 1, true, nil
}

const runColumns = `id, public_id, flow_id, flow_name, message_id, imap_name, seq, status, attempts, next_attempt_at, created_at,
	received_at, delivered_at, last_error`

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.PublicID, &r.FlowID, &r.FlowName, &r.MessageID, &r.IMAPName, &r.Seq, &r.Status, &r.Attempts,
		&r.NextAttemptAt, &r.CreatedAt, &r.ReceivedAt, &r.DeliveredAt, &r.LastError)
	return r, err
}

func collectRuns(rows *sql.Rows, err error) ([]Run, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// waitingRuns and leasedRuns are the conditions of the partial indexes
// runs_waiting and runs_leased (migration 00008), spelled as literals: a
// planner uses a partial index only for a query whose condition implies the
// index's, which a bound parameter cannot.
const (
	waitingRuns = `status IN ('` + RunPending + `', '` + RunRetrying + `')`
	leasedRuns  = `status = '` + RunDelivering + `'`
)

// recoverEvery is how often, in claim time, ClaimRuns looks for runs whose
// lease ended.
const recoverEvery = time.Second

// ClaimRuns takes up to limit runs that are due (pending or retrying with
// next_attempt_at passed, or delivering with an expired lease: a crash left
// them), marks them delivering with a lease until now+lease, and returns
// them, oldest due first. Two workers, in one process or in several
// replicas, never claim the same run at once. Runs of the flows in
// exceptFlows (their endpoint has no room now) are left in the queue, due
// as they were, for a later claim.
func (s *Store) ClaimRuns(ctx context.Context, now time.Time, limit int, lease time.Duration, exceptFlows ...int64) ([]Run, error) {
	caps := make([]FlowCap, len(exceptFlows))
	for i, id := range exceptFlows {
		caps[i] = FlowCap{FlowID: id}
	}
	return s.ClaimRunsCapped(ctx, now, limit, lease, caps)
}

// FlowCap bounds the runs of one flow a claim takes: at most Max, none
// when Max is 0.
type FlowCap struct {
	FlowID int64
	Max    int
}

// sqliteExceptFlows is the condition of a claim on SQLite that leaves out
// the flows in the JSON array $5.
const sqliteExceptFlows = " AND flow_id NOT IN (SELECT value FROM json_each($5))"

// claimSQL is ClaimRunsCapped's claim of at most $4 runs due at $3 (and
// matching where, such as " AND flow_id = $5"), leased until $2 with status
// $1.
func claimSQL(d Dialect, where string) string {
	return `UPDATE runs SET status = $1, locked_until = $2
		WHERE ` + idsClaimed(d, `SELECT id FROM runs WHERE `+waitingRuns+` AND next_attempt_at <= $3`+where+`
			ORDER BY next_attempt_at LIMIT $4`) + `
		RETURNING ` + runColumns
}

// idsClaimed is the condition "id is one of those sub selects", sub
// selecting the rows of a queue to claim. On PostgreSQL the rows are locked
// and skipped if another replica holds them, and sub is an array computed
// once: with "id IN (sub)", the planner, whose statistics of a queue
// filling up during a backlog are stale, hashed sub's ids and read the
// whole table to find them (a sequential scan per claim, 3–4 ms at 10,000
// runs and growing with the table); with "= ANY(ARRAY(sub))" each id is
// found in the primary key. SQLite looks each one up already.
func idsClaimed(d Dialect, sub string) string {
	if d == Postgres {
		return "id = ANY(ARRAY(" + sub + " FOR UPDATE SKIP LOCKED))"
	}
	return "id IN (" + sub + ")"
}

// cappedClaimSQL is ClaimRunsCapped's claim on PostgreSQL with flows
// capped, in one statement: args are its first four parameters (status,
// lease end, now, limit), as claimSQL's. Each flow capped at a Max above 0
// is claimed by a statement of its own in the WITH list, in caps' order,
// taking at most its Max and what the limit leaves after the flows before
// it took theirs (its LIMIT counts the rows they return, so PostgreSQL runs
// them first); the flows not capped then take what the limit leaves after
// all of them. The flows' rows are apart, so no row is updated twice. Two
// flows capped:
//
//	WITH c0 AS (UPDATE … flow_id = $5 … LIMIT GREATEST(0, LEAST($6, $4)) …),
//	     c1 AS (UPDATE … flow_id = $7 … LIMIT GREATEST(0, LEAST($8, $4 - (SELECT count(*) FROM c0))) …),
//	     rest AS (UPDATE … flow_id <> ALL($9) … LIMIT GREATEST(0, $4 - (SELECT count(*) FROM c0) - (SELECT count(*) FROM c1)) …)
//	SELECT … FROM c0 UNION ALL … FROM c1 UNION ALL … FROM rest
//
// $9 is the array of every flow in caps, those capped at 0 (left out)
// too.
func cappedClaimSQL(caps []FlowCap, first []any) (string, []any) {
	args := slices.Clone(first)
	part := func(where, limit string) string {
		return `UPDATE runs SET status = $1, locked_until = $2
		WHERE ` + idsClaimed(Postgres, `SELECT id FROM runs WHERE `+waitingRuns+` AND next_attempt_at <= $3`+where+`
			ORDER BY next_attempt_at LIMIT GREATEST(0, `+limit+`)`) + `
		RETURNING ` + runColumns
	}
	var with, sel []string
	flows := make([]int64, len(caps))
	taken := ""
	for i, c := range caps {
		flows[i] = c.FlowID
		if c.Max <= 0 {
			continue
		}
		args = append(args, c.FlowID, c.Max)
		name := fmt.Sprintf("c%d", len(with))
		limit := fmt.Sprintf("LEAST($%d::bigint, $4::bigint%s)", len(args), taken)
		with = append(with, name+" AS ("+part(fmt.Sprintf(" AND flow_id = $%d::bigint", len(args)-1), limit)+")")
		sel = append(sel, "SELECT "+runColumns+" FROM "+name)
		taken += " - (SELECT count(*) FROM " + name + ")"
	}
	// The flows left out as one array: the statement's text depends only
	// on how many flows are capped above 0 (at most maxCappedFlows of the
	// run worker), so pgx prepares a few statements, not one per count.
	args = append(args, flows)
	with = append(with, "rest AS ("+part(fmt.Sprintf(" AND flow_id <> ALL($%d::bigint[])", len(args)), "$4::bigint"+taken)+")")
	sel = append(sel, "SELECT "+runColumns+" FROM rest")
	return "WITH " + strings.Join(with, ",\n") + "\n" + strings.Join(sel, " UNION ALL "), args
}

// ClaimRunsCapped claims as ClaimRuns does, taking at most cap.Max runs of
// each flow in caps (none of those with Max 0): a worker takes no more of
// an endpoint's runs than the endpoint has room for, rather than handing
// the others back. The capped flows' runs are claimed first, each flow's
// oldest due first, then the other flows' runs, oldest due first.
func (s *Store) ClaimRunsCapped(ctx context.Context, now time.Time, limit int, lease time.Duration, caps []FlowCap) ([]Run, error) {
	now = now.UTC()
	args := []any{RunDelivering, now.Add(lease), now, limit}
	var out []Run
	// A lease is minutes long: looking for ended ones once a second (of
	// claim time) is enough, and spares a busy worker's claims a statement.
	last := s.recovered.Load()
	recoverLeases := now.UnixNano()-last >= int64(recoverEvery) || now.UnixNano() < last
	// Runs whose lease ran out (their worker died) are due again. Two
	// statements rather than an OR in one, so that each uses its partial
	// index: with an OR the claim scanned every run, finished ones
	// included.
	recoverSQL := `UPDATE runs SET status = CASE WHEN attempts = 0 THEN $1 ELSE $2 END,
		next_attempt_at = $3, locked_until = NULL WHERE ` + leasedRuns + ` AND locked_until < $3`
	var err error
	if s.dialect == Postgres {
		// The statements go together in one round trip: the look for
		// ended leases, and the claim, one statement however many flows
		// are capped (cappedClaimSQL), each capped flow's part sized by
		// what the parts before it took, as the claim on SQLite below.
		// (Sent as a statement per flow, each had to be sized by the caps
		// before it instead; a claim whose first capped flows had nothing
		// due could then take nothing, claim after claim, and TestScaleOut
		// delivered about one run a second: docs/benchmarks.md, session
		// 15.)
		claim, claimArgs := claimSQL(s.dialect, ""), args
		if len(caps) > 0 {
			claim, claimArgs = cappedClaimSQL(caps, args)
		}
		var stmts []heldStmt
		if recoverLeases {
			stmts = append(stmts, heldStmt{sql: recoverSQL, args: []any{RunPending, RunRetrying, now},
				what: "recovering runs whose lease ended"})
		}
		stmts = append(stmts, heldStmt{sql: claim, args: claimArgs, what: "claiming",
			scan: func(row interface{ Scan(...any) error }) error {
				r, err := scanRun(row)
				out = append(out, r)
				return err
			}})
		err = s.pipelinedWrite(ctx, stmts, nil)
	} else {
		// The flows left out go as one JSON array, so that the claim's
		// text is the same however many there are: it is prepared once
		// (ingestStatements), not per claim.
		except := ""
		if len(caps) > 0 {
			ids := make([]int64, len(caps))
			for i, c := range caps {
				ids[i] = c.FlowID
			}
			list, err := json.Marshal(ids)
			if err != nil {
				return nil, fmt.Errorf("claiming runs: %w", err)
			}
			args = append(args, string(list))
			except = sqliteExceptFlows
		}
		err = s.Write(ctx, func(tx *sql.Tx) error {
			t := &Tx{s: s, tx: tx}
			out = out[:0]
			if recoverLeases {
				if _, err := tx.ExecContext(ctx, recoverSQL, RunPending, RunRetrying, now); err != nil {
					return fmt.Errorf("recovering runs whose lease ended: %w", err)
				}
			}
			for _, c := range caps {
				n := min(c.Max, limit-len(out))
				if n <= 0 {
					continue
				}
				runs, err := collectRuns(t.query(ctx, claimSQL(s.dialect, " AND flow_id = $5"), RunDelivering, now.Add(lease), now, n, c.FlowID))
				if err != nil {
					return err
				}
				out = append(out, runs...)
			}
			if len(out) >= limit {
				return nil
			}
			args[3] = limit - len(out)
			runs, err := collectRuns(t.query(ctx, claimSQL(s.dialect, except), args...))
			out = append(out, runs...)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("claiming runs: %w", err)
	}
	if recoverLeases {
		s.recovered.Store(now.UnixNano())
	}
	// RETURNING gives no order.
	slices.SortFunc(out, func(a, b Run) int { return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// Finish is the outcome of one delivery attempt of a claimed run: the
// attempt, and the status the run moves to (delivered, failed, or retrying
// at Next).
type Finish struct {
	RunID   int64
	Attempt Attempt
	Status  string
	Next    time.Time
}

// FinishAttempt records attempt a of run id and moves the run to status
// (delivered, failed, or retrying at next), releasing its lease.
func (s *Store) FinishAttempt(ctx context.Context, id int64, a Attempt, status string, next time.Time) error {
	return s.FinishAttempts(ctx, []Finish{{RunID: id, Attempt: a, Status: status, Next: next}})
}

// FinishAttempts records several attempts (of different runs) in one
// transaction, as FinishAttempt records one: a worker finishing many
// deliveries at once commits them together.
//
// On PostgreSQL runs none of which fails are recorded by one statement
// whatever their number (finishTogether), instead of two per run: in a
// backlog the run worker finishes thousands of deliveries, and each
// statement is a round trip and the server's work of one statement.
func (s *Store) FinishAttempts(ctx context.Context, fs []Finish) error {
	t := now()
	if s.dialect == Postgres && together(fs) {
		return s.finishTogether(ctx, fs, t)
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		tt := &Tx{s: s, tx: tx}
		for _, f := range fs {
			if err := s.finishAttemptTx(ctx, tt, f, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// together says whether finishTogether may record fs: runs, each once,
// none moving to failed (which reads the run's status first, and may
// queue an alert).
func together(fs []Finish) bool {
	if len(fs) == 0 {
		return false
	}
	seen := make(map[int64]bool, len(fs))
	for _, f := range fs {
		if f.Status == RunFailed || seen[f.RunID] {
			return false
		}
		seen[f.RunID] = true
	}
	return true
}

// finishTogetherSQL updates the runs $1 (see finishTogether) and records
// their attempts, each numbered from its run's own count, in one statement.
// "r.id = ANY($1)" beside the join: the runs are found by their primary
// key, whatever the planner believes of unnest's rows.
const finishTogetherSQL = `WITH v AS (
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
			$6::timestamptz[], $7::bigint[], $8::bigint[], $9::text[])
			AS v(id, status, next, delivered, error, started, duration_ms, status_code, response)
	), u AS (
		UPDATE runs r SET attempts = r.attempts + 1, status = v.status, next_attempt_at = v.next, locked_until = NULL,
			delivered_at = COALESCE(v.delivered, r.delivered_at), last_error = v.error
		FROM v WHERE r.id = v.id AND r.id = ANY($1) RETURNING r.id, r.attempts
	)
	INSERT INTO run_attempts (run_id, n, started_at, duration_ms, status_code, error, response)
	SELECT u.id, u.attempts, v.started, v.duration_ms, v.status_code, v.error, v.response FROM u JOIN v ON v.id = u.id
	RETURNING run_id`

// finishTogether records fs (see together) on PostgreSQL as
// finishAttemptTx records each, in one statement sent with its BEGIN, and
// the COMMIT: two round trips, where a statement for the runs, one for the
// attempts and the transaction's own were four. A run that is not there
// fails the whole (the run worker then records each finish on its own, and
// the missing one fails alone), as it does one at a time.
func (s *Store) finishTogether(ctx context.Context, fs []Finish, t time.Time) error {
	ids := make([]int64, len(fs))
	statuses := make([]string, len(fs))
	nexts := make([]pgtype.Timestamptz, len(fs))
	delivered := make([]pgtype.Timestamptz, len(fs))
	errs := make([]string, len(fs))
	started := make([]pgtype.Timestamptz, len(fs))
	durations := make([]int64, len(fs))
	codes := make([]int64, len(fs))
	responses := make([]string, len(fs))
	for i, f := range fs {
		a := f.Attempt
		ids[i], statuses[i], errs[i] = f.RunID, f.Status, text(a.Error)
		nexts[i] = pgtype.Timestamptz{Time: f.Next.UTC(), Valid: true}
		if f.Status == RunDelivered {
			delivered[i] = pgtype.Timestamptz{Time: t, Valid: true}
		}
		started[i] = pgtype.Timestamptz{Time: a.StartedAt.UTC(), Valid: true}
		durations[i], codes[i] = a.Duration.Milliseconds(), int64(a.StatusCode)
		responses[i] = text(strings.ToValidUTF8(a.Response, "\uFFFD"))
	}
	recorded := 0
	return s.pipelinedWrite(ctx, []heldStmt{{
		sql:  finishTogetherSQL,
		args: []any{ids, statuses, nexts, delivered, errs, started, durations, codes, responses},
		scan: func(interface{ Scan(...any) error }) error { recorded++; return nil },
		what: fmt.Sprintf("recording the attempts of %d runs", len(fs)),
	}}, func() error {
		if recorded != len(fs) {
			return fmt.Errorf("recording the attempts of %d runs: %d of them not found", len(fs), len(fs)-recorded)
		}
		return nil
	})
}

// finishUpdate and attemptInsertOne are finishAttemptTx's statements,
// prepared once on SQLite (ingestStatements).
const (
	finishUpdate = `UPDATE runs SET attempts = attempts + 1, status = $1, next_attempt_at = $2,
		locked_until = NULL, delivered_at = COALESCE($3, delivered_at), last_error = $4 WHERE id = $5 RETURNING attempts`
	attemptInsertOne = `INSERT INTO run_attempts (run_id, n, started_at, duration_ms, status_code, error, response)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`
)

func (s *Store) finishAttemptTx(ctx context.Context, t *Tx, f Finish, at time.Time) error {
	tx := t.tx
	a := f.Attempt
	var delivered *time.Time
	if f.Status == RunDelivered {
		delivered = &at
	}
	// A run moving to failed queues run.failed in this transaction: never
	// lost, and never twice (a run failed already, recorded again by a
	// worker whose lease ran out, does not queue it again).
	wasFailed := false
	if f.Status == RunFailed {
		lock := ""
		if s.dialect == Postgres {
			lock = " FOR UPDATE"
		}
		var prev string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM runs WHERE id = $1`+lock, f.RunID).Scan(&prev); err != nil {
			return fmt.Errorf("reading run %d: %w", f.RunID, err)
		}
		wasFailed = prev == RunFailed
	}
	// Numbered from the run's own count, not by counting run_attempts:
	// Prune deletes the attempts of finished runs, and a retried run goes
	// on counting. The update also locks the row, so two workers recording
	// at once (one whose lease ran out) take turns.
	if err := t.queryRow(ctx, finishUpdate, f.Status, f.Next.UTC(), delivered, text(a.Error), f.RunID).Scan(&a.N); err != nil {
		return fmt.Errorf("updating run %d: %w", f.RunID, err)
	}
	if _, err := t.exec(ctx, attemptInsertOne, f.RunID, a.N, a.StartedAt.UTC(), a.Duration.Milliseconds(), a.StatusCode,
		text(a.Error), text(strings.ToValidUTF8(a.Response, "\uFFFD"))); err != nil {
		return fmt.Errorf("recording attempt %d of run %d: %w", a.N, f.RunID, err)
	}
	if f.Status == RunFailed && !wasFailed {
		if err := s.runFailedTx(ctx, tx, f.RunID, a, at); err != nil {
			return fmt.Errorf("queueing the alert of failed run %d: %w", f.RunID, err)
		}
	}
	return nil
}

// ReleaseRun gives back run id, claimed by ClaimRuns, without an attempt:
// it is due again at next, pending or retrying as before the claim. A
// worker does so when it cannot deliver the run now (its endpoint is busy).
func (s *Store) ReleaseRun(ctx context.Context, id int64, next time.Time) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE runs SET status = CASE WHEN attempts = 0 THEN $1 ELSE $2 END, next_attempt_at = $3,
		locked_until = NULL WHERE id = $4 AND status = $5`, RunPending, RunRetrying, next.UTC(), id, RunDelivering); err != nil {
		return fmt.Errorf("releasing run %d: %w", id, err)
	}
	return nil
}

// Release is a claimed run given back without an attempt, due again at Next.
type Release struct {
	RunID int64
	Next  time.Time
}

// ReleaseRuns gives back several claimed runs, as ReleaseRun gives back
// one, in one transaction: a worker handing back many runs for a busy
// endpoint commits them together.
func (s *Store) ReleaseRuns(ctx context.Context, rs []Release) error {
	if s.dialect == Postgres && len(rs) > 0 {
		// One statement, one round trip: at the start of a backlog,
		// when an endpoint's limit is still low, a worker hands back
		// dozens of runs at once, and an UPDATE each, 10 ms away, took
		// the finisher a second (docs/benchmarks.md, session 15).
		ids := make([]int64, len(rs))
		nexts := make([]pgtype.Timestamptz, len(rs))
		for i, r := range rs {
			ids[i], nexts[i] = r.RunID, pgtype.Timestamptz{Time: r.Next.UTC(), Valid: true}
		}
		return s.pipelinedWrite(ctx, []heldStmt{{sql: `UPDATE runs r SET status = CASE WHEN r.attempts = 0 THEN $1 ELSE $2 END,
			next_attempt_at = v.next, locked_until = NULL
			FROM unnest($3::bigint[], $4::timestamptz[]) AS v(id, next)
			WHERE r.id = v.id AND r.id = ANY($3) AND r.status = $5`, args: []any{RunPending, RunRetrying, ids, nexts, RunDelivering},
			what: fmt.Sprintf("releasing %d runs", len(rs))}}, nil)
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = CASE WHEN attempts = 0 THEN $1 ELSE $2 END, next_attempt_at = $3,
				locked_until = NULL WHERE id = $4 AND status = $5`, RunPending, RunRetrying, r.Next.UTC(), r.RunID, RunDelivering); err != nil {
				return fmt.Errorf("releasing run %d: %w", r.RunID, err)
			}
		}
		return nil
	})
}

// GetRun returns run publicID with its attempts.
func (s *Store) GetRun(ctx context.Context, publicID string) (Run, []Attempt, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE public_id = $1`, publicID))
	if errors.Is(err, sql.ErrNoRows) {
		return r, nil, fmt.Errorf("run %q: %w", publicID, ErrNotFound)
	}
	if err != nil {
		return r, nil, fmt.Errorf("reading run %s: %w", publicID, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT n, started_at, duration_ms, status_code, error, response FROM run_attempts WHERE run_id = $1 ORDER BY n`, r.ID)
	if err != nil {
		return r, nil, fmt.Errorf("reading attempts of run %s: %w", publicID, err)
	}
	defer rows.Close()
	attempts := []Attempt{}
	for rows.Next() {
		var a Attempt
		var ms int64
		if err := rows.Scan(&a.N, &a.StartedAt, &ms, &a.StatusCode, &a.Error, &a.Response); err != nil {
			return r, nil, fmt.Errorf("reading attempts of run %s: %w", publicID, err)
		}
		a.Duration = time.Duration(ms) * time.Millisecond
		attempts = append(attempts, a)
	}
	return r, attempts, rows.Err()
}

// RunFilter narrows ListRuns; empty fields do not filter.
type RunFilter struct {
	Flow, IMAP, Status string
	Since, Until       time.Time // created at or after, before
	MessageID          int64
}

// ListRuns returns up to limit runs matching f, newest first, with an
// internal id below before (0: from the newest).
func (s *Store) ListRuns(ctx context.Context, f RunFilter, before int64, limit int) ([]Run, error) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if before > 0 {
		add("id < $%d", before)
	}
	if f.Flow != "" {
		add("lower(flow_name) = $%d", lower(f.Flow))
	}
	if f.IMAP != "" {
		// Renames followed, as in ListMessages.
		add("(lower(imap_name) = $%[1]d OR message_id IN (SELECT m.id FROM messages m JOIN imap_configs i ON i.id = m.imap_id WHERE i.name_lower = $%[1]d))", lower(f.IMAP))
	}
	if f.Status != "" {
		add("status = $%d", f.Status)
	}
	if !f.Since.IsZero() {
		add("created_at >= $%d", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("created_at < $%d", f.Until.UTC())
	}
	if f.MessageID != 0 {
		add("message_id = $%d", f.MessageID)
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	out, err := collectRuns(s.r.QueryContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("listing runs: %w", err)
	}
	return out, nil
}

// RetryRun makes run publicID due now. ErrConflict when it is being
// delivered or was delivered already.
func (s *Store) RetryRun(ctx context.Context, publicID string) (Run, error) {
	var r Run
	err := s.Write(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE public_id = $1`, publicID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("run %q: %w", publicID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if r.Status == RunDelivering || r.Status == RunDelivered {
			return fmt.Errorf("run %q is %s: %w", publicID, r.Status, ErrConflict)
		}
		t := now()
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = $1, next_attempt_at = $2 WHERE id = $3`, RunPending, t, r.ID); err != nil {
			return err
		}
		r.Status, r.NextAttemptAt = RunPending, t
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("retrying run %s: %w", publicID, err)
	}
	return r, nil
}

// QueueDepth counts the runs not finished yet.
func (s *Store) QueueDepth(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM runs WHERE status IN ($1, $2, $3)`, RunPending, RunRetrying, RunDelivering).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting queued runs: %w", err)
	}
	return n, nil
}

// NextDue returns when the earliest queued run is due, ok false when none is.
func (s *Store) NextDue(ctx context.Context) (t time.Time, ok bool, err error) {
	// Not MIN(): SQLite gives an aggregate no column type, so the driver
	// would return the timestamp as text. ORDER BY … LIMIT 1 keeps the
	// column's type (and can use the runs_waiting index).
	err = s.r.QueryRowContext(ctx, `SELECT next_attempt_at FROM runs WHERE `+waitingRuns+` ORDER BY next_attempt_at LIMIT 1`).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("reading the next due run: %w", err)
	}
	return t, true, nil
}
