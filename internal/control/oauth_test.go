package control_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"mailtrigger/internal/clientip"
	"mailtrigger/internal/control"
)

// TestRedirectURI: the callback URL is under MAILTRIGGER_BASE_URL when set,
// else under the request's origin, https when the request came over TLS or
// a trusted proxy says so (an untrusted peer's header is ignored).
func TestRedirectURI(t *testing.T) {
	proxies, err := clientip.Parse("10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, base, remote, proto string
		tls                       bool
		want                      string
	}{
		{"base url", "https://mail.example.com/", "192.0.2.1:5", "", false, "https://mail.example.com/oauth/callback"},
		{"base url with a path", "https://example.com/mailtrigger", "192.0.2.1:5", "", false, "https://example.com/mailtrigger/oauth/callback"},
		{"plain origin", "", "192.0.2.1:5", "", false, "http://mt.example.com:8080/oauth/callback"},
		{"tls", "", "192.0.2.1:5", "", true, "https://mt.example.com:8080/oauth/callback"},
		{"trusted proxy", "", "10.0.0.1:5", "https", false, "https://mt.example.com:8080/oauth/callback"},
		{"untrusted peer's header", "", "192.0.2.1:5", "https", false, "http://mt.example.com:8080/oauth/callback"},
	} {
		r := httptest.NewRequest("POST", "http://mt.example.com:8080/api/v1/imap/x/oauth/start", nil)
		r.RemoteAddr = tt.remote
		if tt.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tt.proto)
		}
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if got := control.RedirectURI(tt.base, r, proxies); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}
