package cli

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"mailtrigger/internal/config"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestNewAlertingSMTP: the SMTP settings reach the sender without the
// password showing in the log, and an unreadable password file stops the
// start with an error naming the setting.
func TestNewAlertingSMTP(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	env := map[string]string{"MAILTRIGGER_SMTP_HOST": "127.0.0.1", "MAILTRIGGER_SMTP_TLS": "none",
		"MAILTRIGGER_SMTP_FROM": "mt@example.com", "MAILTRIGGER_SMTP_USERNAME": "mt", "MAILTRIGGER_SMTP_PASSWORD": "smtp-pass-4711"}
	cfg := config.FromEnv(func(k string) string { return env[k] })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newAlerting(st, cfg, log, nil, nil)
	if err != nil || a.monitor == nil || a.sender == nil {
		t.Fatalf("newAlerting: %v", err)
	}
	if !strings.Contains(logs.String(), "127.0.0.1:587") || strings.Contains(logs.String(), "smtp-pass-4711") {
		t.Errorf("log %q: want the SMTP server without its password", logs.String())
	}

	delete(env, "MAILTRIGGER_SMTP_PASSWORD")
	env["MAILTRIGGER_SMTP_PASSWORD_FILE"] = filepath.Join(t.TempDir(), "missing")
	cfg = config.FromEnv(func(k string) string { return env[k] })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := newAlerting(st, cfg, log, nil, nil); err == nil || !strings.Contains(err.Error(), "MAILTRIGGER_SMTP_PASSWORD_FILE") {
		t.Errorf("newAlerting with a missing password file: %v, want an error naming MAILTRIGGER_SMTP_PASSWORD_FILE", err)
	}
}
