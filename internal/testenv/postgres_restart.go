package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Postgres is a PostgreSQL server of one test's own, which the test may stop
// and start again on the same port (the shared server of PostgresURL must
// not be restarted under other tests). It is stopped and removed at cleanup.
type Postgres struct {
	srv    *postgresServer
	bindir string
	cred   *syscall.Credential
}

// StartPostgres initdbs and starts a private server for t; it needs the
// PostgreSQL server binaries even when MAILTRIGGER_TEST_POSTGRES_URL is set.
// Unlike the shared server it commits synchronously (fsync stays off: a
// restart kills the server, not the machine), so that a restart loses no
// transaction it acknowledged.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bindir, err := postgresBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startPostgresServer(true)
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{srv: srv, bindir: bindir, cred: cred}
	t.Cleanup(func() {
		if err := p.srv.stop(); err != nil {
			t.Errorf("testenv: stopping the test's postgres: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), databaseTimeout)
	defer cancel()
	if err := execAdmin(ctx, srv.adminURL, "CREATE DATABASE mailtrigger"); err != nil {
		t.Fatalf("testenv: creating database mailtrigger: %v", err)
	}
	return p
}

// URL is the postgres:// URL of the server's database "mailtrigger".
func (p *Postgres) URL() string {
	u, _ := withDatabase(p.srv.adminURL, "mailtrigger")
	return u
}

// Restart shuts the server down at once (every connection is cut), keeps it
// down for down, and starts it again on the same port with the same data.
func (p *Postgres) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	if p.srv.proc != nil {
		// Immediate shutdown: like a crash, no checkpoint, sessions cut.
		p.srv.proc.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.srv.proc.done:
		case <-time.After(postgresStopTimeout):
			p.srv.proc.cmd.Process.Kill()
			<-p.srv.proc.done
		}
		p.srv.proc = nil
	}
	os.Remove(filepath.Join(p.srv.dir, "data", "postmaster.pid"))
	time.Sleep(down)
	var err error
	for attempt := 1; attempt <= bindAttempts; attempt++ {
		if err = p.srv.start(p.bindir, p.cred, p.srv.port); err == nil || !errors.Is(err, errPortTaken) {
			break
		}
		time.Sleep(time.Second) // the old server's socket may linger
	}
	if err != nil {
		t.Fatalf("testenv: restarting postgres on port %d: %v", p.srv.port, err)
	}
}
