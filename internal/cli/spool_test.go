package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenSpool(t *testing.T) {
	dataDir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	sp, err := openSpool(dataDir, "", log)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, "spool")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 || sp.Dir != dir {
		t.Fatalf("got %v, %v, dir %q; want %s with mode 0700", fi, err, sp.Dir, dir)
	}
	if sp.Big(1<<20) || !sp.Big(1<<20+1) {
		t.Errorf("got a threshold other than the default 1 MiB")
	}

	// What a crash left goes at the next start; other files stay.
	w, err := sp.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a message")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "keep")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err = openSpool(dataDir, "4096", log)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "keep" {
		t.Errorf("got %v, %v in the spool directory, want only keep", entries, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("got %v, %v; want the mode narrowed to 0700", fi, err)
	}
	if sp.Big(4096) || !sp.Big(4097) {
		t.Errorf("got a threshold other than 4096")
	}

	for _, bad := range []string{"x", "0", "-5", "1MB"} {
		if _, err := openSpool(dataDir, bad, log); err == nil {
			t.Errorf("threshold %q: got no error", bad)
		}
	}
}
