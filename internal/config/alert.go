package config

import (
	"fmt"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"
)

// Alert holds the settings of the health alerts (docs/alerts.md).
type Alert struct {
	// FailingAfter is how long a mailbox may be in error, stale or
	// reconnecting after an error, without being idle or polling, before
	// mailbox.failing (MAILTRIGGER_ALERT_FAILING_AFTER, default 5m).
	FailingAfter time.Duration
	// BacklogRuns and BacklogAge: runs.backlog when more than BacklogRuns
	// runs have waited longer than BacklogAge
	// (MAILTRIGGER_ALERT_BACKLOG_RUNS, default 100;
	// MAILTRIGGER_ALERT_BACKLOG_AGE, default 10m).
	BacklogRuns int
	BacklogAge  time.Duration
	// Rate is the most deliveries per subscription per minute; the rest
	// wait (MAILTRIGGER_ALERT_RATE, default 30).
	Rate int
	// SMTP is the mail server of the email subscriptions; Host "" when
	// none is set.
	SMTP SMTP
}

// SMTP is the mail server alert e-mails are sent through.
type SMTP struct {
	Host     string // MAILTRIGGER_SMTP_HOST; "" means no SMTP
	Port     int    // MAILTRIGGER_SMTP_PORT, default 587
	Username string // MAILTRIGGER_SMTP_USERNAME
	// Password (MAILTRIGGER_SMTP_PASSWORD) or PasswordFile
	// (MAILTRIGGER_SMTP_PASSWORD_FILE, a file holding it): a secret,
	// never logged nor put in an error. Use ReadPassword.
	Password     string
	PasswordFile string
	From         string // MAILTRIGGER_SMTP_FROM, required with Host
	// TLS is starttls (the default), tls (implicit TLS) or none (plain
	// text, only to a loopback host) (MAILTRIGGER_SMTP_TLS).
	TLS string
	// AllowedDomains (MAILTRIGGER_SMTP_ALLOWED_DOMAINS, comma-separated)
	// are the only recipient domains alert e-mails may go to; empty: any.
	// Without it, whoever holds an API token can have the operator's SMTP
	// account write to any address.
	AllowedDomains []string
}

// SMTP TLS modes.
const (
	SMTPStartTLS = "starttls"
	SMTPTLS      = "tls"
	SMTPNoTLS    = "none"
)

// Defaults of the alert settings.
const (
	DefaultAlertFailingAfter = 5 * time.Minute
	DefaultAlertBacklogRuns  = 100
	DefaultAlertBacklogAge   = 10 * time.Minute
	DefaultAlertRate         = 30
	DefaultSMTPPort          = 587
)

// alertFromEnv reads the alert settings; values that do not parse are
// negative, refused by validate.
func alertFromEnv(getenv func(string) string) Alert {
	dur := func(key string, def time.Duration) time.Duration {
		if d := duration(getenv(key)); d != 0 {
			return d
		}
		return def
	}
	num := func(key string, def int) int {
		s := getenv(key)
		if s == "" {
			return def
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return -1
		}
		return n
	}
	tls := getenv("MAILTRIGGER_SMTP_TLS")
	if tls == "" {
		tls = SMTPStartTLS
	}
	return Alert{
		FailingAfter: dur("MAILTRIGGER_ALERT_FAILING_AFTER", DefaultAlertFailingAfter),
		BacklogRuns:  num("MAILTRIGGER_ALERT_BACKLOG_RUNS", DefaultAlertBacklogRuns),
		BacklogAge:   dur("MAILTRIGGER_ALERT_BACKLOG_AGE", DefaultAlertBacklogAge),
		Rate:         num("MAILTRIGGER_ALERT_RATE", DefaultAlertRate),
		SMTP: SMTP{
			Host:           getenv("MAILTRIGGER_SMTP_HOST"),
			Port:           num("MAILTRIGGER_SMTP_PORT", DefaultSMTPPort),
			Username:       getenv("MAILTRIGGER_SMTP_USERNAME"),
			Password:       getenv("MAILTRIGGER_SMTP_PASSWORD"),
			PasswordFile:   getenv("MAILTRIGGER_SMTP_PASSWORD_FILE"),
			From:           getenv("MAILTRIGGER_SMTP_FROM"),
			TLS:            strings.ToLower(tls),
			AllowedDomains: domains(getenv("MAILTRIGGER_SMTP_ALLOWED_DOMAINS")),
		},
	}
}

// validate checks the alert settings. Its errors never carry the SMTP
// password.
func (a Alert) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MAILTRIGGER_ALERT_FAILING_AFTER", a.FailingAfter}, {"MAILTRIGGER_ALERT_BACKLOG_AGE", a.BacklogAge}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be a positive Go duration such as 30s or 5m", d.name)
		}
	}
	if a.BacklogRuns < 1 {
		return fmt.Errorf("MAILTRIGGER_ALERT_BACKLOG_RUNS must be a whole number of runs, at least 1")
	}
	if a.Rate < 1 {
		return fmt.Errorf("MAILTRIGGER_ALERT_RATE must be a whole number of deliveries per minute, at least 1")
	}
	return a.SMTP.validate()
}

// domains splits a comma-separated list of domains, lower-cased, without
// blanks or a leading "@".
func domains(v string) []string {
	var out []string
	for _, d := range strings.Split(v, ",") {
		if d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")); d != "" {
			out = append(out, d)
		}
	}
	return out
}

func (s SMTP) validate() error {
	for _, d := range s.AllowedDomains {
		if strings.ContainsAny(d, " /:@") || !strings.Contains(d, ".") {
			return fmt.Errorf("MAILTRIGGER_SMTP_ALLOWED_DOMAINS must list domain names such as example.com, got %q", d)
		}
	}
	if s.Host == "" {
		for _, v := range []struct{ name, v string }{{"MAILTRIGGER_SMTP_USERNAME", s.Username},
			{"MAILTRIGGER_SMTP_PASSWORD", s.Password}, {"MAILTRIGGER_SMTP_PASSWORD_FILE", s.PasswordFile},
			{"MAILTRIGGER_SMTP_FROM", s.From}} {
			if v.v != "" {
				return fmt.Errorf("%s is set but MAILTRIGGER_SMTP_HOST is not: set the SMTP server's host name too", v.name)
			}
		}
		return nil
	}
	if strings.ContainsAny(s.Host, " /:@") && net.ParseIP(s.Host) == nil {
		return fmt.Errorf("MAILTRIGGER_SMTP_HOST must be a host name or an IP address, without a port (MAILTRIGGER_SMTP_PORT) or scheme")
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("MAILTRIGGER_SMTP_PORT must be a port number, 1 to 65535")
	}
	if s.From == "" {
		return fmt.Errorf("MAILTRIGGER_SMTP_FROM must be set with MAILTRIGGER_SMTP_HOST: the address alert e-mails come from")
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		return fmt.Errorf("MAILTRIGGER_SMTP_FROM must be an e-mail address such as mailtrigger@example.com, got %q", s.From)
	}
	if s.Password != "" && s.PasswordFile != "" {
		return fmt.Errorf("MAILTRIGGER_SMTP_PASSWORD and MAILTRIGGER_SMTP_PASSWORD_FILE are both set: set one")
	}
	if (s.Password != "" || s.PasswordFile != "") && s.Username == "" {
		return fmt.Errorf("MAILTRIGGER_SMTP_USERNAME must be set with an SMTP password")
	}
	switch s.TLS {
	case SMTPStartTLS, SMTPTLS:
	case SMTPNoTLS:
		if !loopbackHost(s.Host) {
			return fmt.Errorf("MAILTRIGGER_SMTP_TLS none sends in plain text: only to a loopback host (localhost, 127.0.0.1, ::1), not %q", s.Host)
		}
	default:
		return fmt.Errorf("MAILTRIGGER_SMTP_TLS must be starttls, tls or none, got %q", s.TLS)
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ReadPassword returns the SMTP password: Password, or the content of
// PasswordFile without its trailing line break. The error names the
// setting and the file, never the content.
func (s SMTP) ReadPassword() (string, error) {
	if s.PasswordFile == "" {
		return s.Password, nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("MAILTRIGGER_SMTP_PASSWORD_FILE: reading %s: %w", s.PasswordFile, errorWithoutContent(err))
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("MAILTRIGGER_SMTP_PASSWORD_FILE: %s is empty", s.PasswordFile)
	}
	return p, nil
}

// errorWithoutContent keeps what went wrong reading a file (os errors carry
// the path and the cause, not the content).
func errorWithoutContent(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// String describes the SMTP settings for a log line: the password is
// never in it.
func (s SMTP) String() string {
	if s.Host == "" {
		return "none"
	}
	auth := "no login"
	if s.Username != "" {
		auth = "login " + s.Username
	}
	return fmt.Sprintf("%s:%d (%s, %s, from %s)", s.Host, s.Port, s.TLS, auth, s.From)
}

// GoString keeps the password out of %#v too.
func (s SMTP) GoString() string { return "config.SMTP{" + s.String() + "}" }
