package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to read the service's database from the outside

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// binDirPrefix starts the names of the directories the binary under test is
// built into, followed by the test binary's pid.
const binDirPrefix = "mailtrigger-e2e-"

const (
	// readyTimeout bounds a start of the service until /readyz answers 200.
	readyTimeout = 20 * time.Second
	// stopTimeout bounds a graceful stop (SIGTERM) of the service.
	stopTimeout = 20 * time.Second
	// outputTail is how much of the service's output failure messages show.
	outputTail = 6000
	// outputKeep is how much of the service's output is kept at all.
	outputKeep = 1 << 20
)

var (
	// binPath is the mailtrigger binary built once for this test binary.
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	removeStaleBinDirs()
	binPath, buildErr = buildBinary()
	// testenv.Main exits without returning: the directory of the binary
	// is removed by the next run's removeStaleBinDirs, once this process
	// is gone.
	testenv.Main(m)
}

// buildBinary builds ./cmd/mailtrigger (without -race: the tests exercise
// the product, not the race detector) into a new temporary directory.
func buildBinary() (string, error) {
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			goBin = p
		}
	}
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("creating the build directory: %w", err)
	}
	bin := filepath.Join(dir, "mailtrigger")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "mailtrigger/cmd/mailtrigger")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build -o %s mailtrigger/cmd/mailtrigger: %v\n%s", bin, err, out)
	}
	return bin, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// removeStaleBinDirs removes the build directories of test binaries that no
// longer run.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), binDirPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(dir)
		}
	}
}

// service is the mailtrigger binary running "serve" as a child process, on
// one data directory and one listen address for all its restarts.
type service struct {
	t       *testing.T
	dataDir string
	listen  string
	env     []string
	out     *testenv.Tail

	cmd    *exec.Cmd       // nil when not running
	exited <-chan struct{} // closed when cmd has exited
	result func() error    // cmd.Wait's result, once exited is closed
	starts int
	shown  bool // a failure message showed the output
}

// newService prepares a service on a fresh data directory and a free port;
// extraEnv (KEY=VALUE) is added to its environment. It does not start it.
func newService(t *testing.T, extraEnv ...string) *service {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the binary under test: %v", buildErr)
	}
	s := &service{
		t:       t,
		dataDir: filepath.Join(t.TempDir(), "data"),
		listen:  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		out:     &testenv.Tail{Keep: outputKeep},
	}
	// Nothing of the caller's MAILTRIGGER_* settings (a PostgreSQL URL,
	// a key) may leak into the service under test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILTRIGGER_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env,
		"MAILTRIGGER_DATA_DIR="+s.dataDir,
		"MAILTRIGGER_LISTEN="+s.listen,
		"MAILTRIGGER_ADMIN_PASSWORD=e2e-admin-password",
		"MAILTRIGGER_LOG_LEVEL=debug",
	)
	s.env = append(s.env, extraEnv...)
	t.Cleanup(func() {
		if s.cmd != nil {
			s.signal(syscall.SIGKILL)
			<-s.exited
		}
		if dir := os.Getenv("MAILTRIGGER_E2E_LOG_DIR"); dir != "" && t.Failed() {
			// The whole output, for a failure the tail does not explain.
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + filepath.Base(filepath.Dir(s.dataDir)) + ".log"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(s.out.Last(outputKeep)), 0o600); err != nil {
				t.Logf("writing the service output to %s: %v", dir, err)
			}
		}
		if t.Failed() && !s.shown {
			t.Logf("--- service output (data dir %s) ---\n%s", s.dataDir, s.out.Last(outputTail))
		}
	})
	return s
}

func (s *service) baseURL() string { return "http://" + s.listen }

// fatalf fails the test with the end of the service's output.
func (s *service) fatalf(format string, args ...any) {
	s.t.Helper()
	s.shown = true
	s.t.Fatalf("%s\n--- service output (data dir %s) ---\n%s", fmt.Sprintf(format, args...), s.dataDir, s.out.Last(outputTail))
}

// errorf reports a failure with the end of the service's output.
func (s *service) errorf(format string, args ...any) {
	s.t.Helper()
	s.shown = true
	s.t.Errorf("%s\n--- service output (data dir %s) ---\n%s", fmt.Sprintf(format, args...), s.dataDir, s.out.Last(outputTail))
}

// start starts "mailtrigger serve" and waits until /readyz answers 200.
func (s *service) start() {
	s.t.Helper()
	switch err := s.launch(); {
	case errors.Is(err, testenv.ErrExited):
		s.cmd = nil
		s.fatalf("the service exited during start #%d: %v", s.starts, s.result())
	case err != nil:
		s.fatalf("the service was not ready after start #%d: %v", s.starts, err)
	}
}

// launch starts "mailtrigger serve" and waits until /readyz answers 200
// (nil), the process exits (testenv.ErrExited) or the wait times out.
func (s *service) launch() error {
	s.t.Helper()
	if s.cmd != nil {
		s.fatalf("starting the service: already running")
	}
	s.starts++
	fmt.Fprintf(s.out, "=== e2e: start #%d at %s ===\n", s.starts, time.Now().Format("15:04:05.000"))
	cmd := exec.Command(binPath, "serve")
	cmd.Env = s.env
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	// The service goes when the test binary dies, even by SIGKILL. Started
	// from any thread, it would be killed whenever a locked goroutine that
	// later ran on that thread ended (testenv's PostgreSQL restarts do
	// that): StartLocked gives it a thread of its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited, result, err := testenv.StartLocked(cmd)
	if err != nil {
		s.fatalf("starting %s serve: %v", binPath, err)
	}
	s.cmd, s.exited, s.result = cmd, exited, result
	return testenv.WaitReady(context.Background(), s.baseURL()+"/readyz", exited, readyTimeout)
}

// pid returns the running service's process id.
func (s *service) pid() int {
	s.t.Helper()
	if s.cmd == nil {
		s.fatalf("the service is not running")
	}
	return s.cmd.Process.Pid
}

func (s *service) signal(sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Logf("sending %v to the service: %v", sig, err)
	}
}

// kill kills the service with SIGKILL and waits until it is gone. It fails
// the test if the service had exited on its own.
func (s *service) kill() {
	s.t.Helper()
	if s.cmd == nil {
		s.fatalf("killing the service: not running")
	}
	select {
	case <-s.exited:
		s.cmd = nil
		s.fatalf("the service (start #%d) had exited on its own: %v", s.starts, s.result())
	default:
	}
	s.signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	fmt.Fprintf(s.out, "=== e2e: killed (SIGKILL) at %s ===\n", time.Now().Format("15:04:05.000"))
}

// stop stops the service with SIGTERM and fails the test unless it exits
// with status 0 within stopTimeout.
func (s *service) stop() {
	s.t.Helper()
	if s.cmd == nil {
		s.fatalf("stopping the service: not running")
	}
	s.signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.signal(syscall.SIGKILL)
		<-s.exited
		s.cmd = nil
		s.fatalf("the service did not stop within %v of SIGTERM", stopTimeout)
	}
	s.cmd = nil
	if s.result() != nil {
		s.fatalf("the service stopped with %v after SIGTERM, want exit status 0", s.result())
	}
}

// cli runs the binary with args on the service's data directory and returns
// its standard output.
func (s *service) cli(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		s.fatalf("mailtrigger %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// api creates an API token with the CLI and returns a client using it.
func (s *service) api() *client.Client {
	s.t.Helper()
	token := strings.TrimSpace(s.cli("token", "create", "e2e"))
	if token == "" || strings.ContainsAny(token, " \n") {
		s.fatalf("token create printed %q, want one token", token)
	}
	return &client.Client{BaseURL: s.baseURL(), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// peakRSS returns the running service's peak resident set size (VmHWM) in
// bytes.
func (s *service) peakRSS() int64 {
	s.t.Helper()
	return s.rss("VmHWM")
}

// rss returns the field (VmHWM, VmRSS) of the running service's
// /proc/PID/status in bytes.
func (s *service) rss(field string) int64 {
	s.t.Helper()
	path := fmt.Sprintf("/proc/%d/status", s.pid())
	f, err := os.Open(path)
	if err != nil {
		s.fatalf("reading the peak RSS: %v", err)
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
			s.fatalf("parsing %q of %s: %v", sc.Text(), path, err)
		}
		return kb << 10
	}
	s.fatalf("no %s line in %s (err %v)", field, path, sc.Err())
	return 0
}

// dbPath is the service's SQLite database file.
func (s *service) dbPath() string { return filepath.Join(s.dataDir, store.SQLiteFileName) }

// readDB opens the service's SQLite database read-only, beside the running
// service (WAL lets readers and the one writer work at once).
func (s *service) readDB() *sql.DB {
	s.t.Helper()
	dsn := "file:" + (&url.URL{Path: s.dbPath()}).EscapedPath() + "?mode=ro&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		s.fatalf("opening %s read-only: %v", s.dbPath(), err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// openStore opens the service's database as the service does, with the key
// from the data directory's key file. The service must be stopped.
func (s *service) openStore() *store.Store {
	s.t.Helper()
	key, created, err := secret.LoadKey("", s.dataDir)
	if err != nil || created {
		s.fatalf("loading the key of %s: created %v, %v", s.dataDir, created, err)
	}
	box, err := secret.NewBox(key)
	if err != nil {
		s.fatalf("opening the key: %v", err)
	}
	st, err := store.Open(context.Background(), store.Options{DataDir: s.dataDir, Box: box})
	if err != nil {
		s.fatalf("opening the store: %v", err)
	}
	s.t.Cleanup(func() { st.Close() })
	return st
}

// createMailbox creates an IMAP configuration name reading address's INBOX
// on d with the backlog mode.
func createMailbox(s *service, api *client.Client, d *testenv.Dovecot, name, address, backlog string) {
	s.t.Helper()
	str := func(v string) *string { return &v }
	port := d.IMAPSPort
	in := imapconf.Input{
		Name: str(name), ServerType: str(imapconf.ServerIMAPS), Type: str(imapconf.TypeGeneric),
		Host: str(d.Host), Port: &port, Username: str(address), Password: str(d.Password(s.t, address)),
		CACert: str(string(d.CACertPEM)), Backlog: str(backlog),
	}
	if _, err := api.CreateIMAP(context.Background(), in); err != nil {
		s.fatalf("creating imap configuration %s: %v", name, err)
	}
}

// waitState waits until the watcher of name is in state.
func waitState(s *service, api *client.Client, name, state string, within time.Duration) imapconf.Status {
	s.t.Helper()
	var got imapconf.Status
	waitFor(s, within, "imap "+name+" in state "+state, func() (bool, any) {
		v, err := api.GetIMAP(context.Background(), name)
		if err != nil {
			return false, err
		}
		if v.Status == nil {
			return false, "no status"
		}
		got = *v.Status
		return got.State == state, got
	})
	return got
}

// errNotYet is a poll's "not yet", where the detail is kept apart.
var errNotYet = errors.New("not yet")

// waitFor polls cond (testwait.UntilErr) until it holds, failing the test
// with its last detail and the service's output after within.
func waitFor(s *service, within time.Duration, what string, cond func() (ok bool, detail any)) {
	s.t.Helper()
	var detail any
	if testwait.UntilErr(within, func() error {
		var ok bool
		if ok, detail = cond(); !ok {
			return errNotYet
		}
		return nil
	}) != nil {
		s.fatalf("waiting for %s: not within %v; last: %+v", what, within, detail)
	}
}

// checkEachRecordedOnce checks that the messages whose Message-IDs idOf
// gives for 1..n are each recorded exactly once, and that nothing else is.
func checkEachRecordedOnce(t *testing.T, db *sql.DB, n int, idOf func(int) string) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT message_id, COUNT(*) FROM messages GROUP BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var id string
		var c int
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		got[id] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		id := idOf(i)
		if got[id] != 1 {
			t.Errorf("message %d (%s): recorded %d times, want once", i, id, got[id])
		}
		delete(got, id)
	}
	for id, c := range got {
		t.Errorf("unexpected message %q recorded %d times", id, c)
	}
}
