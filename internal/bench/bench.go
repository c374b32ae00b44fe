// Package bench is cmd/mailtrigger-bench: it measures the real service (the
// mailtrigger binary running "serve" as a child process) against a private
// Dovecot, an in-process IMAP server for many mailboxes, and a local webhook
// listener, and sets every figure beside a floor measured in the same run:
//
//  1. trigger latency vs a bare IDLE client;
//  2. backlog ingest vs a bare UID FETCH 1:* BODY.PEEK[];
//  3. many mailboxes in IDLE: memory and CPU at rest, latency under load;
//  4. delivery rate of queued runs, on SQLite and on PostgreSQL;
//  5. peak RSS growth while one big message is recorded, and four at once;
//  6. delivery to endpoints that hold each answer (as remote ones do);
//  7. an endpoint answering 503 with Retry-After to some requests;
//  8. fairness: a slow endpoint beside a fast one.
//
// Sizes come from Options; everything listens on loopback only.
package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/testenv"
)

// Scenario names, as the -only flag takes them.
const (
	ScenarioLatency  = "latency"
	ScenarioBacklog  = "backlog"
	ScenarioIdle     = "idle"
	ScenarioDelivery = "delivery"
	ScenarioBig      = "big"
	// Issue 13: delivery that keeps pace with real endpoints.
	ScenarioRemote     = "remote"
	ScenarioRetryAfter = "retryafter"
	ScenarioFairness   = "fairness"
)

// Scenarios are all scenarios in the order they run.
var Scenarios = []string{ScenarioLatency, ScenarioBacklog, ScenarioIdle, ScenarioDelivery, ScenarioBig,
	ScenarioRemote, ScenarioRetryAfter, ScenarioFairness}

// Options are the sizes and surroundings of a bench run.
type Options struct {
	// Binary is the mailtrigger binary run as the service.
	Binary string
	// Postgres, when set, also runs the backlog and delivery scenarios on
	// PostgreSQL: "private" starts a private server (the test helpers'),
	// else it is the postgres:// URL of a server whose user may create
	// databases (each service gets a fresh one, dropped afterwards).
	Postgres string
	// Only lists the scenarios to run; empty: all.
	Only []string

	LatencyMessages int             // scenario 1: messages appended one at a time
	GapMin, GapMax  time.Duration   // scenario 1: random gap between appends
	BacklogMessages int             // scenario 2: messages in the mailbox before it is watched
	Mailboxes       int             // scenario 3: mailboxes in IDLE
	Rest            time.Duration   // scenario 3: how long CPU is measured at rest
	Probes          int             // scenario 3: messages to random mailboxes under load
	Runs            int             // scenario 4: runs queued
	BigSize         int64           // scenario 5: the big message's size (stored whole when at most the size cap)
	Delays          []time.Duration // scenario 6: how long the endpoint holds each answer
	RemoteRuns      []int           // scenario 6: runs queued, each size at each delay
	RetryRuns       int             // scenario 7: runs queued
	FairRuns        int             // scenario 8: runs queued for each of the two endpoints
	SlowDelay       time.Duration   // scenario 8: how long the slow endpoint holds each answer
	FairRepeat      int             // scenario 8: how many times alone and beside are measured (medians reported)

	// BacklogAfter is scenario 2's afterProcessing (none, seen, delete,
	// move; "" is none) and BacklogServer its server type (imaps, pop3s;
	// "" is imaps): delete against none measures the durability step
	// before mail is removed from the server.
	BacklogAfter  string
	BacklogServer string
	// BacklogRTT, when set, puts a round trip of that length between
	// scenario 2's clients (the service and the floor's) and Dovecot: a
	// mail server across a network.
	BacklogRTT time.Duration
	// PostgresRTT, when set, puts a round trip of that length between
	// the services and PostgreSQL (a database server on another host, as
	// replicas scaling out have); the bench's own queries go direct.
	PostgresRTT time.Duration

	// MemoryLimit, when set, is every service's MAILTRIGGER_MEMORY_LIMIT
	// (its soft memory limit, such as 400MiB); "" leaves it unset.
	MemoryLimit string

	// ProfileDir, when set, keeps CPU and heap profiles of each scenario's
	// service there (for example backlog-sqlite-cpu.pprof).
	ProfileDir string
	// WorkDir holds the services' data; "" is a new temporary directory.
	WorkDir string
	// Log gets progress lines; nil discards them.
	Log io.Writer
}

// FullOptions are the sizes.
func FullOptions() Options {
	return Options{LatencyMessages: 500, GapMin: 20 * time.Millisecond, GapMax: 200 * time.Millisecond,
		BacklogMessages: 10000, Mailboxes: 10000, Rest: 30 * time.Second, Probes: 20, Runs: 20000, BigSize: 50 << 20,
		Delays: []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}, RemoteRuns: []int{1000, 10000},
		RetryRuns: 300, FairRuns: 1000, SlowDelay: 5 * time.Second, FairRepeat: 3}
}

// Result is one measured figure beside its floor and goal.
type Result struct {
	Scenario string
	Database string // "sqlite", "postgres", or "" where it does not matter
	Metric   string
	Value    string
	Floor    string // the same measured without mailtrigger, "" where none applies
	Goal     string
	Met      *bool // nil where there is no goal for this line
	Note     string
}

// Report is what a run measured.
type Report struct {
	Options  Options
	Started  time.Time
	Duration time.Duration
	Results  []Result
	Machine  Machine
	// Errors are the scenarios that broke, with why.
	Errors []string
}

// env is what the scenarios share.
type env struct {
	o       Options
	work    string
	dovecot *testenv.Dovecot
	hooks   *hooks
	dbs     []database
	log     func(format string, args ...any)
	rep     *Report
}

// Run runs the scenarios and returns what they measured. A scenario that
// breaks is recorded in Report.Errors and the others still run; the error
// returned is for what stopped the whole run.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Binary == "" {
		return nil, errors.New("bench: no mailtrigger binary to run")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	rep := &Report{Options: o, Started: time.Now(), Machine: describeMachine(o.Binary)}
	e := &env{o: o, rep: rep, dbs: []database{{name: "sqlite"}},
		log: func(format string, args ...any) {
			fmt.Fprintf(o.Log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
		}}
	var cleanups []func() error
	defer func() {
		for _, c := range slices.Backward(cleanups) {
			if err := c(); err != nil {
				e.log("cleaning up: %v", err)
			}
		}
	}()

	e.work = o.WorkDir
	if e.work == "" {
		dir, err := os.MkdirTemp("", "mailtrigger-bench-")
		if err != nil {
			return nil, fmt.Errorf("creating the work directory: %w", err)
		}
		e.work = dir
		cleanups = append(cleanups, func() error { return os.RemoveAll(dir) })
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the profile directory: %w", err)
		}
	}
	if err := raiseFileLimit(o.Mailboxes); err != nil {
		return nil, err
	}

	want := func(s string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, s) }
	if want(ScenarioLatency) || want(ScenarioBacklog) || want(ScenarioBig) {
		e.log("starting a private dovecot")
		d, err := testenv.NewDovecot()
		if err != nil {
			return nil, fmt.Errorf("starting dovecot: %w", err)
		}
		e.dovecot = d
		cleanups = append(cleanups, d.Close)
	}
	if o.Postgres != "" && (want(ScenarioBacklog) || want(ScenarioDelivery) || want(ScenarioRemote) ||
		want(ScenarioRetryAfter) || want(ScenarioFairness)) {
		admin := o.Postgres
		if admin == "private" {
			e.log("starting a private postgresql")
			u, stop, err := testenv.NewPostgres()
			if err != nil {
				return nil, fmt.Errorf("starting postgres: %w", err)
			}
			admin = u
			cleanups = append(cleanups, stop)
		}
		db := database{name: "postgres", adminURL: admin}
		if o.PostgresRTT > 0 {
			u, err := url.Parse(admin)
			if err != nil {
				return nil, fmt.Errorf("parsing the postgres url: %w", err)
			}
			dp, err := newDelayProxy("127.0.0.1", u.Host, o.PostgresRTT)
			if err != nil {
				return nil, err
			}
			cleanups = append(cleanups, dp.close)
			db.proxy, db.rtt = net.JoinHostPort("127.0.0.1", strconv.Itoa(dp.port())), o.PostgresRTT
		}
		e.dbs = append(e.dbs, db)
	}
	h, err := newHooks()
	if err != nil {
		return nil, err
	}
	e.hooks = h
	cleanups = append(cleanups, h.close)

	for _, sc := range []struct {
		name string
		run  func(context.Context, *env) error
	}{
		{ScenarioLatency, latency},
		{ScenarioBacklog, backlog},
		{ScenarioIdle, idle},
		{ScenarioDelivery, delivery},
		{ScenarioBig, big},
		{ScenarioRemote, remote},
		{ScenarioRetryAfter, retryAfter},
		{ScenarioFairness, fairness},
	} {
		if !want(sc.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		e.log("scenario %s", sc.name)
		start := time.Now()
		err := sc.run(ctx, e)
		if n := e.hooks.badRequests(); err == nil && n > 0 {
			err = fmt.Errorf("%d webhook requests were not signed deliveries", n)
		}
		if err != nil {
			e.log("scenario %s failed: %v", sc.name, err)
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", sc.name, err))
		}
		e.log("scenario %s took %v", sc.name, time.Since(start).Round(time.Millisecond))
	}
	rep.Duration = time.Since(rep.Started)
	return rep, nil
}

// add records a result.
func (e *env) add(r Result) {
	e.rep.Results = append(e.rep.Results, r)
	e.log("  %s %s %s: %s (floor %s, goal %s)", r.Scenario, r.Database, r.Metric, r.Value, orDash(r.Floor), orDash(r.Goal))
	if r.Note != "" {
		e.log("    %s", r.Note)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func met(ok bool) *bool { return &ok }

// profileFlags are serve's flags that keep CPU and heap profiles of the
// service of scenario name on db, when Options.ProfileDir is set.
func (e *env) profileFlags(name string, db database) []string {
	if e.o.ProfileDir == "" {
		return nil
	}
	base := filepath.Join(e.o.ProfileDir, name+"-"+db.name)
	return []string{"-cpuprofile", base + "-cpu.pprof", "-memprofile", base + "-mem.pprof"}
}

// startService starts a fresh service on db for scenario name, with serve's
// extra flags.
func (e *env) startService(ctx context.Context, name string, db database, flags ...string) (*service, error) {
	flags = append(e.profileFlags(name, db), flags...)
	if e.o.MemoryLimit != "" {
		flags = append(flags, "-memory-limit", e.o.MemoryLimit)
	}
	s, err := newService(ctx, e.o.Binary, e.work, db, flags...)
	if err != nil {
		return nil, err
	}
	// Started twice: the first start creates the admin user, hashing its
	// password with argon2id (64 MB), which would stay in the RSS and the
	// profiles; a service that has run before starts without it.
	for _, step := range []func(context.Context) error{s.start, func(context.Context) error { return s.stop() }, s.start} {
		if err := step(ctx); err != nil {
			return nil, errors.Join(err, s.close())
		}
	}
	return s, nil
}

// waitCount polls query (a COUNT) on db every interval until it reaches n,
// at most within, and returns when it did.
func waitCount(ctx context.Context, db *sql.DB, query string, n int, interval, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	var got int
	for {
		if err := db.QueryRowContext(ctx, query).Scan(&got); err != nil {
			return time.Time{}, fmt.Errorf("counting (%s): %w", query, err)
		}
		if got >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("waiting for %d (%s): %d within %v: %w", n, query, got, within, errTimeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// percentile returns the p-th percentile (0–100) of sorted ds, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string {
	return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
}

// sorted returns a sorted copy of ds.
func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// quantiles formats p50/p95/p99/max of ds.
func quantiles(ds []time.Duration) string {
	s := sorted(ds)
	return strings.Join([]string{"p50 " + ms(percentile(s, 50)), "p95 " + ms(percentile(s, 95)),
		"p99 " + ms(percentile(s, 99)), "max " + ms(percentile(s, 100))}, ", ")
}
