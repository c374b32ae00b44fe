// Package imapsource is the IMAP client half of the mail watcher: it
// connects to a configured mailbox (always over verified TLS), reads the
// messages after a checkpoint UID with bounded memory, waits for new mail
// with IDLE (or NOOP polling), and applies the after-processing action
// (seen, delete, move) to messages the caller has durably recorded. Source
// is its source.Source.
//
// It knows nothing of databases, MIME or supervision: a Conn is used by one
// goroutine, the watcher loop, which reconnects when a method fails.
//
// Every error Dial and the Conn's methods return is a *StepError naming the
// step that failed, so that the UI can say "login: authentication failed"
// rather than just "error" (the one exception: the error of the caller's own
// callback, which FetchAfter returns as is). Authentication failures also
// match ErrAuth, dead connections ErrClosed, and a response longer than the
// client takes (which closes the connection; see responseLimit)
// source.ErrLineTooLong. Errors never contain the password or client
// secret.
package imapsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
)

// The steps a StepError names.
const (
	StepConnect = source.StepConnect
	StepTLS     = source.StepTLS
	StepLogin   = source.StepLogin // LOGIN or AUTHENTICATE, and reading the capabilities
	StepSelect  = "select"         // opening the folder
	StepSearch  = "search"         // UID SEARCH
	StepFetch   = "fetch"          // UID FETCH
	StepWait    = "wait"           // IDLE or NOOP polling while waiting for mail
	StepApply   = "apply"          // the after-processing action
	StepNoop    = "noop"           // NOOP
	StepLogout  = "logout"         // LOGOUT
)

// Defaults for the zero values of Options and of method arguments.
const (
	// DefaultDialTimeout bounds Dial: connection, TLS, greeting and login.
	DefaultDialTimeout = 30 * time.Second
	// DefaultCommandTimeout bounds the wait for one command's response.
	DefaultCommandTimeout = time.Minute
	// DefaultSizeCap is the size above which only a message's header is
	// read.
	DefaultSizeCap = 50 << 20
	// DefaultMaxWait is how long WaitForMail waits when given no limit.
	DefaultMaxWait = 10 * time.Minute
	// DefaultPollInterval is how often WaitForMail polls a server without
	// IDLE when given no interval.
	DefaultPollInterval = time.Duration(imapconf.DefaultPollInterval) * time.Second
)

var (
	// ErrAuth is matched (errors.Is) by errors of a login the server
	// refused: a wrong user name or password, an expired or revoked
	// account or token. The watcher retries those slowly and shows them
	// plainly; other failures are retried with the usual backoff.
	ErrAuth = source.ErrAuth

	// ErrClosed is matched by errors of a Conn whose connection has been
	// closed, by the server, the network or Close. The connection cannot be
	// used again: dial a new one.
	ErrClosed = source.ErrClosed

	// ErrTimeout is matched by errors of a command the server did not
	// answer in time. The connection is closed.
	ErrTimeout = source.ErrTimeout

	// ErrCannotMove is matched by the error of Apply with the move action
	// on a server that has neither MOVE nor UIDPLUS: it could only move by
	// COPY, STORE \Deleted and a plain EXPUNGE, which would also remove the
	// messages other clients marked deleted.
	ErrCannotMove = errors.New("server can't move messages safely: it supports neither MOVE nor UIDPLUS")
)

// StepError is the error of a failed step of talking to the server; Step
// is one of the Step constants.
type StepError = source.StepError

// Options are the knobs of Dial that are not part of the configuration.
// The zero value is ready to use.
type Options = source.ClientOptions

// Conn is a logged-in IMAP connection. Its methods must not be called
// concurrently. When a method's context ends the connection is closed, since
// IMAP offers no way to abandon a command half-way.
type Conn struct {
	client  *imapclient.Client
	log     *slog.Logger
	timeout time.Duration

	// caps is the capability set after login. Decisions are taken on it,
	// never on imapclient's own (which may be refetched, or nil after a
	// failed refetch: imapclient's Move then falls back to a plain EXPUNGE).
	caps imap.CapSet
	// idle reports whether WaitForMail uses IDLE (tests turn it off to
	// exercise polling).
	idle bool

	// trace gets a copy of the protocol's traffic (tests; see dial).
	trace io.Writer
	// limit bounds the responses imapclient reads.
	limit *responseLimit

	// uidNext is UIDNEXT as the last Select reported it.
	uidNext uint32

	// newMail is signalled (never blocking) by the reader goroutine on each
	// EXISTS response.
	newMail chan struct{}

	mu       sync.Mutex
	abortErr error // why the connection was closed by a guard, if it was
	closed   bool  // Close was called
}

// Dial connects to the server of cfg, secures the connection with TLS
// (implicit TLS or STARTTLS per cfg.TLS; the certificate is always verified,
// against the system's roots plus cfg.CACert), and logs in: with the SASL
// client of opts.SASL when set, else with cfg.Username and cfg.Password by
// LOGIN (or AUTHENTICATE PLAIN where LOGIN is disabled). It never logs in
// without TLS. It does not select a folder.
//
// The error is a *StepError naming the step that failed (StepConnect,
// StepTLS or StepLogin); a refused login also matches ErrAuth.
func Dial(ctx context.Context, cfg imapconf.Config, opts Options) (*Conn, error) {
	c, err := dial(ctx, cfg, opts, nil)
	if err != nil {
		return nil, redact(err, cfg.Password, cfg.ClientSecret)
	}
	return c, nil
}

// dial is Dial; trace, when set (tests), gets a copy of the protocol's
// traffic, the login's password included.
func dial(ctx context.Context, cfg imapconf.Config, opts Options, trace io.Writer) (*Conn, error) {
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	c := &Conn{
		trace:   trace,
		timeout: opts.CommandTimeout,
		newMail: make(chan struct{}, 1),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCommandTimeout
	}
	spec := source.DialSpec{Proto: "imap", ImplicitPort: 993, StartTLSPort: 143, Timeout: timeout, Dial: opts.Dial, Logger: opts.Logger}
	log, err := source.DialTLS(ctx, cfg, spec, func(d *source.Dialing) error { return c.setup(d, cfg, opts) })
	if err != nil {
		return nil, err
	}
	log.Debug("imap logged in", "idle", c.idle)
	return c, nil
}

// setup reads the greeting (after STARTTLS on a plain connection), logs in
// and reads the capabilities after login.
func (c *Conn) setup(d *source.Dialing, cfg imapconf.Config, opts Options) error {
	c.log = d.Log
	clientOpts := &imapclient.Options{
		TLSConfig: d.TLS,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs on imapclient's reader goroutine: only signal.
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case c.newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	if c.trace != nil {
		clientOpts.DebugWriter = c.trace
	}
	// imapclient reads through a responseLimit. A plain connection is
	// secured first, its greeting read by startTLS.
	conn, r := d.Conn, io.Reader(d.Conn)
	if d.Mode == imapconf.TLSStartTLS {
		tlsConn, err := startTLS(d)
		if err != nil {
			return err
		}
		conn, r = tlsConn, io.MultiReader(strings.NewReader(replayedGreeting), tlsConn)
	}
	c.limit = newResponseLimit(r)
	c.client = imapclient.New(&limitedConn{Conn: conn, limit: c.limit}, clientOpts)
	if err := c.client.WaitGreeting(); err != nil {
		_ = c.client.Close()
		return d.Fail(StepConnect, fmt.Errorf("greeting: %w", c.readFailure(err)))
	}
	d.Log.Debug("imap tls established")

	if err := c.login(d.Ctx, cfg, opts); err != nil {
		_ = c.client.Close()
		// A step of the SASL hook's own (getting a token) keeps its name.
		var se *StepError
		if errors.As(err, &se) && d.Ctx.Err() == nil {
			return se
		}
		return d.Fail(StepLogin, c.readFailure(err))
	}
	// Login changes the capabilities. Ask for them: imapclient's Caps may
	// still return those from before login, as it forgets them only after
	// the login's Wait has returned (when the server's OK carried none).
	caps, err := c.client.Capability().Wait()
	if err != nil {
		_ = c.client.Close()
		return d.Fail(StepLogin, fmt.Errorf("reading capabilities after login: %w", c.readFailure(err)))
	}
	c.caps = caps.Copy()
	c.idle = c.caps.Has(imap.CapIdle)
	return nil
}

// login authenticates on the TLS connection.
func (c *Conn) login(ctx context.Context, cfg imapconf.Config, opts Options) error {
	if c.client.State() == imap.ConnStateAuthenticated {
		return nil // PREAUTH over implicit TLS
	}
	if opts.SASL != nil {
		client, err := opts.SASL(ctx, cfg)
		if err != nil {
			return err
		}
		return source.SASLFailure(client, authError(c.client.Authenticate(&emptyAnswer{Client: client})))
	}
	if cfg.Auth == imapconf.AuthOAuth2 {
		return errors.New("oauth2 login needs a SASL client (XOAUTH2), none was given")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return errors.New("no user name or password")
	}
	caps := c.client.Caps()
	if caps == nil {
		return errors.New("reading capabilities failed")
	}
	if !caps.Has(imap.CapLoginDisabled) {
		return authError(c.client.Login(cfg.Username, cfg.Password).Wait())
	}
	if caps.Has(imap.AuthCap(sasl.Plain)) {
		return authError(c.client.Authenticate(sasl.NewPlainClient("", cfg.Username, cfg.Password)))
	}
	return errors.New("server offers neither LOGIN nor AUTHENTICATE PLAIN")
}

// errRejected is the error of an AUTHENTICATE ended by the client because
// the mechanism answered a challenge with an empty response.
var errRejected = fmt.Errorf("%w: the server rejected the credentials", ErrAuth)

// emptyAnswer wraps a SASL client whose empty answer to a challenge means
// the exchange has failed: XOAUTH2's only challenge is the server's error,
// which the client must acknowledge with an empty response before the server
// answers NO. imapclient sends an empty response as "=", which RFC 4959
// allows only as the initial response, and Dovecot drops the connection on
// it ("Invalid base64 data"). So the exchange ends here with errRejected
// instead; the caller closes the connection, as after any failed login.
// Other mechanisms are left alone.
type emptyAnswer struct {
	sasl.Client
	mech string
}

func (e *emptyAnswer) Start() (string, []byte, error) {
	mech, ir, err := e.Client.Start()
	e.mech = mech
	return mech, ir, err
}

func (e *emptyAnswer) Next(challenge []byte) ([]byte, error) {
	resp, err := e.Client.Next(challenge)
	if err == nil && len(resp) == 0 && strings.EqualFold(e.mech, "XOAUTH2") {
		return nil, errRejected
	}
	return resp, err
}

// authError marks the server's refusal of a login with ErrAuth. Refusals that
// say the server, not the credentials, is the trouble are left unmarked, to
// be retried at the usual pace.
func authError(err error) error {
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Type != imap.StatusResponseTypeNo {
		return err
	}
	switch imapErr.Code {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeInUse, imap.ResponseCodeLimit:
		return err
	}
	return fmt.Errorf("%w: %w", ErrAuth, err)
}

// redact returns err, or, when its text contains one of the secrets, a
// *StepError of the same step whose text has them replaced and which still
// matches ErrAuth if err did. A server is not expected to echo a password;
// this makes sure none reaches a log or the UI if one does.
func redact(err error, secrets ...string) error {
	return source.RedactError(err, []error{ErrAuth}, secrets...)
}

// Capabilities returns the server's capabilities after login, sorted.
func (c *Conn) Capabilities() []string {
	caps := make([]string, 0, len(c.caps))
	for cp := range c.caps {
		caps = append(caps, string(cp))
	}
	slices.Sort(caps)
	return caps
}

// HasIdle reports whether the server supports IDLE, so that WaitForMail
// is told of new mail at once instead of by polling.
func (c *Conn) HasIdle() bool { return c.caps.Has(imap.CapIdle) }

// Noop sends NOOP: it checks that the connection is alive and lets the
// server report changes.
func (c *Conn) Noop(ctx context.Context) error {
	return c.do(ctx, StepNoop, func() error { return c.client.Noop().Wait() })
}

// Close logs out (waiting briefly for the server) and closes the connection.
// It returns nil also when the connection had already failed.
func (c *Conn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	if !c.isClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.do(ctx, StepLogout, func() error { return c.client.Logout().Wait() })
		cancel()
	}
	if err := c.client.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		c.log.Debug("imap close", "err", err)
	}
	return nil
}

// do runs one command round: it fails at once on a closed connection, and
// closes the connection when ctx ends or the server does not answer within
// the command timeout (scaled up by extra). Errors are *StepError of step.
func (c *Conn) do(ctx context.Context, step string, fn func() error) error {
	return c.doFor(ctx, step, 0, fn)
}

func (c *Conn) doFor(ctx context.Context, step string, extra time.Duration, fn func() error) error {
	if err := c.alive(); err != nil {
		return &StepError{Step: step, Err: err}
	}
	stop := c.guard(ctx, c.timeout+extra)
	err := fn()
	stop()
	if err != nil {
		return &StepError{Step: step, Err: c.cause(err)}
	}
	return nil
}

// guard closes the connection when ctx ends or after timeout (none if
// zero), recording why; the returned function disarms it.
func (c *Conn) guard(ctx context.Context, timeout time.Duration) (stop func()) {
	var timer *time.Timer
	if timeout > 0 {
		timer = time.AfterFunc(timeout, func() {
			c.abort(fmt.Errorf("%w: waited %v", ErrTimeout, timeout))
		})
	}
	stopCtx := context.AfterFunc(ctx, func() { c.abort(context.Cause(ctx)) })
	return func() {
		if timer != nil {
			timer.Stop()
		}
		stopCtx()
	}
}

// abort closes the connection because of reason.
func (c *Conn) abort(reason error) {
	c.mu.Lock()
	if c.abortErr == nil {
		c.abortErr = reason
	}
	c.mu.Unlock()
	_ = c.client.Close()
}

// alive returns nil if the connection is open, else why it is not.
func (c *Conn) alive() error {
	if c.isClosed() {
		return c.cause(nil)
	}
	return nil
}

// isClosed reports whether the connection is closed or closing.
// imapclient fails the pending commands (state logout) before it closes
// Closed(): the state tells a command's error of a dying connection at once.
func (c *Conn) isClosed() bool {
	select {
	case <-c.client.Closed():
		return true
	default:
		return c.client.State() == imap.ConnStateLogout
	}
}

// cause returns the error to report for err, a command's error: the reason
// a guard closed the connection if one did, ErrClosed if the connection is
// closed (with the response that was too long, if that closed it), else
// err.
func (c *Conn) cause(err error) error {
	c.mu.Lock()
	abortErr := c.abortErr
	c.mu.Unlock()
	if abortErr != nil {
		return abortErr
	}
	if c.isClosed() {
		err = c.readFailure(err)
		if err == nil {
			return ErrClosed
		}
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// readFailure returns the error of the response that was too long if
// reading one failed the connection, else err: imapclient passes on the
// errors of its reader only as text.
func (c *Conn) readFailure(err error) error {
	if lerr := c.limit.Failure(); lerr != nil {
		return lerr
	}
	return err
}

// TestResult is the outcome of Test, in the JSON form the API returns.
type TestResult struct {
	OK bool `json:"ok"`
	// Step is the step that failed (one of the Step constants), empty when
	// OK.
	Step string `json:"step,omitempty"`
	// Error says what went wrong in that step; never the password.
	Error        string   `json:"error,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	// Messages is the number of messages in the folder.
	Messages    uint32 `json:"messages"`
	UIDValidity uint32 `json:"uidValidity,omitempty"`
}

// Test tests cfg as the test-connection operation does: it connects,
// secures the connection, logs in and selects the folder, then reports the
// capabilities and the number of messages, or the step that failed and why.
func Test(ctx context.Context, cfg imapconf.Config, opts Options) TestResult {
	fail := func(err error) TestResult {
		step, msg := source.StepOf(redact(err, cfg.Password, cfg.ClientSecret), "")
		return TestResult{Step: step, Error: msg}
	}
	c, err := Dial(ctx, cfg, opts)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	folder := cfg.Folder
	if folder == "" {
		folder = imapconf.DefaultFolder
	}
	mb, err := c.Examine(ctx, folder)
	if err != nil {
		return fail(err)
	}
	return TestResult{
		OK:           true,
		Capabilities: c.Capabilities(),
		Messages:     mb.Messages,
		UIDValidity:  mb.UIDValidity,
	}
}
