package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// TestFileModes: the SQLite database and its -wal and -shm files are 0600
// and the data directory 0700, on a fresh directory (whatever the umask
// gives) and on an existing 0755 directory with 0644 files, which start
// fixes with a warning.
func TestFileModes(t *testing.T) {
	ctx := context.Background()
	n := 0
	open := func(t *testing.T, dir string, log *slog.Logger) *store.Store {
		t.Helper()
		s, err := store.Open(ctx, store.Options{DataDir: dir, Box: storetest.Box(t), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		n++
		if err := s.CreateToken(ctx, fmt.Sprintf("t%d", n), fmt.Sprintf("hash-%d", n)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("fresh directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		open(t, dir, nil)
		check(t, dir)
	})
	t.Run("existing 0755 directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		open(t, dir, nil)
		// As an older version left them (the -wal and -shm files exist
		// while the database is open).
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"mailtrigger.db", "mailtrigger.db-wal", "mailtrigger.db-shm"} {
			if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		logs := &testenv.Buffer{}
		open(t, dir, slog.New(slog.NewTextHandler(logs, nil)))
		check(t, dir)
		for _, want := range []string{"data directory was readable by others; made it private", "was=0755",
			"data file was readable by others", "mailtrigger.db-wal", "was=0644"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("the log lacks %q:\n%s", want, logs.String())
			}
		}
	})
}

func check(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("data directory: got mode %#o, want 0700", got)
	}
	for _, f := range []string{"mailtrigger.db", "mailtrigger.db-wal", "mailtrigger.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: got mode %#o, want 0600", f, got)
		}
	}
}
