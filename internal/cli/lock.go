package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// lockFileName, in the data directory, is held locked by the one process
// serving a SQLite database (and by restore while it replaces the database).
const lockFileName = "mailtrigger.lock"

// errLocked is what lockFile returns when another process holds the lock.
var errLocked = errors.New("locked by another process")

// lockDataDir takes the lock that lets one process serve the SQLite database
// in dir; a second process gets an error saying which process holds it. The
// operating system drops the lock when the process ends, however it ends.
func lockDataDir(dir string) (unlock func(), err error) {
	unlock, pid, err := tryLockDataDir(dir)
	if errors.Is(err, errLocked) {
		return nil, fmt.Errorf("another mailtrigger (pid %s) is serving the SQLite database in %s: SQLite allows one process; "+
			"stop it first, or set MAILTRIGGER_DATABASE_URL to a PostgreSQL database to run several replicas", pid, dir)
	}
	return unlock, err
}

// tryLockDataDir takes the data directory's lock without waiting. When
// another process holds it, the error is errLocked and pid is the holder's
// process id as it wrote it ("unknown" if it wrote none).
func tryLockDataDir(dir string) (unlock func(), pid string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("creating data directory: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("opening %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return nil, pid, errLocked
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() { f.Close() }, "", nil
}
