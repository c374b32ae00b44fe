package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/config"
)

func TestAlertDefaults(t *testing.T) {
	c := config.FromEnv(func(string) string { return "" })
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a := c.Alert
	if a.FailingAfter != 5*time.Minute || a.BacklogRuns != 100 || a.BacklogAge != 10*time.Minute || a.Rate != 30 {
		t.Errorf("defaults: %+v", a)
	}
	if a.SMTP.Host != "" || a.SMTP.Port != 587 || a.SMTP.TLS != config.SMTPStartTLS {
		t.Errorf("SMTP defaults: %#v", a.SMTP)
	}
}

func TestAlertSettings(t *testing.T) {
	smtp := map[string]string{"MAILTRIGGER_SMTP_HOST": "smtp.example.com", "MAILTRIGGER_SMTP_FROM": "mt@example.com"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tt := range []struct {
		env map[string]string
		err string
	}{
		{env: with(nil, "MAILTRIGGER_ALERT_FAILING_AFTER", "2s", "MAILTRIGGER_ALERT_BACKLOG_RUNS", "5",
			"MAILTRIGGER_ALERT_BACKLOG_AGE", "1m", "MAILTRIGGER_ALERT_RATE", "2")},
		{env: with(nil, "MAILTRIGGER_ALERT_FAILING_AFTER", "5"), err: "MAILTRIGGER_ALERT_FAILING_AFTER must be a positive Go duration"},
		{env: with(nil, "MAILTRIGGER_ALERT_BACKLOG_AGE", "-1m"), err: "MAILTRIGGER_ALERT_BACKLOG_AGE must be a positive Go duration"},
		{env: with(nil, "MAILTRIGGER_ALERT_BACKLOG_RUNS", "0"), err: "MAILTRIGGER_ALERT_BACKLOG_RUNS must be a whole number"},
		{env: with(nil, "MAILTRIGGER_ALERT_RATE", "many"), err: "MAILTRIGGER_ALERT_RATE must be a whole number"},
		{env: smtp},
		{env: with(smtp, "MAILTRIGGER_SMTP_TLS", "TLS", "MAILTRIGGER_SMTP_PORT", "465")},
		{env: with(smtp, "MAILTRIGGER_SMTP_USERNAME", "u", "MAILTRIGGER_SMTP_PASSWORD", "hunter2-secret")},
		{env: with(nil, "MAILTRIGGER_SMTP_FROM", "mt@example.com"), err: "MAILTRIGGER_SMTP_FROM is set but MAILTRIGGER_SMTP_HOST is not"},
		{env: with(nil, "MAILTRIGGER_SMTP_PASSWORD", "hunter2-secret"), err: "MAILTRIGGER_SMTP_PASSWORD is set but MAILTRIGGER_SMTP_HOST is not"},
		{env: with(smtp, "MAILTRIGGER_SMTP_FROM", ""), err: "MAILTRIGGER_SMTP_FROM must be set with MAILTRIGGER_SMTP_HOST"},
		{env: with(smtp, "MAILTRIGGER_SMTP_FROM", "not an address"), err: "MAILTRIGGER_SMTP_FROM must be an e-mail address"},
		{env: with(smtp, "MAILTRIGGER_SMTP_PORT", "70000"), err: "MAILTRIGGER_SMTP_PORT must be a port number"},
		{env: with(smtp, "MAILTRIGGER_SMTP_PORT", "x"), err: "MAILTRIGGER_SMTP_PORT must be a port number"},
		{env: with(smtp, "MAILTRIGGER_SMTP_HOST", "smtp.example.com:25"), err: "MAILTRIGGER_SMTP_HOST must be a host name"},
		{env: with(smtp, "MAILTRIGGER_SMTP_TLS", "ssl"), err: `MAILTRIGGER_SMTP_TLS must be starttls, tls or none, got "ssl"`},
		{env: with(smtp, "MAILTRIGGER_SMTP_TLS", "none"), err: "MAILTRIGGER_SMTP_TLS none sends in plain text: only to a loopback host"},
		{env: with(smtp, "MAILTRIGGER_SMTP_TLS", "none", "MAILTRIGGER_SMTP_HOST", "127.0.0.1")},
		{env: with(smtp, "MAILTRIGGER_SMTP_TLS", "none", "MAILTRIGGER_SMTP_HOST", "localhost")},
		{env: with(smtp, "MAILTRIGGER_SMTP_ALLOWED_DOMAINS", " Example.com, @ops.example.org ,")},
		{env: with(smtp, "MAILTRIGGER_SMTP_ALLOWED_DOMAINS", "example.com,smtp://x"), err: `MAILTRIGGER_SMTP_ALLOWED_DOMAINS must list domain names such as example.com, got "smtp://x"`},
		{env: with(smtp, "MAILTRIGGER_SMTP_PASSWORD", "hunter2-secret"), err: "MAILTRIGGER_SMTP_USERNAME must be set with an SMTP password"},
		{env: with(smtp, "MAILTRIGGER_SMTP_USERNAME", "u", "MAILTRIGGER_SMTP_PASSWORD", "hunter2-secret", "MAILTRIGGER_SMTP_PASSWORD_FILE", "/x"),
			err: "MAILTRIGGER_SMTP_PASSWORD and MAILTRIGGER_SMTP_PASSWORD_FILE are both set"},
	} {
		c := config.FromEnv(func(k string) string { return tt.env[k] })
		err := c.Validate()
		if tt.err == "" {
			if err != nil {
				t.Errorf("%v: %v", tt.env, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%v: got %v, want %q", tt.env, err, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2-secret") {
			t.Errorf("%v: the error shows the SMTP password: %v", tt.env, err)
		}
		for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c.Alert.SMTP), c.Alert.SMTP.String()} {
			if strings.Contains(s, "hunter2-secret") {
				t.Errorf("%v: formatting the settings shows the SMTP password: %s", tt.env, s)
			}
		}
	}
}

// TestSMTPAllowedDomains: the list is read lower-cased, without blanks or
// a leading @.
func TestSMTPAllowedDomains(t *testing.T) {
	c := config.FromEnv(func(k string) string {
		return map[string]string{"MAILTRIGGER_SMTP_ALLOWED_DOMAINS": " Example.com, @ops.example.org ,"}[k]
	})
	if got := strings.Join(c.Alert.SMTP.AllowedDomains, " "); got != "example.com ops.example.org" {
		t.Errorf("allowed domains %q", got)
	}
}

func TestSMTPPasswordFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtp-password")
	if err := os.WriteFile(path, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := config.SMTP{PasswordFile: path}
	if p, err := s.ReadPassword(); err != nil || p != "hunter2-secret" {
		t.Errorf("ReadPassword: %q, %v", p, err)
	}
	if p, err := (config.SMTP{Password: "direct"}).ReadPassword(); err != nil || p != "direct" {
		t.Errorf("ReadPassword: %q, %v", p, err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), dir} {
		_, err := config.SMTP{PasswordFile: bad}.ReadPassword()
		if err == nil || !strings.Contains(err.Error(), "MAILTRIGGER_SMTP_PASSWORD_FILE") {
			t.Errorf("ReadPassword(%s): %v, want an error naming MAILTRIGGER_SMTP_PASSWORD_FILE", bad, err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := (config.SMTP{PasswordFile: empty}).ReadPassword(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("ReadPassword(empty): %v", err)
	}
}
