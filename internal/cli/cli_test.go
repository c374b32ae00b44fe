package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// runCLI runs the command in-process with the given environment.
func runCLI(t *testing.T, vars map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb testenv.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}
	code = Main(context.Background(), args, env)
	return code, out.String(), errb.String()
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"token", "--help"}, {"token", "create", "--help"},
		{"token", "list", "--help"}, {"token", "revoke", "--help"}, {"user", "--help"}, {"user", "set-password", "--help"},
		{"version", "--help"}, {"backup", "--help"}, {"restore", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, "", args...)
			if code != 0 {
				t.Errorf("got exit %d, want 0", code)
			}
			if !strings.Contains(out+errOut, "Usage") {
				t.Errorf("got %q, want a usage text", out+errOut)
			}
		})
	}
	if code, _, errOut := runCLI(t, nil, "", "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: got %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "", "bench"); code != 2 || !strings.Contains(errOut, "go run ./cmd/mailtrigger-bench") {
		t.Errorf("bench: got %d %q, want exit 2 and where the bench went", code, errOut)
	}
	if code, _, _ := runCLI(t, nil, ""); code != 2 {
		t.Errorf("no command: got %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "", "version")
	if code != 0 || !strings.HasPrefix(out, "mailtrigger ") {
		t.Errorf("got %d %q", code, out)
	}
}

func TestTokenAndUserCommands(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			vars := map[string]string{"MAILTRIGGER_DATA_DIR": t.TempDir()}
			if db == "postgres" {
				vars["MAILTRIGGER_DATABASE_URL"] = testenv.PostgresURL(t)
			}
			code, out, errOut := runCLI(t, vars, "", "token", "create", "cli")
			if code != 0 || !regexp.MustCompile(`^mt_[A-Z0-9]{52}\n$`).MatchString(out) {
				t.Fatalf("token create: got %d %q %q", code, out, errOut)
			}
			tok := strings.TrimSpace(out)
			if code, _, errOut := runCLI(t, vars, "", "token", "create", "cli"); code != 1 || !strings.Contains(errOut, "exists already") {
				t.Errorf("duplicate token: got %d %q", code, errOut)
			}
			if code, _, errOut := runCLI(t, vars, "", "token", "create", "bad name"); code != 1 || !strings.Contains(errOut, "letters, digits") {
				t.Errorf("bad token name: got %d %q", code, errOut)
			}
			code, out, _ = runCLI(t, vars, "", "token", "list")
			if code != 0 || !strings.Contains(out, "cli") || !strings.Contains(out, "never") || strings.Contains(out, tok) {
				t.Errorf("token list: got %d %q", code, out)
			}
			if code, out, _ := runCLI(t, vars, "", "token", "revoke", "cli"); code != 0 || !strings.Contains(out, "revoked") {
				t.Errorf("revoke: got %d %q", code, out)
			}
			if code, _, errOut := runCLI(t, vars, "", "token", "revoke", "cli"); code != 1 || !strings.Contains(errOut, "no token") {
				t.Errorf("second revoke: got %d %q", code, errOut)
			}

			if code, out, _ := runCLI(t, vars, "correct horse battery\n", "user", "set-password", "admin"); code != 0 || !strings.Contains(out, `"admin" created`) || strings.Contains(out, "horse") {
				t.Errorf("set-password: got %d %q", code, out)
			}
			if code, _, errOut := runCLI(t, vars, "short\n", "user", "set-password", "admin"); code != 1 || !strings.Contains(errOut, "at least 12") {
				t.Errorf("short password: got %d %q", code, errOut)
			}
			code, out, _ = runCLI(t, vars, "", "user", "set-password", "--generate", "admin")
			if code != 0 || !regexp.MustCompile(`"admin" updated; password: [A-Z0-9]{26}\n`).MatchString(out) {
				t.Errorf("generate: got %d %q", code, out)
			}
			if code, out, _ := runCLI(t, vars, "", "migrate"); code != 0 || !strings.Contains(out, "up to date") {
				t.Errorf("migrate: got %d %q", code, out)
			}
		})
	}
}

func TestBadSettingsAreClearErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"MAILTRIGGER_DATABASE_URL": "mysql://x"}, "must start with postgres://"},
		{map[string]string{"MAILTRIGGER_SECRET_KEY": "c2hvcnQ="}, "MAILTRIGGER_SECRET_KEY"},
		{map[string]string{"MAILTRIGGER_LOG_LEVEL": "loud"}, "MAILTRIGGER_LOG_LEVEL"},
		{map[string]string{"MAILTRIGGER_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, `MAILTRIGGER_TRUSTED_PROXIES must list IP addresses and CIDR prefixes separated by commas: "proxy.local"`},
		{map[string]string{"MAILTRIGGER_EGRESS": "private"}, `MAILTRIGGER_EGRESS must be any or public, got "private"`},
		{map[string]string{"MAILTRIGGER_EGRESS": "public", "MAILTRIGGER_EGRESS_ALLOW": "10.0.0.0/99"},
			`MAILTRIGGER_EGRESS_ALLOW: "10.0.0.0/99" is not a CIDR prefix`},
	}
	for _, tt := range tests {
		tt.vars["MAILTRIGGER_DATA_DIR"] = dir
		code, _, errOut := runCLI(t, tt.vars, "", "token", "list")
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: got %d %q, want %q", tt.vars, code, errOut, tt.want)
		}
	}
}

func TestServeCreatesAdminOnceAndStops(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	vars := map[string]string{"MAILTRIGGER_DATA_DIR": dir, "MAILTRIGGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", port)}
	serveOnce := func() (stdout, stderr string) {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb testenv.Buffer
		done := make(chan int, 1)
		go func() {
			done <- Main(ctx, []string{"serve"}, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }})
		}()
		err := testwait.UntilErr(20*time.Second, func() error {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("/readyz answered %s", resp.Status)
			}
			return nil
		})
		if err != nil {
			cancel()
			t.Fatalf("serve did not become ready within 20s: %v\n%s", err, errb.String())
		}
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, errb.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not stop")
		}
		return out.String(), errb.String()
	}
	out, logs := serveOnce()
	m := regexp.MustCompile(`Created user "admin" with password: ([A-Z0-9]{26})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("first start did not print the admin password: %q", out)
	}
	if strings.Contains(logs, m[1]) {
		t.Error("the admin password is in the log")
	}
	out, _ = serveOnce()
	if strings.Contains(out, "password") {
		t.Errorf("second start printed %q", out)
	}

	// MAILTRIGGER_ADMIN_PASSWORD is used and not printed.
	vars["MAILTRIGGER_DATA_DIR"] = t.TempDir()
	vars["MAILTRIGGER_ADMIN_PASSWORD"] = "Preset-Admin-Password"
	out, logs = serveOnce()
	if strings.Contains(out+logs, "Preset-Admin-Password") || !strings.Contains(logs, "MAILTRIGGER_ADMIN_PASSWORD") {
		t.Errorf("got stdout %q, logs %q", out, logs)
	}
}

// TestNewPasswordMinimumLength: a password shorter than 12 characters is
// refused by set-password and as MAILTRIGGER_ADMIN_PASSWORD, each naming
// where it came from.
func TestNewPasswordMinimumLength(t *testing.T) {
	vars := map[string]string{"MAILTRIGGER_DATA_DIR": t.TempDir()}
	if code, _, errOut := runCLI(t, vars, "eleven-char\n", "user", "set-password", "admin"); code != 1 ||
		!strings.Contains(errOut, "password (first line of standard input) must have at least 12 characters") {
		t.Errorf("set-password with 11 characters: got %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, vars, "twelve-chars\n", "user", "set-password", "admin"); code != 0 {
		t.Errorf("set-password with 12 characters: got %d %q", code, errOut)
	}

	vars = map[string]string{"MAILTRIGGER_DATA_DIR": t.TempDir(), "MAILTRIGGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"MAILTRIGGER_ADMIN_PASSWORD": "eleven-char"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb testenv.Buffer
	code := Main(ctx, []string{"serve"}, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }})
	if code != 1 || !strings.Contains(errb.String(), "MAILTRIGGER_ADMIN_PASSWORD must have at least 12 characters") || ctx.Err() != nil {
		t.Errorf("serve with an 11-character MAILTRIGGER_ADMIN_PASSWORD: got %d %q, want it refused at once", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "eleven-char") {
		t.Error("the refused password was printed")
	}
}

// TestKeyFileMode: the key file is 0600 and the data directory 0700 on a
// fresh start; a key file and directory left wider are fixed with a warning.
func TestKeyFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"MAILTRIGGER_DATA_DIR": dir}
	if code, _, errOut := runCLI(t, vars, "", "migrate"); code != 0 {
		t.Fatalf("migrate: got %d %q", code, errOut)
	}
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	key := filepath.Join(dir, "secret.key")
	if m := mode(key); m != 0o600 {
		t.Errorf("new key file: got %#o, want 0600", m)
	}
	if m := mode(dir); m != 0o700 {
		t.Errorf("new data directory: got %#o, want 0700", m)
	}
	os.Chmod(key, 0o644)
	os.Chmod(dir, 0o755)
	code, _, errOut := runCLI(t, vars, "", "migrate")
	if code != 0 || mode(key) != 0o600 || mode(dir) != 0o700 {
		t.Errorf("after a start: got key %#o, directory %#o (exit %d), want 0600 and 0700", mode(key), mode(dir), code)
	}
	if !strings.Contains(errOut, "data file was readable by others") || !strings.Contains(errOut, "secret.key") ||
		!strings.Contains(errOut, "data directory was readable by others") {
		t.Errorf("no warning for the wide modes: %q", errOut)
	}
}
