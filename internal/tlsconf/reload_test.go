package tlsconf_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/tlsconf"
	"mailtrigger/internal/tlsconf/tlstest"
)

// serveTLS serves an empty page with f's TLS configuration on a loopback
// port, and returns its address.
func serveTLS(t *testing.T, f *tlsconf.Front) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), TLSConfig: f.TLS}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestCertificateFileReloadedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	first, second, third := tlstest.NewPair(t, 1001), tlstest.NewPair(t, 1002), tlstest.NewPair(t, 1003)
	certPath, keyPath := first.Write(t, dir)
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f, err := tlsconf.New(tlsconf.Options{CertFile: certPath, KeyFile: keyPath, ReloadEvery: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, f)
	roots := tlstest.Pool(first, second, third)
	served := func(want string) func() error {
		return func() error {
			got, err := tlstest.Serial(addr, "localhost", roots)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("serial %s served, want %s", got, want)
			}
			return nil
		}
	}
	if err := served("1001")(); err != nil {
		t.Fatal(err)
	}

	// Renewed: the new pair is served by the same listener.
	second.Write(t, dir)
	testwait.Until(t, 5*time.Second, served("1002"))
	if !strings.Contains(logs.String(), "reloaded TLS certificate") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}

	// A bad replacement: the certificate of a third pair with the second's
	// key (a renewal half done), then a file that is no key at all. The
	// second pair goes on being served, and the error is logged once.
	tlstest.Replace(t, certPath, third.Cert)
	testwait.Until(t, 5*time.Second, func() error {
		// The files are looked at on a handshake.
		if err := served("1002")(); err != nil {
			return err
		}
		if !strings.Contains(logs.String(), "still serving the previous one") {
			return errors.New("no error logged for a certificate that does not match its key")
		}
		return nil
	})
	testwait.Never(t, 300*time.Millisecond, served("1002"))
	tlstest.Replace(t, keyPath, []byte("not a key\n"))
	testwait.Never(t, 300*time.Millisecond, served("1002"))
	if n := strings.Count(logs.String(), "still serving the previous one"); n != 2 {
		t.Errorf("%d errors logged for two bad replacements, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "MAILTRIGGER_TLS_KEY holds no PEM private key") {
		t.Errorf("the error does not say the key file is wrong:\n%s", logs.String())
	}

	// The renewal completed: the third pair is served.
	tlstest.Replace(t, keyPath, third.Key)
	testwait.Until(t, 5*time.Second, served("1003"))
}

func TestCertificateFilesCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	a, b := tlstest.NewPair(t, 1), tlstest.NewPair(t, 2)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aCert, aKey, bKey := write("a.crt", a.Cert), write("a.key", a.Key), write("b.key", b.Key)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing certificate", filepath.Join(dir, "none.crt"), aKey, "MAILTRIGGER_TLS_CERT: reading the certificate"},
		{"missing key", aCert, filepath.Join(dir, "none.key"), "MAILTRIGGER_TLS_KEY: reading the private key"},
		{"key as certificate", aKey, aKey, "MAILTRIGGER_TLS_CERT holds no PEM certificate"},
		{"certificate as key", aCert, aCert, "MAILTRIGGER_TLS_KEY holds no PEM private key"},
		{"another pair's key", aCert, bKey, "MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY: loading the pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.New(tlsconf.Options{CertFile: tc.cert, KeyFile: tc.key, Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := tlsconf.New(tlsconf.Options{CertFile: aCert, KeyFile: aKey, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("a good pair: %v", err)
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	for _, tc := range []struct {
		port, target, want string
	}{
		{"443", "http://mail.example.com/flows?x=1", "https://mail.example.com/flows?x=1"},
		{"443", "http://mail.example.com:80/a%20b", "https://mail.example.com/a%20b"},
		{"8443", "http://mail.example.com/", "https://mail.example.com:8443/"},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.target, nil)
		w := httptest.NewRecorder()
		tlsconf.Redirect(tc.port).ServeHTTP(w, req)
		if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != tc.want {
			t.Errorf("%s (https port %s): got %d to %q, want 301 to %q", tc.target, tc.port, w.Code, w.Header().Get("Location"), tc.want)
		}
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }
