// Package config holds the service's settings, read from the environment and
// overridden by command-line flags of the same name.
package config

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/clientip"
	"mailtrigger/internal/egress"
)

// Config is everything the service needs to start.
type Config struct {
	Listen        string // MAILTRIGGER_LISTEN, default 127.0.0.1:8080
	DataDir       string // MAILTRIGGER_DATA_DIR, default ./data
	DatabaseURL   string // MAILTRIGGER_DATABASE_URL; postgres://… selects PostgreSQL, empty means SQLite in DataDir
	SecretKey     string // MAILTRIGGER_SECRET_KEY, base64 of 32 bytes; empty means the key file in DataDir
	AdminPassword string // MAILTRIGGER_ADMIN_PASSWORD, used when the first admin user is created
	// MetricsToken (MAILTRIGGER_METRICS_TOKEN), when set, is the bearer
	// token /metrics asks for; empty: /metrics is open, as the probes are.
	// Environment only, as the other secrets: a flag's default would show
	// it in the usage text.
	MetricsToken  string
	LogLevel      string // MAILTRIGGER_LOG_LEVEL: debug, info, warn, error
	LogFormat     string // MAILTRIGGER_LOG_FORMAT: text or json
	SizeCap       int64  // MAILTRIGGER_SIZE_CAP in bytes: bigger messages are kept as headers only; default 50 MB
	RetentionDays int    // MAILTRIGGER_RETENTION_DAYS: message bodies and finished runs' details are pruned after; default 30
	BaseURL       string // MAILTRIGGER_BASE_URL: the service's public URL, for absolute links in webhook payloads
	// RetryBase and RetryMax shape the webhook retry backoff: the wait after
	// a run's first failed attempt, and the longest wait
	// (MAILTRIGGER_RETRY_BASE, MAILTRIGGER_RETRY_MAX, Go durations; zero
	// takes the worker's defaults, 30 s and 4 h).
	RetryBase time.Duration
	RetryMax  time.Duration
	// RunLease is how long a run claimed for delivery belongs to its worker;
	// a run left "delivering" by a crash is delivered again after it
	// (MAILTRIGGER_RUN_LEASE, a Go duration; zero takes the default, 5 min).
	RunLease time.Duration
	// ReplicaID names this process among the replicas sharing a PostgreSQL
	// database (MAILTRIGGER_REPLICA_ID; default the host name and a random
	// suffix, new at every start).
	ReplicaID string
	// LeaseTTL is how long a replica holds a mailbox without renewing its
	// lease, and so how long a dead replica's mailboxes wait for another
	// (MAILTRIGGER_LEASE_TTL, default 15 s); LeaseRenew is how often leases
	// are renewed and rebalanced (MAILTRIGGER_LEASE_RENEW, default 5 s).
	LeaseTTL   time.Duration
	LeaseRenew time.Duration
	// AuthRetry is how long a mailbox whose login was refused waits before
	// it tries again (MAILTRIGGER_AUTH_RETRY, default 5 min): long enough
	// not to lock the account at the server, short enough to notice a fixed
	// password. Saving the mailbox tries again at once.
	AuthRetry time.Duration
	// TrustedProxies lists the reverse proxies (IP addresses and CIDR
	// prefixes, comma-separated) whose X-Forwarded-For names the client, for
	// the login limits and the logs (MAILTRIGGER_TRUSTED_PROXIES; default
	// none: the connection's peer is the client).
	TrustedProxies string
	// Egress fences the outgoing connections (mail servers, token and
	// Graph endpoints, webhooks): "any" (the default) or "public", which
	// refuses loopback, private, link-local, CGNAT and other non-public
	// addresses (MAILTRIGGER_EGRESS); EgressAllow lists CIDR prefixes,
	// addresses and host names allowed all the same
	// (MAILTRIGGER_EGRESS_ALLOW, comma-separated).
	Egress      string
	EgressAllow string
	// MemoryLimit is the soft memory limit (MAILTRIGGER_MEMORY_LIMIT): a
	// size such as 768MiB or 1GB, a percentage of the cgroup limit such as
	// 80%, or off; unset, GOMEMLIMIT applies if set, else 90 % of the
	// cgroup (container) limit if there is one, else none. See
	// ParseMemoryLimit and SoftMemoryLimit.
	MemoryLimit string
	// TLS serves HTTPS (tls.go).
	TLS TLS
	// Alert holds the health alerts' settings (alert.go).
	Alert Alert
}

// FromEnv reads the settings from getenv, with defaults for what is unset.
func FromEnv(getenv func(string) string) Config {
	get := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	return Config{
		Listen:         get("MAILTRIGGER_LISTEN", "127.0.0.1:8080"),
		DataDir:        get("MAILTRIGGER_DATA_DIR", "./data"),
		DatabaseURL:    getenv("MAILTRIGGER_DATABASE_URL"),
		SecretKey:      getenv("MAILTRIGGER_SECRET_KEY"),
		MetricsToken:   getenv("MAILTRIGGER_METRICS_TOKEN"),
		AdminPassword:  getenv("MAILTRIGGER_ADMIN_PASSWORD"),
		LogLevel:       get("MAILTRIGGER_LOG_LEVEL", "info"),
		LogFormat:      get("MAILTRIGGER_LOG_FORMAT", "text"),
		SizeCap:        sizeCap(getenv("MAILTRIGGER_SIZE_CAP")),
		RetentionDays:  days(getenv("MAILTRIGGER_RETENTION_DAYS")),
		BaseURL:        getenv("MAILTRIGGER_BASE_URL"),
		RetryBase:      duration(getenv("MAILTRIGGER_RETRY_BASE")),
		RetryMax:       duration(getenv("MAILTRIGGER_RETRY_MAX")),
		RunLease:       duration(getenv("MAILTRIGGER_RUN_LEASE")),
		ReplicaID:      getenv("MAILTRIGGER_REPLICA_ID"),
		LeaseTTL:       duration(getenv("MAILTRIGGER_LEASE_TTL")),
		LeaseRenew:     duration(getenv("MAILTRIGGER_LEASE_RENEW")),
		AuthRetry:      duration(getenv("MAILTRIGGER_AUTH_RETRY")),
		TrustedProxies: getenv("MAILTRIGGER_TRUSTED_PROXIES"),
		Egress:         get("MAILTRIGGER_EGRESS", egress.ModeAny),
		EgressAllow:    getenv("MAILTRIGGER_EGRESS_ALLOW"),
		MemoryLimit:    getenv("MAILTRIGGER_MEMORY_LIMIT"),
		TLS:            tlsFromEnv(getenv),
		Alert:          alertFromEnv(getenv),
	}
}

// minMetricsToken is the shortest MAILTRIGGER_METRICS_TOKEN taken: /metrics
// answers without a login rate limit, so a guessable token is no bound.
const minMetricsToken = 16

// duration reads an optional Go duration; "" is 0 (the default), and a
// value that is not a positive duration is -1, refused by Validate.
func duration(s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return -1
	}
	return d
}

// DefaultRetentionDays is how long message bodies and run details are kept.
const DefaultRetentionDays = 30

func days(s string) int {
	if s == "" {
		return DefaultRetentionDays
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return -1 // refused by Validate
	}
	return n
}

// DefaultSizeCap is the size above which a message is kept as headers only.
const DefaultSizeCap = 50 << 20

func sizeCap(s string) int64 {
	if s == "" {
		return DefaultSizeCap
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return -1 // refused by Validate
	}
	return n
}

// StoreFlags registers the flags that choose the database on fs.
func (c *Config) StoreFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the SQLite database and the key file (MAILTRIGGER_DATA_DIR)")
	SecretURLVar(fs, &c.DatabaseURL, "database-url", "postgres:// URL to use PostgreSQL instead of SQLite (MAILTRIGGER_DATABASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (MAILTRIGGER_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json (MAILTRIGGER_LOG_FORMAT)")
}

// ServeFlags registers the flags of the serve command on fs.
func (c *Config) ServeFlags(fs *flag.FlagSet) {
	c.StoreFlags(fs)
	fs.StringVar(&c.Listen, "listen", c.Listen, "address for the UI, the API and the probes (MAILTRIGGER_LISTEN)")
	fs.Int64Var(&c.SizeCap, "size-cap", c.SizeCap, "messages bigger than this many bytes are kept as headers only (MAILTRIGGER_SIZE_CAP)")
	fs.IntVar(&c.RetentionDays, "retention-days", c.RetentionDays, "prune message bodies and finished runs' details after this many days (MAILTRIGGER_RETENTION_DAYS)")
	fs.StringVar(&c.BaseURL, "base-url", c.BaseURL, "public URL of the service, for absolute links in webhooks (MAILTRIGGER_BASE_URL)")
	fs.DurationVar(&c.RetryBase, "retry-base", c.RetryBase, "wait after a webhook delivery's first failed attempt; 0 for 30s (MAILTRIGGER_RETRY_BASE)")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest wait between webhook delivery attempts; 0 for 4h (MAILTRIGGER_RETRY_MAX)")
	fs.DurationVar(&c.RunLease, "run-lease", c.RunLease, "how long a claimed run belongs to its worker before a crash's run is delivered again; 0 for 5m (MAILTRIGGER_RUN_LEASE)")
	fs.StringVar(&c.ReplicaID, "replica-id", c.ReplicaID, "this replica's name among those sharing a PostgreSQL database; default host name and a random suffix (MAILTRIGGER_REPLICA_ID)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "how long a mailbox lease lasts unrenewed: a dead replica's mailboxes move after it; 0 for 15s (MAILTRIGGER_LEASE_TTL)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", c.TrustedProxies, "comma-separated IPs and CIDR prefixes of reverse proxies whose X-Forwarded-For names the client (MAILTRIGGER_TRUSTED_PROXIES)")
	fs.StringVar(&c.Egress, "egress", c.Egress, "which addresses mail servers, token and Graph endpoints and webhooks may have: any, or public to refuse loopback, private and link-local ones (MAILTRIGGER_EGRESS)")
	fs.StringVar(&c.EgressAllow, "egress-allow", c.EgressAllow, "comma-separated CIDR prefixes, addresses and host names allowed despite -egress public (MAILTRIGGER_EGRESS_ALLOW)")
	fs.StringVar(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "soft memory limit: a size like 768MiB or 1GB, a percentage of the container's limit like 80%, or off; default GOMEMLIMIT, else 90% of the container's limit if any (MAILTRIGGER_MEMORY_LIMIT)")
	fs.DurationVar(&c.LeaseRenew, "lease-renew", c.LeaseRenew, "how often mailbox leases are renewed and rebalanced; 0 for 5s (MAILTRIGGER_LEASE_RENEW)")
	fs.DurationVar(&c.AuthRetry, "auth-retry", c.AuthRetry, "wait after a refused login before a mailbox tries again; 0 for 5m (MAILTRIGGER_AUTH_RETRY)")
	c.TLS.tlsFlags(fs)
}

// SecretURLVar defines a string flag for a URL that may carry a password
// (in its user information, or in a query parameter such as PostgreSQL's
// password or sslpassword), with *p, as read from the environment, as its
// default. Where the flag package shows that default (-h, a mistyped flag)
// it shows it through RedactURL: the usage text, which under systemd or
// docker ends up in the logs, never holds the password.
func SecretURLVar(fs *flag.FlagSet, p *string, name, usage string) {
	fs.Var(secretURL{p}, name, usage)
}

// secretURL is the flag.Value of SecretURLVar. Its zero value (which the
// flag package makes to tell whether a default was set) shows "".
type secretURL struct{ p *string }

func (v secretURL) String() string {
	if v.p == nil {
		return ""
	}
	return RedactURL(*v.p)
}

func (v secretURL) Set(s string) error {
	*v.p = s
	return nil
}

// RedactURL returns s with the password of its user information and the
// value of every query parameter whose name contains "password" replaced
// by "xxxxx". A string that is not an absolute URL of the form
// scheme://… (such as a PostgreSQL key=value string) is returned as "":
// what in it is secret cannot be told.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return ""
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return ""
		}
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				q[k] = []string{"xxxxx"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// IsPostgres reports whether the settings select PostgreSQL.
func (c Config) IsPostgres() bool {
	u := strings.ToLower(c.DatabaseURL)
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Validate checks the settings that can be checked without touching anything.
func (c Config) Validate() error {
	if c.DatabaseURL != "" && !c.IsPostgres() {
		return fmt.Errorf("MAILTRIGGER_DATABASE_URL must start with postgres:// (leave it empty for SQLite)")
	}
	if c.RetentionDays < 1 {
		return fmt.Errorf("MAILTRIGGER_RETENTION_DAYS must be a whole number of days, at least 1")
	}
	if c.SizeCap <= 0 {
		return fmt.Errorf("MAILTRIGGER_SIZE_CAP must be a positive number of bytes")
	}
	if t := c.MetricsToken; t != "" && (len(t) < minMetricsToken || strings.TrimSpace(t) != t) {
		return fmt.Errorf("MAILTRIGGER_METRICS_TOKEN must be at least %d characters without leading or trailing spaces (it is not shown here)", minMetricsToken)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MAILTRIGGER_RETRY_BASE", c.RetryBase}, {"MAILTRIGGER_RETRY_MAX", c.RetryMax}, {"MAILTRIGGER_RUN_LEASE", c.RunLease},
		{"MAILTRIGGER_LEASE_TTL", c.LeaseTTL}, {"MAILTRIGGER_LEASE_RENEW", c.LeaseRenew}, {"MAILTRIGGER_AUTH_RETRY", c.AuthRetry}} {
		if d.v < 0 {
			return fmt.Errorf("%s must be a positive Go duration such as 30s or 4h", d.name)
		}
	}
	if c.LeaseTTL > 0 && c.LeaseRenew > 0 && c.LeaseRenew*2 > c.LeaseTTL {
		return fmt.Errorf("MAILTRIGGER_LEASE_RENEW (%s) must be at most half of MAILTRIGGER_LEASE_TTL (%s)", c.LeaseRenew, c.LeaseTTL)
	}
	if c.LeaseTTL > 0 && c.LeaseTTL < time.Second {
		return fmt.Errorf("MAILTRIGGER_LEASE_TTL must be at least 1s")
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		return fmt.Errorf("MAILTRIGGER_TRUSTED_PROXIES must list IP addresses and CIDR prefixes separated by commas: %w", err)
	}
	if _, err := c.Level(); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("MAILTRIGGER_LOG_FORMAT must be text or json, got %q", c.LogFormat)
	}
	if _, err := c.EgressPolicy(); err != nil {
		return err
	}
	if _, err := ParseMemoryLimit(c.MemoryLimit); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := c.Alert.validate(); err != nil {
		return err
	}
	return nil
}

// EgressPolicy is the parsed egress policy; nil allows every address.
func (c Config) EgressPolicy() (*egress.Policy, error) {
	return egress.Parse(c.Egress, c.EgressAllow)
}

// Level is the parsed log level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("MAILTRIGGER_LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return l, nil
}
