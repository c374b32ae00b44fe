package config_test

import (
	"flag"
	"strings"
	"testing"

	"mailtrigger/internal/config"
)

func TestEgressSettings(t *testing.T) {
	for _, tt := range []struct {
		env    map[string]string
		public bool
		err    string
	}{
		{env: map[string]string{}},
		{env: map[string]string{"MAILTRIGGER_EGRESS": "any", "MAILTRIGGER_EGRESS_ALLOW": "10.0.0.0/8"}},
		{env: map[string]string{"MAILTRIGGER_EGRESS": "public"}, public: true},
		{env: map[string]string{"MAILTRIGGER_EGRESS": "public", "MAILTRIGGER_EGRESS_ALLOW": "127.0.0.0/8,smtp.corp.example"}, public: true},
		{env: map[string]string{"MAILTRIGGER_EGRESS": "none"}, err: `MAILTRIGGER_EGRESS must be any or public, got "none"`},
		{env: map[string]string{"MAILTRIGGER_EGRESS": "public", "MAILTRIGGER_EGRESS_ALLOW": "10.0.0.0/40"},
			err: `MAILTRIGGER_EGRESS_ALLOW: "10.0.0.0/40" is not a CIDR prefix, an IP address or a host name`},
	} {
		c := config.FromEnv(func(k string) string { return tt.env[k] })
		err := c.Validate()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: got %v, want %q", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		p, err := c.EgressPolicy()
		if err != nil || p.Public() != tt.public {
			t.Errorf("%v: got public %v (%v), want %v", tt.env, p.Public(), err, tt.public)
		}
	}
}

// TestUsageHidesDatabasePassword: the usage text that -h or a mistyped
// flag prints never holds the password of MAILTRIGGER_DATABASE_URL, while
// the flag still defaults to the environment's URL and can override it.
func TestUsageHidesDatabasePassword(t *testing.T) {
	const dbURL = "postgres://mailtrigger:S3cr3t-DB-pa55@db.internal:5432/mt?sslmode=verify-full&sslpassword=K3y-pa55"
	for _, tc := range []struct {
		name  string
		flags func(*config.Config, *flag.FlagSet)
	}{
		{"StoreFlags", (*config.Config).StoreFlags},
		{"ServeFlags", (*config.Config).ServeFlags},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.FromEnv(func(k string) string {
				if k == "MAILTRIGGER_DATABASE_URL" {
					return dbURL
				}
				return ""
			})
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			var usage strings.Builder
			fs.SetOutput(&usage)
			tc.flags(&c, fs)
			if err := fs.Parse([]string{"-listne", "x"}); err == nil {
				t.Fatal("a mistyped flag was accepted")
			}
			for _, secret := range []string{"S3cr3t-DB-pa55", "K3y-pa55"} {
				if strings.Contains(usage.String(), secret) {
					t.Errorf("the usage text shows %q:\n%s", secret, usage.String())
				}
			}
			if want := "postgres://mailtrigger:xxxxx@db.internal:5432/mt"; !strings.Contains(usage.String(), want) {
				t.Errorf("the usage text does not show the default as %q:\n%s", want, usage.String())
			}
			if c.DatabaseURL != dbURL {
				t.Errorf("got DatabaseURL %q, want the environment's %q", c.DatabaseURL, dbURL)
			}
			if err := fs.Parse([]string{"-database-url", "postgres://other/db"}); err != nil || c.DatabaseURL != "postgres://other/db" {
				t.Errorf("-database-url: got %q (%v), want postgres://other/db", c.DatabaseURL, err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"no password", "postgres://db.internal/mt", "postgres://db.internal/mt"},
		{"user only", "postgres://mailtrigger@db.internal/mt", "postgres://mailtrigger@db.internal/mt"},
		{"user and password", "postgres://u:p%40ss@db.internal:5432/mt", "postgres://u:xxxxx@db.internal:5432/mt"},
		{"password parameter", "postgres:///mt?host=/run/postgresql&password=pw", "postgres:///mt?host=%2Frun%2Fpostgresql&password=xxxxx"},
		{"sslpassword parameter", "postgres://h/mt?SSLPassword=pw&sslmode=require", "postgres://h/mt?SSLPassword=xxxxx&sslmode=require"},
		{"key=value string", "host=db user=u password=pw", ""},
		{"opaque", "postgres:u:pw@db", ""},
		{"bad query", "postgres://h/mt?password=%zz", ""},
		{"http", "https://u:pw@mailtrigger.example", "https://u:xxxxx@mailtrigger.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := config.RedactURL(tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// MAILTRIGGER_METRICS_TOKEN: taken when long enough; else refused with an
// error that names the variable and does not repeat the value.
func TestMetricsToken(t *testing.T) {
	for _, tt := range []struct {
		token string
		ok    bool
	}{
		{"", true},
		{"0123456789abcdef", true},
		{"short-S3cret", false},
		{" 0123456789abcdef-S3cret", false},
	} {
		c := config.FromEnv(func(k string) string {
			if k == "MAILTRIGGER_METRICS_TOKEN" {
				return tt.token
			}
			return ""
		})
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("MAILTRIGGER_METRICS_TOKEN=%q: %v, want ok %v", tt.token, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "MAILTRIGGER_METRICS_TOKEN") || strings.Contains(err.Error(), "S3cret")) {
			t.Errorf("MAILTRIGGER_METRICS_TOKEN=%q: error %q should name the variable and not repeat the value", tt.token, err)
		}
		if c.MetricsToken != tt.token {
			t.Errorf("MetricsToken %q, want %q", c.MetricsToken, tt.token)
		}
	}
}
