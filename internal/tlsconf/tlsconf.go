// Package tlsconf serves HTTPS: the tls.Config of the service's listener,
// from certificate files reloaded when they change or from certificates got
// over ACME (Let's Encrypt), and the plain HTTP listener's handler that
// answers ACME HTTP-01 challenges and redirects everything else to HTTPS.
package tlsconf

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Options say where the certificates come from: CertFile and KeyFile, or
// ACMEDomains; neither means plain HTTP.
type Options struct {
	CertFile, KeyFile string
	// ReloadEvery is how often, at most, the files are read again to see
	// whether they changed (on a TLS handshake); zero is 2 s.
	ReloadEvery time.Duration

	ACMEDomains   []string
	ACMEEmail     string
	ACMEDirectory string // empty: Let's Encrypt production
	// DataDir holds the ACME cache (DataDir/acme: the account key and the
	// certificates).
	DataDir string
	// ACMEHTTPClient talks to the ACME server; nil: http.DefaultClient.
	ACMEHTTPClient *http.Client

	Logger *slog.Logger
}

// Front is how the service's listeners are served.
type Front struct {
	// TLS is the HTTPS listener's configuration; nil serves plain HTTP.
	TLS *tls.Config
	// Describe is what the log says about the certificates.
	Describe string
	acme     *autocert.Manager
}

// New returns the Front of the options: the certificate files are read and
// checked now (an error names the variable that is wrong), the ACME
// certificates are got at the first handshake that asks for one of the
// domains.
func New(o Options) (*Front, error) {
	switch {
	case o.CertFile != "" || o.KeyFile != "":
		r, err := NewReloader(o.CertFile, o.KeyFile, o.ReloadEvery, o.Logger)
		if err != nil {
			return nil, err
		}
		return &Front{TLS: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
			GetCertificate: r.GetCertificate,
		}, Describe: "certificate files " + o.CertFile + ", " + o.KeyFile}, nil
	case len(o.ACMEDomains) > 0:
		dir := o.ACMEDirectory
		if dir == "" {
			dir = acme.LetsEncryptURL
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(filepath.Join(o.DataDir, "acme")),
			HostPolicy: autocert.HostWhitelist(o.ACMEDomains...),
			Email:      o.ACMEEmail,
			Client:     &acme.Client{DirectoryURL: dir, HTTPClient: o.ACMEHTTPClient},
		}
		cfg := m.TLSConfig() // with acme-tls/1: TLS-ALPN-01 is answered on the HTTPS listener
		cfg.MinVersion = tls.VersionTLS12
		get := cfg.GetCertificate
		log := o.Logger
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := get(hello)
			// Other names (scanners' and mistyped ones) are refused
			// without a word.
			if err != nil && slices.Contains(o.ACMEDomains, strings.ToLower(hello.ServerName)) {
				log.Error("getting an ACME certificate", "server_name", hello.ServerName, "directory", dir, "err", err)
			}
			return c, err
		}
		return &Front{TLS: cfg, acme: m,
			Describe: "ACME certificates for " + strings.Join(o.ACMEDomains, ", ") + " from " + dir}, nil
	}
	return &Front{}, nil
}

// HTTPHandler is the plain HTTP listener's handler: with ACME, it answers
// the HTTP-01 challenges; everything else is redirected (301) to the same
// host and path over HTTPS, on httpsAddr's port (left out when 443).
func (f *Front) HTTPHandler(httpsAddr string) http.Handler {
	_, port, _ := net.SplitHostPort(httpsAddr)
	h := Redirect(port)
	if f.acme == nil {
		return h
	}
	challenges := f.acme.HTTPHandler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The host policy is checked on the Host header, which has a port
		// when the listener is not on 80.
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r = r.Clone(r.Context())
			r.Host = host
		}
		challenges.ServeHTTP(w, r)
	})
}

// Redirect sends every request to the same host and path over HTTPS on
// port (left out when "443" or "").
func Redirect(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "use HTTPS", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // an IPv6 literal
			host = "[" + host + "]"
		}
		if port != "" && port != "443" {
			host += ":" + port
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}
