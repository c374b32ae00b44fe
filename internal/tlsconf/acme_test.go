package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/tlsconf"
)

// domain is the name the tests get certificates for; the test DNS server
// says it is 127.0.0.1.
const domain = "mail.example.test"

// pebble is Let's Encrypt's test ACME server, run in this process: its
// validation authority really does the challenges, against loopback.
type pebble struct {
	directory string         // the ACME directory URL
	client    *http.Client   // trusts the ACME server's own certificate
	roots     *x509.CertPool // trusts the certificates it issues
	log       *testenv.Buffer
}

// startPebble starts Pebble with its validation authority doing HTTP-01
// on httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1, where every name
// resolves to (through a DNS server of the test's own).
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random waits before the validations
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no nonces refused for the sport of it
	t.Setenv("PEBBLE_AUTHZREUSE", "0")      // a failed challenge type is not reused
	p := &pebble{log: &testenv.Buffer{}}
	logger := log.New(p.log, "pebble ", log.Ltime)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "the default profile"}})
	validator := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	p.directory = srv.URL + wfe.DirectoryPath
	p.client = srv.Client()
	p.roots = x509.NewCertPool()
	p.roots.AddCert(authority.GetRootCert(0).Cert)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.log.String())
		}
	})
	return p
}

// startDNS serves DNS over TCP (how Pebble asks) on loopback: every name
// is 127.0.0.1, with no IPv6 address.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// listen opens a loopback listener and returns it with its port.
func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	ln, port := listen(t)
	ln.Close()
	return port
}

// acmeFront is the service's front with ACME certificates from p, cached in
// dataDir.
func acmeFront(t *testing.T, p *pebble, dataDir string, logs *testenv.Buffer) *tlsconf.Front {
	t.Helper()
	f, err := tlsconf.New(tlsconf.Options{ACMEDomains: []string{domain}, ACMEEmail: "admin@example.test",
		ACMEDirectory: p.directory, ACMEHTTPClient: p.client, DataDir: dataDir,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// serveOn serves a page over HTTPS with f on ln, and returns the count of
// the TLS-ALPN-01 challenge's handshakes.
func serveOn(t *testing.T, ln net.Listener, f *tlsconf.Front) *atomic.Int32 {
	var alpn atomic.Int32
	cfg := f.TLS.Clone()
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(hello.SupportedProtos, "acme-tls/1") {
			alpn.Add(1)
		}
		return f.TLS.GetCertificate(hello)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) }),
		TLSConfig: cfg, ErrorLog: log.New(&testenv.Buffer{}, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return &alpn
}

// certificateServed does a TLS handshake for domain with addr, trusting
// only Pebble's root, and returns the certificate served.
func certificateServed(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Minute}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: domain, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func checkIssued(t *testing.T, addr string, p *pebble, dataDir string) *x509.Certificate {
	t.Helper()
	cert, err := certificateServed(addr, p.roots)
	if err != nil {
		t.Fatalf("handshake for %s: %v", domain, err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != domain {
		t.Fatalf("certificate served for %v, want %s", cert.DNSNames, domain)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "acme", domain)); err != nil {
		t.Errorf("the certificate is not cached in the data directory: %v", err)
	}
	// Served from memory now, the same.
	again, err := certificateServed(addr, p.roots)
	if err != nil || again.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Errorf("second handshake: %v, serial %v, want %v", err, again, cert.SerialNumber)
	}
	return cert
}

// TestACMEWithTLSALPN01 gets a certificate from Pebble, whose validation
// authority does the TLS-ALPN-01 challenge on the HTTPS listener itself.
func TestACMEWithTLSALPN01(t *testing.T) {
	httpsLn, httpsPort := listen(t)
	p := startPebble(t, closedPort(t), httpsPort)
	dataDir := t.TempDir()
	var logs testenv.Buffer
	alpn := serveOn(t, httpsLn, acmeFront(t, p, dataDir, &logs))
	cert := checkIssued(t, httpsLn.Addr().String(), p, dataDir)
	if alpn.Load() == 0 {
		t.Error("no TLS-ALPN-01 challenge handshake from pebble")
	}

	// After a restart, the certificate comes from the cache in the data
	// directory: the ACME server is not asked (here it cannot be reached).
	gone := &pebble{directory: fmt.Sprintf("https://127.0.0.1:%d/dir", closedPort(t)), client: p.client}
	restartedLn, _ := listen(t)
	serveOn(t, restartedLn, acmeFront(t, gone, dataDir, &logs))
	again, err := certificateServed(restartedLn.Addr().String(), p.roots)
	if err != nil || again.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Errorf("after a restart: %v, serial %v, want the cached %v", err, again, cert.SerialNumber)
	}

	// A name not listed gets no certificate (and asks Pebble for none).
	d := &net.Dialer{Timeout: time.Minute}
	if conn, err := tls.DialWithDialer(d, "tcp", httpsLn.Addr().String(), &tls.Config{ServerName: "other.example.test", RootCAs: p.roots}); err == nil {
		conn.Close()
		t.Error("a certificate served for a name not in MAILTRIGGER_ACME_DOMAINS")
	}
}

// TestACMEWithHTTP01 gets a certificate from Pebble over HTTP-01, on the
// plain HTTP listener (TLS-ALPN-01 cannot reach the service here, as behind
// a proxy that does not pass it), which redirects everything else to HTTPS.
func TestACMEWithHTTP01(t *testing.T) {
	httpsLn, httpsPort := listen(t)
	httpLn, httpPort := listen(t)
	p := startPebble(t, httpPort, closedPort(t))
	dataDir := t.TempDir()
	var logs testenv.Buffer
	f := acmeFront(t, p, dataDir, &logs)
	serveOn(t, httpsLn, f)
	plain := &http.Server{Handler: f.HTTPHandler(httpsLn.Addr().String())}
	go plain.Serve(httpLn)
	t.Cleanup(func() { plain.Close() })

	checkIssued(t, httpsLn.Addr().String(), p, dataDir)
	if !strings.Contains(p.log.String(), "/.well-known/acme-challenge/") {
		t.Errorf("pebble did not do an http-01 challenge:\n%s", p.log.String())
	}

	// Everything else on the HTTP listener goes to HTTPS, where the
	// certificate is trusted: a client that finds the domain at 127.0.0.1
	// follows the redirect.
	var followed []string
	c := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: p.roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			followed = append(followed, fmt.Sprintf("%d %s", req.Response.StatusCode, req.URL))
			return nil
		},
	}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/flows?x=1", domain, httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("301 https://%s:%d/flows?x=1", domain, httpsPort)
	if len(followed) != 1 || followed[0] != want || resp.TLS == nil || string(body) != "hello\n" {
		t.Errorf("plain HTTP: redirected %q, then got %q over TLS %v; want %q, then hello over TLS", followed, body, resp.TLS != nil, want)
	}
}
