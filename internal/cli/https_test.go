package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/tlsconf/tlstest"
)

func TestBadHTTPSSettingsAreClearErrors(t *testing.T) {
	dir := t.TempDir()
	pair, other := tlstest.NewPair(t, 1), tlstest.NewPair(t, 2)
	certPath, keyPath := pair.Write(t, dir)
	otherKey := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherKey, other.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"MAILTRIGGER_TLS_CERT": certPath}, "MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY go together"},
		{map[string]string{"MAILTRIGGER_TLS_KEY": keyPath}, "MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY go together"},
		{map[string]string{"MAILTRIGGER_TLS_CERT": certPath, "MAILTRIGGER_TLS_KEY": keyPath, "MAILTRIGGER_ACME_DOMAINS": "mail.example.com"},
			"MAILTRIGGER_ACME_DOMAINS and MAILTRIGGER_TLS_CERT exclude each other"},
		{map[string]string{"MAILTRIGGER_ACME_EMAIL": "me@example.com"}, "need MAILTRIGGER_ACME_DOMAINS"},
		{map[string]string{"MAILTRIGGER_ACME_DOMAINS": "mail.example.com, 192.0.2.1"}, `MAILTRIGGER_ACME_DOMAINS: "192.0.2.1" is not a domain name`},
		{map[string]string{"MAILTRIGGER_ACME_DOMAINS": "mail.example.com", "MAILTRIGGER_ACME_DIRECTORY": "http://acme.example.com/dir"},
			"MAILTRIGGER_ACME_DIRECTORY must be an https:// URL"},
		{map[string]string{"MAILTRIGGER_HTTP_LISTEN": ":80"}, "MAILTRIGGER_HTTP_LISTEN redirects to HTTPS: it needs"},
		{map[string]string{"MAILTRIGGER_TLS_CERT": missing, "MAILTRIGGER_TLS_KEY": keyPath}, "MAILTRIGGER_TLS_CERT: reading the certificate"},
		{map[string]string{"MAILTRIGGER_TLS_CERT": certPath, "MAILTRIGGER_TLS_KEY": missing}, "MAILTRIGGER_TLS_KEY: reading the private key"},
		{map[string]string{"MAILTRIGGER_TLS_CERT": certPath, "MAILTRIGGER_TLS_KEY": otherKey}, "MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY: loading the pair"},
	}
	for _, tt := range tests {
		tt.vars["MAILTRIGGER_DATA_DIR"] = filepath.Join(dir, "data")
		tt.vars["MAILTRIGGER_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		tt.vars["MAILTRIGGER_ADMIN_PASSWORD"] = "https-admin-password"
		code, _, errOut := runCLI(t, tt.vars, "", "serve")
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: got %d %q, want %q", tt.vars, code, errOut, tt.want)
		}
	}
}
