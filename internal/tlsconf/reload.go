package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Reloader serves the certificate of a pair of PEM files and reads them
// again, at most every few seconds, at a handshake: a changed pair that
// loads replaces the one served; one that does not (a key that does not
// match yet, a file half written) is logged and the old pair goes on being
// served.
type Reloader struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    [2][]byte // the files' contents last read (loaded or not)
	lastErr string    // the last error logged
	checked time.Time
}

// NewReloader loads the pair now; an error names MAILTRIGGER_TLS_CERT or
// MAILTRIGGER_TLS_KEY.
func NewReloader(certFile, keyFile string, every time.Duration, log *slog.Logger) (*Reloader, error) {
	if every <= 0 {
		every = 2 * time.Second
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, every: every, log: log}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, err
	}
	c, err := load(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	r.cert, r.seen, r.checked = c, [2][]byte{certPEM, keyPEM}, time.Now()
	r.logLoaded("serving TLS certificate", c)
	return r, nil
}

func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("MAILTRIGGER_TLS_CERT: reading the certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("MAILTRIGGER_TLS_KEY: reading the private key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// load parses a pair, saying which file is wrong.
func load(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		switch {
		case !hasBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }):
			return nil, fmt.Errorf("MAILTRIGGER_TLS_CERT holds no PEM certificate")
		case !hasBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }):
			return nil, fmt.Errorf("MAILTRIGGER_TLS_KEY holds no PEM private key")
		}
		return nil, fmt.Errorf("MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY: loading the pair (is the key the certificate's?): %w", err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("MAILTRIGGER_TLS_CERT: parsing the certificate: %w", err)
	}
	c.Leaf = leaf
	return &c, nil
}

// hasBlock reports whether data holds a PEM block whose type is ok.
func hasBlock(data []byte, ok func(string) bool) bool {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if ok(b.Type) {
			return true
		}
	}
}

func (r *Reloader) logLoaded(msg string, c *tls.Certificate) {
	attrs := []any{"cert", r.certFile, "subject", c.Leaf.Subject.String(), "dns_names", c.Leaf.DNSNames,
		"serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
	if time.Now().After(c.Leaf.NotAfter) {
		r.log.Warn(msg+"; it has expired", attrs...)
		return
	}
	r.log.Info(msg, attrs...)
}

// GetCertificate is the tls.Config's: the current pair, read again first if
// the last look is older than the interval.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.every {
		r.checked = time.Now()
		r.reload()
	}
	return r.cert, nil
}

// Current is the pair being served.
func (r *Reloader) Current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert
}

// reload reads the files and, if they changed since the last read, loads
// them; an error is logged once, not at every look. r.mu is held.
func (r *Reloader) reload() {
	certPEM, keyPEM, err := r.read()
	if err == nil && bytes.Equal(certPEM, r.seen[0]) && bytes.Equal(keyPEM, r.seen[1]) {
		return
	}
	var c *tls.Certificate
	if err == nil {
		r.seen = [2][]byte{certPEM, keyPEM}
		c, err = load(certPEM, keyPEM)
	}
	if err != nil {
		if msg := err.Error(); msg != r.lastErr {
			r.lastErr = msg
			r.log.Error("reloading the TLS certificate; still serving the previous one", "err", err)
		}
		return
	}
	r.lastErr = ""
	r.cert = c
	r.logLoaded("reloaded TLS certificate", c)
}
