// Package source is the seam of the mail protocols: Source (what a mailbox
// protocol does: connect, read what is new after a checkpoint into the
// ingest pipeline, apply after-processing, wait for more), the Ledger and
// Pipeline a Source records through (implemented by package ingest), and
// what the clients (imapsource, pop3source, graphsource) share: one dialer
// for the line protocols (DialTLS: connection, implicit TLS or STARTTLS,
// timeouts, error mapping), the TLS settings of a configuration, hints for
// certificate errors, the errors every source's errors match, and the
// redaction of secrets from error text.
//
// A new protocol implements Source in a package of its own and is picked
// for its configurations in package sources.
package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
)

// The steps every mail client starts with, shared by their StepErrors.
const (
	StepConnect = "connect" // resolving, the TCP connection and the greeting
	StepTLS     = "tls"     // the TLS handshake (implicit or STARTTLS) and certificate checks
	StepLogin   = "login"   // logging in, and reading the capabilities
)

// Endpoint is where and how a mail client connects to cfg's server.
type Endpoint struct {
	Mode string // imapconf.TLSImplicit or imapconf.TLSStartTLS
	Port int
	Addr string      // host:port
	TLS  *tls.Config // see TLSConfig
}

// ResolveEndpoint returns the endpoint of cfg (TLSMode with the protocol's
// two ports, the address, the TLS configuration), or a *StepError: StepTLS
// for a bad mode, port or caCert, StepConnect for a missing host.
func ResolveEndpoint(cfg imapconf.Config, implicitPort, startTLSPort int) (Endpoint, error) {
	mode, port, err := TLSMode(cfg, implicitPort, startTLSPort)
	if err != nil {
		return Endpoint{}, &StepError{Step: StepTLS, Err: err}
	}
	if cfg.Host == "" {
		return Endpoint{}, &StepError{Step: StepConnect, Err: errors.New("no host name")}
	}
	tlsConfig, err := TLSConfig(cfg)
	if err != nil {
		return Endpoint{}, &StepError{Step: StepTLS, Err: err}
	}
	return Endpoint{Mode: mode, Port: port, Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(port)), TLS: tlsConfig}, nil
}

// TLSMode returns the TLS mode and port of cfg, with defaults for what is
// missing: the mode from the port (startTLSPort means STARTTLS, any other
// implicit TLS), the port from the mode.
func TLSMode(cfg imapconf.Config, implicitPort, startTLSPort int) (mode string, port int, err error) {
	mode, port = cfg.TLS, cfg.Port
	if mode == "" {
		mode = imapconf.TLSImplicit
		if port == startTLSPort {
			mode = imapconf.TLSStartTLS
		}
	}
	switch mode {
	case imapconf.TLSImplicit:
		if port == 0 {
			port = implicitPort
		}
	case imapconf.TLSStartTLS:
		if port == 0 {
			port = startTLSPort
		}
	default:
		return "", 0, fmt.Errorf("unknown tls mode %q: want %q or %q (logging in without TLS is refused)",
			mode, imapconf.TLSImplicit, imapconf.TLSStartTLS)
	}
	if port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %d", port)
	}
	return mode, port, nil
}

// TLSConfig returns the client TLS configuration for cfg: the system's roots
// plus cfg.CACert, server name cfg.Host, TLS 1.2 at least. Certificates are
// always verified.
func TLSConfig(cfg imapconf.Config) (*tls.Config, error) {
	roots, err := rootsFor(cfg.CACert)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:    roots,
		ServerName: cfg.Host,
		MinVersion: tls.VersionTLS12,
	}, nil
}

// HTTPTransport returns an HTTP transport (http.DefaultTransport's settings,
// so the environment's proxy is honoured) that verifies servers against the
// system's roots plus caCert, TLS 1.2 at least, and connects with dial
// (nil: http.DefaultTransport's dialer; the service passes the egress
// policy's): the Graph and OAuth2 token clients use it.
func HTTPTransport(caCert string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*http.Transport, error) {
	roots, err := rootsFor(caCert)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	egress.Fence(tr, dial)
	return tr, nil
}

// rootPools shares one pool of roots per distinct caCert among the
// connections: each pool is a copy of the system's (SystemCertPool clones
// it), some 17 KB, which 10,000 idle connections would each hold. A pool is
// never changed once made, so sharing it is safe.
var rootPools struct {
	mu    sync.Mutex
	pools map[[sha256.Size]byte]*x509.CertPool
}

// maxRootPools bounds the pools kept; more distinct CA certificates than
// this get a pool each, as before.
const maxRootPools = 256

// rootsFor returns the system's roots plus the certificates of caCert.
func rootsFor(caCert string) (*x509.CertPool, error) {
	key := sha256.Sum256([]byte(caCert))
	rootPools.mu.Lock()
	defer rootPools.mu.Unlock()
	if p := rootPools.pools[key]; p != nil {
		return p, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if strings.TrimSpace(caCert) != "" && !roots.AppendCertsFromPEM([]byte(caCert)) {
		return nil, errors.New("caCert holds no PEM certificate")
	}
	if rootPools.pools == nil {
		rootPools.pools = map[[sha256.Size]byte]*x509.CertPool{}
	}
	if len(rootPools.pools) < maxRootPools {
		rootPools.pools[key] = roots
	}
	return roots, nil
}

// NotOAuth2 describes the answer of an endpoint that was asked for an
// OAuth2 token and answered without an OAuth2 error: by its Content-Type
// (the caller shows the status), never its body, so that a test connection
// pointed at any address cannot read out what answers there.
func NotOAuth2(resp *http.Response) string {
	ct := ""
	if resp != nil {
		ct = resp.Header.Get("Content-Type")
	}
	if ct == "" {
		ct = "none"
	}
	if len(ct) > 100 {
		ct = ct[:100] + "…"
	}
	return "not an OAuth2 answer (Content-Type " + strings.ToValidUTF8(ct, "?") + ")"
}

// ExplainCertError adds a hint users can act on to a certificate error, and
// returns other errors as they are.
func ExplainCertError(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the server's certificate is not signed by a trusted authority; to trust a private CA, set caCert)", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (the certificate is not valid for this host name)", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (the server's certificate is not valid)", err)
	}
	return err
}

// Redact replaces every non-empty secret in msg by "[redacted]" and reports
// whether there was one. A server that echoes what it was sent echoes a
// secret in the form it travelled in, so these are replaced as well: a run
// of base64 whose decoding holds a secret (SASL PLAIN's response, "\x00user
// \x00password"), and the secret as an IMAP or JSON quoted string, form- or
// path-encoded (a token request's client_secret=…).
func Redact(msg string, secrets ...string) (string, bool) {
	found := false
	msg = base64Run.ReplaceAllStringFunc(msg, func(run string) string {
		dec, err := base64.StdEncoding.DecodeString(run)
		if err != nil {
			dec, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(run, "="))
		}
		if err != nil {
			return run
		}
		for _, s := range secrets {
			if s != "" && bytes.Contains(dec, []byte(s)) {
				found = true
				return "[redacted]"
			}
		}
		return run
	})
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range secretForms(s) {
			if strings.Contains(msg, form) {
				msg = strings.ReplaceAll(msg, form, "[redacted]")
				found = true
			}
		}
	}
	return msg, found
}

// base64Run is a run of standard base64 long enough to hold a secret.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/]{6,}={0,2}`)

// secretForms is s and the encodings it may travel in, longest first (a
// form that holds another is replaced before it).
func secretForms(s string) []string {
	forms := []string{s}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	// IMAP's quoted string and JSON's without HTML escaping.
	add(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s))
	if j, err := json.Marshal(s); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	add(url.QueryEscape(s))
	add(url.PathEscape(s))
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// SASLFailure returns err, the error of a SASL exchange with client, with
// what the server's error challenge said added when the client kept it (as
// the XOAUTH2 client does: the server sends its reason as a challenge
// before it fails the exchange). A nil err stays nil.
func SASLFailure(client any, err error) error {
	f, ok := client.(interface{ Failure() string })
	if err == nil || !ok || f.Failure() == "" {
		return err
	}
	return fmt.Errorf("%w (%s)", err, f.Failure())
}

// Errors that every source's errors match (errors.Is), so that the watcher
// tells them apart once for all sources.
var (
	// ErrAuth: the server refused the login (wrong user name, password,
	// secret or token). The watcher shows it plainly and retries slowly.
	ErrAuth = errors.New("authentication failed")
	// ErrClosed: the connection was closed (by the server, the network or
	// Close); dial a new one.
	ErrClosed = errors.New("connection closed")
	// ErrTimeout: the server did not answer in time; the connection is closed.
	ErrTimeout = errors.New("no response from the server in time")
	// ErrNoUIDL: a POP3 server without UIDL (unique message ids).
	// Reading without them would mean guessing what was read: the watcher
	// retries as slowly as after a refused login.
	ErrNoUIDL = errors.New("server does not support UIDL (unique message ids), which reading POP3 mail reliably needs")
)

// StepError is the error of a failed step of talking to a server.
type StepError struct {
	// Step names the step, such as connect, tls or login.
	Step string
	// Err is what went wrong. It never contains a password or secret.
	Err error
}

// Error returns "step: error".
func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *StepError) Unwrap() error { return e.Err }

// StepOf splits err for a test-connection result: the step a *StepError in
// its chain names and that error's message, else def and err's message.
func StepOf(err error, def string) (step, msg string) {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step, se.Err.Error()
	}
	return def, err.Error()
}

// RedactError returns err, or, when its text contains one of the secrets, a
// *StepError of the same step whose text has them replaced and which still
// matches each of the sentinels keep that err matched. A server is not
// expected to echo a secret; this makes sure none reaches a log or the UI if
// one does.
func RedactError(err error, keep []error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg, found := Redact(err.Error(), secrets...)
	if !found {
		return err
	}
	step := ""
	var se *StepError
	if errors.As(err, &se) {
		step = se.Step
		msg = strings.TrimPrefix(msg, step+": ")
	}
	r := &redactedError{msg: msg}
	for _, k := range keep {
		if errors.Is(err, k) {
			r.is = append(r.is, k)
		}
	}
	return &StepError{Step: step, Err: r}
}

type redactedError struct {
	msg string
	is  []error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool {
	for _, k := range e.is {
		if k == target {
			return true
		}
	}
	return false
}
