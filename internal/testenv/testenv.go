// Package testenv starts the real servers that mailtrigger's tests run
// against — PostgreSQL (PostgresURL), Dovecot (StartDovecot) — as private,
// throwaway instances on loopback, each with a temporary directory and free
// ports, never a system service.
//
// The PostgreSQL server is shared by a test binary's tests, each of which
// gets a database of its own; a package whose tests use PostgresURL must
// call Main from its TestMain, which stops the server when the tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Missing server programs make a test fail with a message saying how to
// install them; nothing here ever skips a test.
package testenv

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
)

// mainCalled records that Main runs the tests, so that servers started here
// are stopped and their directories removed when the tests end.
var mainCalled atomic.Bool

// Main runs the tests and then stops every server this package started.
// Packages whose tests use PostgresURL call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := stopPostgres(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping postgres: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// requireMain fails the test when the test binary does not run through Main,
// since the servers would then outlive the tests' temporary directories.
func requireMain(t testing.TB) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testenv: this package's tests must call testenv.Main: add func TestMain(m *testing.M) { testenv.Main(m) }")
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it; servers started
// with it should be retried on a bind error.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: finding a free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}
