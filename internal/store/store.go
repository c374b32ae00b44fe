// Package store keeps everything mailtrigger knows in SQLite (embedded, the
// default) or PostgreSQL (scale-out). All SQL lives here; one SQL text with $N
// placeholders serves both databases wherever they agree.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"mailtrigger/internal/datadir"
	"mailtrigger/internal/secret"
)

// Errors that callers tell apart.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Dialect names the database in use.
type Dialect string

// The supported databases.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// SQLiteFileName is the database file in the data directory.
const SQLiteFileName = "mailtrigger.db"

// sqliteFiles are the database file and the files SQLite keeps beside it.
var sqliteFiles = []string{SQLiteFileName, SQLiteFileName + "-wal", SQLiteFileName + "-shm", SQLiteFileName + "-journal"}

//go:embed migrations
var migrations embed.FS

// Options say which database to open.
type Options struct {
	DatabaseURL string // postgres://… selects PostgreSQL; empty means SQLite in DataDir
	DataDir     string
	Box         *secret.Box // seals and opens secrets
	Logger      *slog.Logger
	// IdleInTransaction (PostgreSQL) is how long the server lets one of
	// the store's sessions sit idle inside a transaction before it ends
	// the session and so releases its locks; 0 for DefaultIdleInTransaction.
	// See openPostgres.
	IdleInTransaction time.Duration
	// Synced, when set, is called each time BeforeDestructive made the
	// commits durable; an error it returns fails BeforeDestructive. Tests
	// look at the mail server from it (nothing deleted yet) and inject a
	// failing disk.
	Synced func() error

	upTo int64 // when set, the migrations up to this version only (tests)
}

// Store is the database. It is safe for concurrent use.
type Store struct {
	dialect Dialect
	w       *sql.DB // writes and transactions; one connection on SQLite
	r       *sql.DB // reads; the same pool as w on PostgreSQL
	box     *secret.Box
	log     *slog.Logger
	target  int64 // the newest migration version embedded
	prov    *goose.Provider
	path    string // the SQLite file, for tests
	// idleInTx is how long a PostgreSQL session may sit idle inside a
	// transaction (Options.IdleInTransaction).
	idleInTx time.Duration
	// idSequences says whether the schema has id_sequences (neverReused):
	// false only in tests that stop the migrations below it.
	idSequences bool
	// recovered is the claim time (Unix nanoseconds) at which ClaimRuns
	// last looked for runs whose lease ended.
	recovered atomic.Int64
	syncs     atomic.Int64 // see Syncs
	dirSynced atomic.Bool  // the data directory was fsynced once
	synced    func() error
	// stopConversion stops the background conversion of old messages
	// (startConversion) and waits for it.
	stopConversion func()
	// prepared are the ingest path's statements, prepared once on the
	// SQLite writer's connection (prepareIngest), by their SQL.
	prepared map[string]*sql.Stmt
	// renewing takes turns among the renewals of one grant in this
	// process (RenewOAuthGrant).
	renewing grantLocks
	// bodies keeps the bodies of messages recorded lately for the run
	// worker (see bodyCache).
	bodies bodyCache
	// ckpt checkpoints SQLite's write-ahead log off the writer's
	// connection; nil on PostgreSQL.
	ckpt *walCheckpointer
	// stats keeps PostgreSQL's planner statistics fresh while a backlog
	// is recorded; nil on SQLite.
	stats *analyzer
}

// Open opens the database and applies the embedded migrations.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Box == nil {
		return nil, errors.New("opening store: no secret box")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{box: o.Box, log: o.Logger, synced: o.Synced}
	var err error
	if o.DatabaseURL != "" {
		s.dialect = Postgres
		s.idleInTx = o.IdleInTransaction
		if s.idleInTx <= 0 {
			s.idleInTx = DefaultIdleInTransaction
		}
		if s.w, err = openPostgres(o.DatabaseURL, s.idleInTx); err != nil {
			return nil, fmt.Errorf("opening postgresql: %w", err)
		}
		s.w.SetMaxOpenConns(20)
		s.w.SetMaxIdleConns(10)
		s.w.SetConnMaxIdleTime(5 * time.Minute)
		s.r = s.w
		s.stats = startAnalyzer(s.w, s.log)
	} else {
		s.dialect = SQLite
		// The directory 0700 and the database files 0600, fixed at every
		// start. The database file is created here, 0600: SQLite gives the
		// -wal and -shm files it creates later the database file's mode.
		if err := datadir.Secure(o.DataDir, o.Logger, sqliteFiles...); err != nil {
			return nil, err
		}
		s.path = filepath.Join(o.DataDir, SQLiteFileName)
		if err := datadir.CreateFile(s.path); err != nil {
			return nil, err
		}
		dsn := "file:" + (&url.URL{Path: s.path}).EscapedPath() +
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
			"&_pragma=synchronous(NORMAL)&_time_format=sqlite"
		s.w, err = sql.Open("sqlite", dsn+"&_txlock=immediate"+fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", walAutoPages))
		if err != nil {
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		// One writer: SQLite serialises writers anyway, and one connection
		// with immediate transactions never fails with SQLITE_BUSY.
		s.w.SetMaxOpenConns(1)
		s.r, err = sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
		if err != nil {
			s.w.Close()
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		s.r.SetMaxOpenConns(4)
		cdb, err := sql.Open("sqlite", dsn)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		s.ckpt = startCheckpointer(cdb, s.log)
	}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connecting to %s: %w", s.dialect, err)
	}
	if err := s.migrate(ctx, o.upTo); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.resealLegacy(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.dialect == Postgres {
		s.warnAsyncCommit(ctx)
	}
	s.prepareIngest(ctx)
	if o.upTo == 0 || o.upTo >= storeOnceVersion {
		s.startConversion()
	}
	s.idSequences = o.upTo == 0 || o.upTo >= idSequencesVersion
	return s, nil
}

func (s *Store) migrate(ctx context.Context, upTo int64) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(s.dialect))
	if err != nil {
		return fmt.Errorf("reading migrations: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Replicas that start together take turns.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 120))
		if err != nil {
			return fmt.Errorf("creating migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	s.prov, err = goose.NewProvider(dialect, s.w, sub, opts...)
	if err != nil {
		return fmt.Errorf("preparing migrations: %w", err)
	}
	srcs := s.prov.ListSources()
	s.target = srcs[len(srcs)-1].Version
	if err := s.checkNotNewer(ctx); err != nil {
		return err
	}
	var res []*goose.MigrationResult
	if upTo > 0 {
		res, err = s.prov.UpTo(ctx, upTo)
	} else {
		res, err = s.prov.Up(ctx)
	}
	if err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	for _, r := range res {
		s.log.Info("migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// checkNotNewer refuses a database that a newer release migrated further
// than the migrations embedded here: goose would start on it silently, and
// this binary would read and write tables it does not know.
func (s *Store) checkNotNewer(ctx context.Context) error {
	v, err := s.prov.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v > s.target {
		return fmt.Errorf("database schema version %d is newer than this mailtrigger knows (%d): "+
			"a newer release wrote it; run that release or a newer one (migrations only go forward), "+
			"or restore a backup taken before the upgrade", v, s.target)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.stopConversion != nil {
		s.stopConversion()
	}
	s.closePrepared()
	s.stats.close()
	err := s.ckpt.close()
	if s.r != nil && s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	if s.w != nil {
		err = errors.Join(err, s.w.Close())
	}
	return err
}

// Dialect says which database is in use.
func (s *Store) Dialect() Dialect { return s.dialect }

// SQLitePath is the SQLite database file, or "" on PostgreSQL.
func (s *Store) SQLitePath() string { return s.path }

// Ready reports whether the database answers and every migration is applied.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	v, err := s.prov.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v != s.target {
		return fmt.Errorf("schema version %d, want %d", v, s.target)
	}
	return nil
}

// Write runs fn in one transaction, committed when fn returns nil. When ctx
// carries a Fence (WithFence), the lease is checked first.
func (s *Store) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	return s.finishWrite(ctx, tx, fn)
}

// writeConn is Write with the transaction's connection held in c, for what
// database/sql does not offer (PostgreSQL's COPY and pipelining, see
// copyRows and held.go). On PostgreSQL fn checks the fence itself, with its
// first statements (RecordBatch's lookup), before it writes anything. On
// SQLite c is nil.
func (s *Store) writeConn(ctx context.Context, fn func(c *sql.Conn, tx *sql.Tx) error) error {
	if s.dialect != Postgres {
		return s.Write(ctx, func(tx *sql.Tx) error { return fn(nil, tx) })
	}
	c, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("taking a connection: %w", err)
	}
	defer c.Close()
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	// fn checks the fence, with its first statements (RecordBatch).
	return s.commitWith(tx, func(tx *sql.Tx) error { return fn(c, tx) })
}

// finishWrite checks the fence in tx, runs fn and commits, or rolls back.
func (s *Store) finishWrite(ctx context.Context, tx *sql.Tx, fn func(tx *sql.Tx) error) error {
	if err := s.checkFence(ctx, tx); err != nil {
		tx.Rollback()
		return err
	}
	return s.commitWith(tx, fn)
}

// commitWith runs fn in tx and commits, or rolls back.
func (s *Store) commitWith(tx *sql.Tx, fn func(tx *sql.Tx) error) error {
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	s.ckpt.wrote(0)
	return nil
}

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKey reports whether err is a foreign-key violation.
func isForeignKey(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func lower(s string) string { return strings.ToLower(s) }
