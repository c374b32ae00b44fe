package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
)

// TestBackupRestore: a backup restores into a fresh data directory that has
// the backup's key, and only there: without a key, with another key, over an
// existing database without --force, and while the directory is served,
// restore refuses and says why.
func TestBackupRestore(t *testing.T) {
	src := map[string]string{"MAILTRIGGER_DATA_DIR": t.TempDir()}
	for _, name := range []string{"one", "two"} {
		if code, _, errOut := runCLI(t, src, "", "token", "create", name); code != 0 {
			t.Fatalf("token create %s: %d %s", name, code, errOut)
		}
	}
	file := filepath.Join(t.TempDir(), "mailtrigger.backup")
	code, out, errOut := runCLI(t, src, "", "backup", file)
	if code != 0 || !strings.Contains(out, "written to "+file) {
		t.Fatalf("backup: got %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want it 0600", err, fi)
	}
	if code, _, errOut := runCLI(t, src, "", "backup", file); code != 1 || !strings.Contains(errOut, "exists already") {
		t.Errorf("backup over an existing file: got %d %q", code, errOut)
	}

	dst := map[string]string{"MAILTRIGGER_DATA_DIR": filepath.Join(t.TempDir(), "restored")}
	restore := func(args ...string) (int, string, string) {
		return runCLI(t, dst, "", append([]string{"restore"}, append(args, file)...)...)
	}
	if code, _, errOut := restore(); code != 1 || !strings.Contains(errOut, "no key") {
		t.Errorf("restore without a key: got %d %q, want a refusal saying there is no key", code, errOut)
	}
	// Another key: refused, naming both fingerprints.
	other := map[string]string{"MAILTRIGGER_DATA_DIR": dst["MAILTRIGGER_DATA_DIR"],
		"MAILTRIGGER_SECRET_KEY": "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="}
	if code, _, errOut := runCLI(t, other, "", "restore", file); code != 1 || !strings.Contains(errOut, "the key does not match the backup") {
		t.Errorf("restore with another key: got %d %q, want a refusal", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dst["MAILTRIGGER_DATA_DIR"], store.SQLiteFileName)); err == nil {
		t.Errorf("a refused restore left a database behind")
	}

	key, err := os.ReadFile(filepath.Join(src["MAILTRIGGER_DATA_DIR"], secret.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst["MAILTRIGGER_DATA_DIR"], secret.KeyFileName), key, 0o600); err != nil {
		t.Fatal(err)
	}
	// While the directory is served (its lock held): refused.
	unlock, err := lockDataDir(dst["MAILTRIGGER_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := restore(); code != 1 || !strings.Contains(errOut, "stop it before restoring") {
		t.Errorf("restore into a served directory: got %d %q, want a refusal", code, errOut)
	}
	unlock()

	if code, out, errOut := restore(); code != 0 || !strings.Contains(out, "restored "+file) {
		t.Fatalf("restore: got %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, dst, "", "token", "list")
	if code != 0 || !strings.Contains(out, "one") || !strings.Contains(out, "two") {
		t.Errorf("token list of the restored database: got %d %q %q, want both tokens", code, out, errOut)
	}
	// The stamp is gone from the restored database.
	if code, _, _ := runCLI(t, dst, "", "backup", filepath.Join(t.TempDir(), "again")); code != 0 {
		t.Errorf("backing up the restored database failed")
	}

	if code, _, errOut := restore(); code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("restore over a database: got %d %q, want a refusal pointing to --force", code, errOut)
	}
	if code, _, errOut := restore("--force"); code != 0 {
		t.Errorf("restore --force: got %d %q", code, errOut)
	}

	// Not a backup: any other file is refused.
	plain := filepath.Join(src["MAILTRIGGER_DATA_DIR"], store.SQLiteFileName)
	if code, _, errOut := runCLI(t, dst, "", "restore", "--force", plain); code != 1 || !strings.Contains(errOut, "not a backup") {
		t.Errorf("restore of a plain database: got %d %q, want a refusal", code, errOut)
	}
}

func TestBackupRefusesPostgres(t *testing.T) {
	vars := map[string]string{"MAILTRIGGER_DATA_DIR": t.TempDir(), "MAILTRIGGER_DATABASE_URL": "postgres://localhost/x"}
	for _, cmd := range []string{"backup", "restore"} {
		code, _, errOut := runCLI(t, vars, "", cmd, filepath.Join(t.TempDir(), "f"))
		if code != 1 || !strings.Contains(errOut, "pg_dump") {
			t.Errorf("%s on PostgreSQL: got %d %q, want a refusal pointing to pg_dump", cmd, code, errOut)
		}
	}
}
