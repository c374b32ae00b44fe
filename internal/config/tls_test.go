package config_test

import (
	"slices"
	"strings"
	"testing"

	"mailtrigger/internal/config"
)

func TestTLSSettings(t *testing.T) {
	env := map[string]string{"MAILTRIGGER_ACME_DOMAINS": " Mail.Example.com, ,www.example.com ", "MAILTRIGGER_HTTP_LISTEN": ":80",
		"MAILTRIGGER_ACME_EMAIL": "admin@example.com", "MAILTRIGGER_ACME_DIRECTORY": "https://acme.example.com/directory"}
	c := config.FromEnv(func(k string) string { return env[k] })
	if err := c.Validate(); err != nil {
		t.Fatalf("good ACME settings refused: %v", err)
	}
	if got, want := c.TLS.Domains(), []string{"mail.example.com", "www.example.com"}; !slices.Equal(got, want) {
		t.Errorf("domains %q, want %q", got, want)
	}
	if !c.TLS.Enabled() || (config.TLS{}).Enabled() {
		t.Error("Enabled wrong")
	}
	files := config.TLS{CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem", HTTPListen: "127.0.0.1:8081"}
	if err := files.Validate(); err != nil {
		t.Errorf("good certificate file settings refused: %v", err)
	}
	for _, bad := range []struct {
		tls  config.TLS
		want string
	}{
		{config.TLS{ACMEDomains: "localhost"}, `"localhost" is not a domain name`},
		{config.TLS{ACMEDomains: "*.example.com"}, `"*.example.com" is not a domain name`},
		{config.TLS{ACMEDomains: " , "}, "must list domain names"},
		{config.TLS{ACMEDomains: "mail.example.com", ACMEEmail: "admin"}, "MAILTRIGGER_ACME_EMAIL must be an email address"},
		{config.TLS{CertFile: "c", KeyFile: "k", HTTPListen: "80"}, "MAILTRIGGER_HTTP_LISTEN must be an address such as :80"},
	} {
		if err := bad.tls.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: got %v, want an error with %q", bad.tls, err, bad.want)
		}
	}
}
