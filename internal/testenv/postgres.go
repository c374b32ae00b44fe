package testenv

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresURLEnv names the environment variable that points the tests at an
// existing PostgreSQL server instead of a private one. Its user must be
// allowed to create and drop databases.
const PostgresURLEnv = "MAILTRIGGER_TEST_POSTGRES_URL"

const (
	// postgresStartTimeout bounds how long a private server may take to
	// accept connections.
	postgresStartTimeout = 30 * time.Second
	// postgresStopTimeout bounds a fast shutdown before the server is killed.
	postgresStopTimeout = 30 * time.Second
	// databaseTimeout bounds creating or dropping one test database.
	databaseTimeout = 60 * time.Second
	// bindAttempts is how often a private server is started on a new port
	// when another process took the free port first.
	bindAttempts = 3
)

const postgresInstallHint = "install the PostgreSQL server with `apt-get install postgresql` " +
	"(scripts/test does this), or set " + PostgresURLEnv + " to the postgres:// URL of a server " +
	"whose user may create databases"

// privatePostgres is the server started once per test binary, or the error
// that starting it gave.
var privatePostgres struct {
	once sync.Once
	srv  *postgresServer
	err  error
}

var errPostgresStopped = errors.New("testenv: the private PostgreSQL was already stopped by testenv.Main")

// PostgresURL returns a postgres:// URL of a new, empty database that only
// this test uses, dropped at t.Cleanup.
//
// The server is the one at MAILTRIGGER_TEST_POSTGRES_URL if that is set,
// otherwise a private PostgreSQL started once per test binary: initdb into a
// fresh temporary directory (run as the postgres user when the tests run as
// root), listening only on 127.0.0.1 on a free port with its unix socket in
// that directory, and fsync off. It dies with the test binary and is stopped,
// its directory removed, by Main. If the PostgreSQL programs are missing the
// test fails with a message saying how to install them; it is never skipped.
func PostgresURL(t testing.TB) string {
	t.Helper()
	requireMain(t)

	admin, err := postgresAdminURL()
	if err != nil {
		t.Fatal(err)
	}
	name := databaseName(t.Name())
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), databaseTimeout)
	defer cancel()
	// From template0, which holds nothing a server's users may have added
	// to template1; C collation so that ordering does not depend on the
	// server's locale.
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() +
		" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
	if err := execAdmin(ctx, admin, create); err != nil {
		t.Fatalf("testenv: creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), databaseTimeout)
		defer cancel()
		if err := dropDatabase(ctx, admin, name); err != nil {
			t.Errorf("testenv: dropping test database %s: %v", name, err)
		}
	})
	return dbURL
}

// postgresAdminURL returns the URL of a database on the test server through
// which test databases are created and dropped, starting the private server
// on first use.
func postgresAdminURL() (string, error) {
	if env := os.Getenv(PostgresURLEnv); env != "" {
		u, err := url.Parse(env)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return "", fmt.Errorf("testenv: %s must be a postgres:// URL", PostgresURLEnv)
		}
		return env, nil
	}
	privatePostgres.once.Do(func() {
		privatePostgres.srv, privatePostgres.err = startPostgres()
	})
	if privatePostgres.err != nil {
		return "", privatePostgres.err
	}
	return privatePostgres.srv.adminURL, nil
}

// stopPostgres stops the private server, if one was started, and keeps any
// later PostgresURL from starting another.
func stopPostgres() error {
	privatePostgres.once.Do(func() { privatePostgres.err = errPostgresStopped })
	srv := privatePostgres.srv
	if srv == nil {
		return nil
	}
	privatePostgres.srv, privatePostgres.err = nil, errPostgresStopped
	return srv.stop()
}

// databaseName returns a fresh database name that shows which test made it.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("test_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	suffix := make([]byte, 6)
	rand.Read(suffix) // never fails
	b.WriteString(hex.EncodeToString(suffix))
	return b.String() // at most 5+40+1+12 = 58 bytes, under PostgreSQL's 63
}

// withDatabase returns rawURL with its database replaced by name.
func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("testenv: parsing postgres URL: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

func execAdmin(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connecting to test server: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// dropDatabase drops a test database even if the test left connections open.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	ident := pgx.Identifier{name}.Sanitize()
	err := execAdmin(ctx, adminURL, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42601" {
		// A server older than PostgreSQL 13 has no WITH (FORCE).
		err = execAdmin(ctx, adminURL, "DROP DATABASE IF EXISTS "+ident)
	}
	return err
}

// postgresServer is a private PostgreSQL started by this package.
type postgresServer struct {
	dir      string // temporary directory: data/, the socket and the log
	adminURL string
	port     int
	proc     *process
	// durable keeps synchronous_commit on, so that a crash (immediate
	// shutdown) loses no acknowledged commit: a server the test restarts
	// must keep what it said it committed, as a production one does.
	durable bool
}

// startPostgres initdbs a fresh cluster in a temporary directory and starts
// a server on it, retrying on a new port if the free port was taken.
func startPostgres() (_ *postgresServer, err error) { return startPostgresServer(false) }

// startPostgresServer is startPostgres, durable or not.
func startPostgresServer(durable bool) (_ *postgresServer, err error) {
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}

	removeStalePostgresDirs()
	dir, err := os.MkdirTemp("", postgresDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("testenv: creating postgres directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := checkReachable(dir); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("testenv: giving %s to the postgres user: %w", dir, err)
		}
	}

	data := filepath.Join(dir, "data")
	initdb := command(filepath.Join(bindir, "initdb"), cred, dir,
		"--pgdata", data, "--username", "postgres", "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync")
	var out bytes.Buffer
	initdb.Stdout, initdb.Stderr = &out, &out
	initdb.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p, err := startLocked(initdb)
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		return nil, fmt.Errorf("testenv: running %s: %v\n%s", initdb, err, out.Bytes())
	}

	srv := &postgresServer{dir: dir, durable: durable}
	for attempt := 1; ; attempt++ {
		err := srv.start(bindir, cred, 0)
		if err == nil {
			return srv, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == bindAttempts {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port taken")

// start runs the server on port (0: a free one) and waits until it accepts
// connections. It returns an error wrapping errPortTaken if the server could
// not bind its port.
func (s *postgresServer) start(bindir string, cred *syscall.Credential, port int) error {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return fmt.Errorf("testenv: finding a free port: %w", err)
		}
	}
	s.port = port
	logPath := filepath.Join(s.dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("testenv: creating postgres log: %w", err)
	}
	defer logFile.Close() // the server holds its own copy

	cmd := command(filepath.Join(bindir, "postgres"), cred, s.dir,
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit="+map[bool]string{false: "off", true: "on"}[s.durable],
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, so a terminal's ^C reaches only the test binary;
	// SIGQUIT (immediate shutdown) when the test binary dies.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	proc, err := startLocked(cmd)
	if err != nil {
		return fmt.Errorf("testenv: starting %s: %w", cmd.Path, err)
	}
	s.proc = proc
	s.adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)

	deadline := time.Now().Add(postgresStartTimeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.adminURL)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err

		select {
		case <-proc.done:
			log := readTail(logPath)
			if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
				return fmt.Errorf("testenv: postgres could not bind 127.0.0.1:%d: %w; its log:\n%s", port, errPortTaken, log)
			}
			return fmt.Errorf("testenv: postgres exited before accepting connections (%v); its log:\n%s", proc.err, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log := readTail(logPath)
			s.kill()
			return fmt.Errorf("testenv: postgres did not accept connections on 127.0.0.1:%d within %v (last error: %v); its log:\n%s",
				port, postgresStartTimeout, lastErr, log)
		}
	}
}

// stop stops the server and removes its directory.
func (s *postgresServer) stop() error {
	s.kill()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("removing %s: %w", s.dir, err)
	}
	return nil
}

// kill shuts the server down fast and kills it if that takes too long.
func (s *postgresServer) kill() {
	if s.proc == nil {
		return
	}
	s.proc.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-s.proc.done:
	case <-time.After(postgresStopTimeout):
		s.proc.cmd.Process.Kill()
		<-s.proc.done
	}
}

const postgresDirPrefix = "mailtrigger-postgres-"

// removeStalePostgresDirs removes the directories of private servers whose
// test binary died before Main could remove them (the server itself dies
// with the test binary). A directory is stale when no server runs on it and
// it has not changed for ten minutes, longer than any initdb takes.
func removeStalePostgresDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), postgresDirPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			pid, _, _ := strings.Cut(string(pidFile), "\n")
			n, err := strconv.Atoi(pid)
			if err != nil || n <= 0 || syscall.Kill(n, 0) != syscall.ESRCH {
				continue // running, or not ours to judge
			}
		}
		os.RemoveAll(dir)
	}
}

// postgresBinDir finds the directory holding initdb and postgres: the one
// pg_config names, else the newest /usr/lib/postgresql/*/bin.
func postgresBinDir() (string, error) {
	return findPostgresBinDir("pg_config", "/usr/lib/postgresql/*/bin")
}

func findPostgresBinDir(pgConfig, versionedGlob string) (string, error) {
	var dirs []string
	if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob(versionedGlob)
	slices.SortFunc(versioned, func(a, b string) int { // newest first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	dirs = append(dirs, versioned...)
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("testenv: the PostgreSQL server programs initdb and postgres were not found "+
		"(looked in `%s --bindir` and %s): %s", pgConfig, versionedGlob, postgresInstallHint)
}

// compareVersions compares dotted version numbers such as "9.6" and "15".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// postgresCredential returns the postgres user's credential when the tests
// run as root, since initdb and postgres refuse to run as root, and nil
// otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: tests run as root, and PostgreSQL must then run as the postgres user, "+
			"which was not found (%v): %s", err, postgresInstallHint)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres user's uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres user's gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// checkReachable reports whether every directory above dir lets other users
// through, as the postgres user must reach dir.
func checkReachable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("testenv: the postgres user cannot reach %s (mode %v of %s): set TMPDIR to a directory such as /tmp",
				dir, fi.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// command returns cmd to run as cred (nil: as ourselves) in dir, with the
// environment's PG* variables removed so they cannot redirect the server.
func command(path string, cred *syscall.Credential, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// process is a started command whose exit can be awaited by many.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, set before done is closed
}

func (p *process) wait() error {
	<-p.done
	return p.err
}

// startLocked starts cmd from a goroutine that holds its OS thread until cmd
// exits. Pdeathsig fires when the thread that started the child ends, not
// the process, and the Go runtime ends a thread when a goroutine locked to it
// exits; holding the thread keeps a runtime.LockOSThread elsewhere in the
// tests from killing the child early.
func startLocked(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after cmd.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// readTail returns the last 8 KiB of the file at path, for error messages.
func readTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	defer f.Close()
	const max = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	return string(b)
}

// NewPostgres starts a private PostgreSQL outside of a test (the bench
// command uses it), as PostgresURL's private server is started, and returns
// the postgres:// URL of its administrator's database, through which the
// caller creates databases of its own, and a stop function that stops the
// server and removes its directory.
func NewPostgres() (adminURL string, stop func() error, err error) {
	srv, err := startPostgres()
	if err != nil {
		return "", nil, err
	}
	return srv.adminURL, srv.stop, nil
}

// StartLocked starts cmd, whose SysProcAttr.Pdeathsig should end it with
// the caller, from a goroutine holding its own OS thread until cmd exits
// (see startLocked: Pdeathsig is per thread). It returns a channel closed
// when cmd has exited and a function returning cmd.Wait's result once it
// has.
func StartLocked(cmd *exec.Cmd) (exited <-chan struct{}, result func() error, err error) {
	p, err := startLocked(cmd)
	if err != nil {
		return nil, nil, err
	}
	return p.done, func() error { return p.err }, nil
}

// ErrExited is WaitReady's error when the process ended first.
var ErrExited = errors.New("the process exited before it was ready")

// WaitReady polls url (a service's /readyz) every 10 ms until it answers
// 200, and fails with ErrExited when exited is closed first, or with the
// last answer or error after within.
func WaitReady(ctx context.Context, url string, exited <-chan struct{}, within time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
