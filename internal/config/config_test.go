package config_test

import (
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
