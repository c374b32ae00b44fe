package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to watch the service's PostgreSQL database
	_ "modernc.org/sqlite"             // the "sqlite" driver, to watch the service's SQLite database

	"mailtrigger/internal/client"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

const (
	// readyTimeout bounds a start of the service until /readyz answers 200.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop (SIGTERM) of the service.
	stopTimeout = 60 * time.Second
	// outputKeep is how much of the service's output is kept for errors.
	outputKeep = 64 << 10
)

// database is where one service keeps its data: SQLite in its data
// directory, or a fresh database on a PostgreSQL server.
type database struct {
	name     string // "sqlite" or "postgres"
	adminURL string // postgres: the server's administrator database
	// proxy, when set, is the address of a delay proxy in front of the
	// server, adding rtt to each round trip: the services connect
	// through it, the bench directly.
	proxy string
	rtt   time.Duration
}

// service is the real mailtrigger binary running "serve" as a child process
// on a fresh data directory (and database), with a key the bench knows, so
// that it can also open the store itself.
type service struct {
	bin     string
	dataDir string
	listen  string
	dbURL   string // "" for SQLite
	// serviceDBURL is the database the service connects to: dbURL, or
	// the same through the database's delay proxy.
	serviceDBURL string
	key          []byte
	env          []string
	extra        []string // serve's flags
	out          *testenv.Tail
	dropDB       func() error

	cmd    *exec.Cmd
	exited <-chan struct{}
	result func() error // cmd.Wait's result, once exited is closed

	api *client.Client
}

// newService prepares a service on db in a new directory under work; it
// does not start it.
func newService(ctx context.Context, bin, work string, db database, extraFlags ...string) (*service, error) {
	dir, err := os.MkdirTemp(work, "service-")
	if err != nil {
		return nil, fmt.Errorf("creating the service's directory: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &service{bin: bin, dataDir: dir, listen: "127.0.0.1:" + strconv.Itoa(port), out: &testenv.Tail{Keep: outputKeep}, extra: extraFlags,
		key: make([]byte, secret.KeySize)}
	rand.Read(s.key)
	if db.name == "postgres" {
		name := "bench_" + strings.ToLower(rand.Text()[:12])
		if err := execPostgres(ctx, db.adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+
			" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
			return nil, fmt.Errorf("creating database %s: %w", name, err)
		}
		u, err := url.Parse(db.adminURL)
		if err != nil {
			return nil, fmt.Errorf("parsing the postgres url: %w", err)
		}
		u.Path, u.RawPath = "/"+name, ""
		s.dbURL = u.String()
		s.serviceDBURL = s.dbURL
		if db.proxy != "" {
			u.Host = db.proxy
			s.serviceDBURL = u.String()
		}
		s.dropDB = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return execPostgres(ctx, db.adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		}
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILTRIGGER_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env,
		"MAILTRIGGER_DATA_DIR="+filepath.Join(dir, "data"),
		"MAILTRIGGER_LISTEN="+s.listen,
		"MAILTRIGGER_SECRET_KEY="+base64.StdEncoding.EncodeToString(s.key),
		"MAILTRIGGER_ADMIN_PASSWORD=bench-admin-password",
		"MAILTRIGGER_DATABASE_URL="+s.serviceDBURL,
	)
	return s, nil
}

func execPostgres(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// start starts "mailtrigger serve", waits until /readyz answers 200 and,
// the first time, creates an API token.
func (s *service) start(ctx context.Context) error {
	if s.cmd != nil {
		return errors.New("starting the service: already running")
	}
	fmt.Fprintf(s.out, "=== bench: start at %s ===\n", time.Now().Format("15:04:05.000"))
	cmd := exec.Command(s.bin, append([]string{"serve"}, s.extra...)...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// The service goes when the bench dies, even by SIGKILL, from a thread
	// of its own (testenv's servers end locked threads of theirs, which
	// would kill a child started from one of them: Pdeathsig is per thread).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited, result, err := testenv.StartLocked(cmd)
	if err != nil {
		return fmt.Errorf("starting %s serve: %w", s.bin, err)
	}
	s.cmd, s.exited, s.result = cmd, exited, result
	switch err := testenv.WaitReady(ctx, s.baseURL()+"/readyz", s.exited, readyTimeout); {
	case errors.Is(err, testenv.ErrExited):
		s.cmd = nil
		return fmt.Errorf("the service exited during its start: %v\n%s", s.result(), s.out)
	case err != nil:
		return fmt.Errorf("the service was not ready: %w\n%s", err, s.out)
	}
	if s.api != nil {
		return nil
	}
	tok, err := s.cli(ctx, "token", "create", "bench")
	if err != nil {
		return err
	}
	s.api = &client.Client{BaseURL: s.baseURL(), Token: strings.TrimSpace(tok), HTTP: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	return nil
}

func (s *service) baseURL() string { return "http://" + s.listen }

// cli runs the binary with args on the service's data and returns its
// standard output.
func (s *service) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("mailtrigger %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// stop stops the service with SIGTERM, waiting for it to exit.
func (s *service) stop() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-s.exited:
		if s.result() != nil {
			err = fmt.Errorf("the service exited with %v after SIGTERM\n%s", s.result(), s.out)
		}
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		err = fmt.Errorf("the service did not stop within %v of SIGTERM", stopTimeout)
	}
	s.cmd = nil
	return err
}

// close stops the service and removes its directory and database.
func (s *service) close() error {
	errs := []error{s.stop()}
	if s.dropDB != nil {
		errs = append(errs, s.dropDB())
	}
	errs = append(errs, os.RemoveAll(s.dataDir))
	return errors.Join(errs...)
}

// pid returns the running service's process id.
func (s *service) pid() int { return s.cmd.Process.Pid }

// procStatus returns a field (VmRSS, VmHWM) of the service's
// /proc/PID/status in bytes.
func (s *service) procStatus(field string) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", s.pid())
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading the service's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %q of %s: %w", sc.Text(), path, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in %s (%v)", field, path, sc.Err())
}

// resetPeak resets the service's VmHWM to its current RSS.
func (s *service) resetPeak() error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid()), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the service's peak RSS: %w", err)
	}
	return nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux.
const clockTick = time.Second / 100

// cpuTime returns the CPU time (user and system) the service used so far.
func (s *service) cpuTime() (time.Duration, error) {
	st, err := readProcStat(s.pid())
	if err != nil {
		return 0, fmt.Errorf("reading the service's cpu time: %w", err)
	}
	return st.own, nil
}

// metrics reads the named unlabelled metrics (go_goroutines,
// go_memstats_heap_inuse_bytes, ...) from the service's /metrics; it fails
// when one is missing.
func (s *service) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	body, err := s.api.Get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("reading the service's metrics: %w", err)
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s %q: %w", name, v, err)
		}
		m[name] = f
	}
	for _, name := range names {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("no %s in the service's metrics", name)
		}
	}
	return m, nil
}

// db opens the service's database beside it, to count what it recorded.
func (s *service) db() (*sql.DB, error) {
	if s.dbURL != "" {
		db, err := sql.Open("pgx", s.dbURL)
		if err != nil {
			return nil, fmt.Errorf("opening the service's database: %w", err)
		}
		return db, nil
	}
	path := filepath.Join(s.dataDir, "data", store.SQLiteFileName)
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("opening the service's database: %w", err)
	}
	return db, nil
}

// openStore opens the service's store as the service does; the service
// must not run (SQLite has one writer).
func (s *service) openStore(ctx context.Context) (*store.Store, error) {
	box, err := secret.NewBox(s.key)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{DatabaseURL: s.dbURL, DataDir: filepath.Join(s.dataDir, "data"), Box: box})
	if err != nil {
		return nil, fmt.Errorf("opening the service's store: %w", err)
	}
	return st, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}
