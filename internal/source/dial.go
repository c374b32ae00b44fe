package source

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
)

// SASLFunc makes the SASL client a line protocol's client authenticates
// with instead of the password (XOAUTH2 with a fresh token).
type SASLFunc = func(ctx context.Context, cfg imapconf.Config) (sasl.Client, error)

// LoginFunc runs before each connection of a Source and returns the SASL
// hook to log in with (nil: the password): an OAuth2 login gets its token
// there, so that a failure to get one is reported as the token step before
// any connection is made.
type LoginFunc = func(ctx context.Context) (SASLFunc, error)

// ClientOptions are the knobs of the IMAP and POP3 clients' Dial that are
// not part of the configuration (imapsource.Options, pop3source.Options).
// The zero value is ready to use.
type ClientOptions struct {
	// Logger receives debug records of the conversation's milestones (never
	// its contents or the password). Nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds Dial as a whole: connection, TLS, greeting, login
	// and capabilities. Zero means the client's DefaultDialTimeout.
	DialTimeout time.Duration
	// CommandTimeout bounds the wait for each command's response once
	// connected; a server silent for longer has its connection closed.
	// Reading message bodies gets more time in proportion to their size.
	// Zero means the client's DefaultCommandTimeout.
	CommandTimeout time.Duration
	// Dial opens the TCP connection. Nil uses a net.Dialer. Tests set it to
	// put a fault-injecting proxy or a byte counter in between.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// SASL, when set, is called by Dial after TLS to make the SASL client
	// it authenticates with (AUTHENTICATE, AUTH) instead of logging in with
	// the password: this is where XOAUTH2 with a freshly fetched token
	// plugs in. It is required for configurations with Auth "oauth2". An
	// error it returns fails the login step; it should wrap ErrAuth when
	// the credentials were refused.
	SASL SASLFunc
}

// DialSpec is how a line-based mail protocol (IMAP, POP3) connects: its two
// ports and the knobs of its Options.
type DialSpec struct {
	Proto        string // "imap" or "pop3", for the log
	ImplicitPort int    // 993, 995
	StartTLSPort int    // 143, 110
	// Timeout bounds the whole dial: connection, TLS, greeting and login.
	Timeout time.Duration
	// Dial opens the TCP connection; nil uses a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Dialing is a connection being set up, as DialTLS hands it to the
// protocol's setup.
type Dialing struct {
	// Ctx ends when the dial's time is up (its cause matches ErrTimeout)
	// or the caller's context ends; the connection is then closed.
	Ctx  context.Context
	Mode string // imapconf.TLSImplicit or imapconf.TLSStartTLS
	// Conn is the TLS connection (implicit TLS) or the plain one on which
	// the protocol sends its STARTTLS command (then StartTLS).
	Conn net.Conn
	// Raw is the TCP connection below Conn.
	Raw net.Conn
	TLS *tls.Config
	// Log names the host, port and user.
	Log     *slog.Logger
	timeout time.Duration
}

// Fail returns err as the *StepError of step, saying why when the dial's
// context ended or its deadline passed (the connection was closed under the
// step, and err says only that).
func (d *Dialing) Fail(step string, err error) error {
	if d.Ctx.Err() != nil {
		return &StepError{Step: step, Err: context.Cause(d.Ctx)}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &StepError{Step: step, Err: fmt.Errorf("%w: gave up after %v", ErrTimeout, d.timeout)}
	}
	return &StepError{Step: step, Err: err}
}

// StartTLS secures the raw connection once the server agreed to STARTTLS
// (or STLS). Its error is a StepTLS *StepError.
func (d *Dialing) StartTLS() (*tls.Conn, error) {
	tlsConn := tls.Client(d.Raw, d.TLS)
	if err := tlsConn.HandshakeContext(d.Ctx); err != nil {
		return nil, d.Fail(StepTLS, ExplainCertError(err))
	}
	return tlsConn, nil
}

// DialTLS connects to cfg's server for spec's protocol: it resolves the
// endpoint, connects (within spec.Timeout, which also bounds every read and
// write until it returns), does the handshake of implicit TLS, and hands the
// connection to setup, which reads the greeting, secures a STARTTLS
// connection, and logs in. An error setup returns should be a *StepError
// (Dialing.Fail); the connection is then closed. It returns the logger that
// names the connection.
//
// Every error is a *StepError: StepTLS or StepConnect for the endpoint,
// StepConnect for the connection, StepTLS for the implicit handshake, and
// StepLogin when the time ran out just as setup finished.
func DialTLS(ctx context.Context, cfg imapconf.Config, spec DialSpec, setup func(d *Dialing) error) (*slog.Logger, error) {
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ep, err := ResolveEndpoint(cfg, spec.ImplicitPort, spec.StartTLSPort)
	if err != nil {
		return nil, err
	}
	log = log.With("host", cfg.Host, "port", ep.Port, "user", cfg.Username)
	ctx, cancel := context.WithTimeoutCause(ctx, spec.Timeout,
		fmt.Errorf("%w: gave up after %v", ErrTimeout, spec.Timeout))
	defer cancel()
	d := &Dialing{Ctx: ctx, Mode: ep.Mode, TLS: ep.TLS, Log: log, timeout: spec.Timeout}

	dialFn := spec.Dial
	if dialFn == nil {
		dialFn = (&net.Dialer{}).DialContext
	}
	raw, err := dialFn(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, d.Fail(StepConnect, err)
	}
	// Until DialTLS returns, the end of ctx closes the connection, which
	// unblocks whatever waits on it; the deadline does the same for a
	// server that stops answering.
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(deadline)
	}
	log.Debug(spec.Proto+" connected", "tls", ep.Mode)
	d.Raw, d.Conn = raw, raw
	if ep.Mode == imapconf.TLSImplicit {
		tlsConn, err := d.StartTLS()
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		d.Conn = tlsConn
	}
	if err := setup(d); err != nil {
		_ = raw.Close()
		return nil, err
	}
	if !stop() {
		// ctx ended (and closed the connection) after all.
		_ = raw.Close()
		return nil, &StepError{Step: StepLogin, Err: context.Cause(ctx)}
	}
	_ = raw.SetDeadline(time.Time{})
	return log, nil
}
