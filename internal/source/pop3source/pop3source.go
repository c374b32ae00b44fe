// Package pop3source is the POP3 client half of the mail watcher for POP3S
// mailboxes: it connects to a configured mailbox (always over verified TLS:
// implicit TLS or STLS), lists the messages with their unique ids (UIDL),
// reads them with bounded memory, and deletes the ones the caller has
// durably recorded. Source is its source.Source.
//
// It is a client of its own on net/textproto rather than an existing
// library, which left dot-stuffing in place, split long lines, buffered
// whole messages and had no STLS (see DESIGN.md §8). Messages are returned
// byte for byte as the server sent them, with only the dot-stuffing undone.
//
// POP3 deletes at QUIT: DELE only marks a message, and the server removes
// the marked messages when it receives QUIT. A connection dropped or closed
// without QUIT (Close) deletes nothing. So the caller marks with Dele only
// messages whose record is committed, and calls Quit only after that commit.
//
// A Conn is used by one goroutine. Every error Dial and the Conn's methods
// return is a *StepError naming the step that failed. Authentication
// failures also match ErrAuth, dead connections ErrClosed, timeouts
// ErrTimeout, servers without UIDL ErrNoUIDL, and a line longer than
// source.MaxLineLength (which closes the connection) source.ErrLineTooLong.
// Errors never contain the password or client secret.
package pop3source

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
)

// The steps a StepError names.
const (
	StepConnect = source.StepConnect
	StepTLS     = source.StepTLS
	StepLogin   = source.StepLogin // CAPA, USER/PASS or AUTH
	StepStat    = "stat"           // STAT
	StepUIDL    = "uidl"           // UIDL
	StepList    = "list"           // LIST
	StepRetr    = "retr"           // RETR or TOP
	StepDele    = "dele"           // DELE
	StepNoop    = "noop"           // NOOP
	StepQuit    = "quit"           // QUIT, which removes the messages marked deleted
)

// Defaults for the zero values of Options and of method arguments.
const (
	// DefaultDialTimeout bounds Dial: connection, TLS, greeting and login.
	DefaultDialTimeout = 30 * time.Second
	// DefaultCommandTimeout bounds each command and its response.
	DefaultCommandTimeout = time.Minute
	// DefaultSizeCap is the size above which only a message's header is
	// kept.
	DefaultSizeCap = 50 << 20
)

const (
	// minRate is the transfer rate below which reading a message times
	// out: RETR gets CommandTimeout plus size/minRate.
	minRate = 64 << 10
	// maxSASLRounds bounds the challenges of one AUTH exchange.
	maxSASLRounds = 16
	// maxUIDLLen is the longest unique id RFC 1939 allows.
	maxUIDLLen = 70
	// maxListLines bounds the lines of a UIDL or LIST answer, one per
	// message: four times a mailbox of a million messages, which few POP3
	// servers would serve. Each line is parsed as it comes and only its
	// number and size or unique id (at most 70 bytes) is kept, so a hostile
	// server can make the client hold no more than such a mailbox would:
	// some hundreds of megabytes with the longest ids.
	maxListLines = 4_000_000
	// maxCapaLines bounds the lines of a CAPA answer, which are kept
	// whole; servers send about a dozen.
	maxCapaLines = 100
)

var (
	// ErrAuth is matched by errors of a login the server refused: a wrong
	// user name or password, an expired or revoked account or token.
	ErrAuth = source.ErrAuth

	// ErrClosed is matched by errors of a Conn whose connection has been
	// closed, by the server, the network or Close. Dial a new one.
	ErrClosed = source.ErrClosed

	// ErrTimeout is matched by errors of a command the server did not
	// answer in time. The connection is closed.
	ErrTimeout = source.ErrTimeout

	// ErrNoUIDL is matched by the error of UIDL on a server that does not
	// support it. Without unique ids, messages cannot be told apart across
	// sessions, so such a mailbox cannot be read reliably: it is refused
	// rather than guessed at.
	ErrNoUIDL = source.ErrNoUIDL
)

// StepError is the error of a failed step of talking to the server; Step
// is one of the Step constants.
type StepError = source.StepError

// ResponseError is the server's -ERR answer to a command. The connection
// remains usable.
type ResponseError struct {
	// Command is the command's name, such as "RETR" (never its arguments,
	// which could be a password).
	Command string
	// Text is what the server said after -ERR.
	Text string
}

// Error returns the command and the server's text.
func (e *ResponseError) Error() string {
	return fmt.Sprintf("server refused %s: -ERR %s", e.Command, e.Text)
}

// Options are the knobs of Dial that are not part of the configuration.
// The zero value is ready to use.
type Options = source.ClientOptions

// Conn is a logged-in POP3 connection (in the TRANSACTION state). Its
// methods must not be called concurrently. When a method's context ends the
// connection is closed, which deletes nothing.
type Conn struct {
	nc      net.Conn // the TLS connection
	tp      *textproto.Conn
	log     *slog.Logger
	timeout time.Duration
	caps    []string // CAPA after login, nil if the server has no CAPA

	mu       sync.Mutex
	abortErr error // why the connection was closed, if it was
}

// Dial connects to the server of cfg, secures the connection with TLS
// (implicit TLS or STLS per cfg.TLS; the certificate is always verified,
// against the system's roots plus cfg.CACert), and logs in: with the SASL
// client of opts.SASL when set, else with cfg.Username and cfg.Password by
// USER and PASS (or AUTH PLAIN where USER is not offered). It never logs in
// without TLS.
//
// The error is a *StepError naming the step that failed (StepConnect,
// StepTLS or StepLogin); a refused login also matches ErrAuth.
func Dial(ctx context.Context, cfg imapconf.Config, opts Options) (*Conn, error) {
	c, err := dial(ctx, cfg, opts)
	if err != nil {
		return nil, redact(err, cfg.Password, cfg.ClientSecret)
	}
	return c, nil
}

func dial(ctx context.Context, cfg imapconf.Config, opts Options) (*Conn, error) {
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	c := &Conn{timeout: opts.CommandTimeout}
	if c.timeout <= 0 {
		c.timeout = DefaultCommandTimeout
	}
	spec := source.DialSpec{Proto: "pop3", ImplicitPort: 995, StartTLSPort: 110, Timeout: timeout, Dial: opts.Dial, Logger: opts.Logger}
	log, err := source.DialTLS(ctx, cfg, spec, func(d *source.Dialing) error { return c.setup(d, cfg, opts) })
	if err != nil {
		return nil, err
	}
	log.Debug("pop3 logged in")
	return c, nil
}

// setup reads the greeting, secures a plain connection with STLS, logs in
// and reads the capabilities.
func (c *Conn) setup(d *source.Dialing, cfg imapconf.Config, opts Options) error {
	c.log = d.Log
	c.setConn(d.Conn)
	if err := c.greeting(); err != nil {
		return d.Fail(StepConnect, err)
	}
	if d.Mode == imapconf.TLSStartTLS {
		// STLS is sent whatever CAPA says: a server without it answers
		// -ERR, and nothing is sent in the clear before TLS but these.
		if _, err := c.cmd("STLS", "STLS"); err != nil {
			var re *ResponseError
			if errors.As(err, &re) {
				err = fmt.Errorf("server refused STLS, so the connection cannot be secured: %w", err)
			}
			return d.Fail(StepTLS, err)
		}
		// Anything the server sent after its +OK was sent in the clear and
		// could have been injected.
		if c.tp.R.Buffered() > 0 {
			return d.Fail(StepTLS, errors.New("server sent data after its STLS response"))
		}
		tlsConn, err := d.StartTLS()
		if err != nil {
			return err
		}
		c.setConn(tlsConn)
	}
	d.Log.Debug("pop3 tls established")

	caps, err := c.capa()
	if err != nil {
		return d.Fail(StepLogin, fmt.Errorf("reading capabilities: %w", err))
	}
	if err := c.login(d.Ctx, cfg, opts, caps); err != nil {
		// A step of the SASL hook's own (getting a token) keeps its name.
		var se *StepError
		if errors.As(err, &se) && d.Ctx.Err() == nil {
			return se
		}
		return d.Fail(StepLogin, err)
	}
	// The capabilities after login may differ (RFC 2449).
	if c.caps, err = c.capa(); err != nil {
		return d.Fail(StepLogin, fmt.Errorf("reading capabilities after login: %w", err))
	}
	return nil
}

func (c *Conn) setConn(nc net.Conn) {
	c.nc = nc
	c.tp = textproto.NewConn(nc)
}

// greeting reads the server's greeting.
func (c *Conn) greeting() error {
	if _, err := c.response("greeting"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// login authenticates on the TLS connection.
func (c *Conn) login(ctx context.Context, cfg imapconf.Config, opts Options, caps []string) error {
	if opts.SASL != nil {
		client, err := opts.SASL(ctx, cfg)
		if err != nil {
			return err
		}
		return source.SASLFailure(client, c.auth(client))
	}
	if cfg.Auth == imapconf.AuthOAuth2 {
		return errors.New("oauth2 login needs a SASL client (XOAUTH2), none was given")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return errors.New("no user name or password")
	}
	if caps != nil && !hasCap(caps, "USER") && hasSASL(caps, sasl.Plain) {
		return c.auth(sasl.NewPlainClient("", cfg.Username, cfg.Password))
	}
	if strings.ContainsAny(cfg.Username+cfg.Password, "\r\n") {
		return errors.New("user name or password contains a line break")
	}
	if _, err := c.cmd("USER", "USER "+cfg.Username); err != nil {
		return authError(err)
	}
	_, err := c.cmd("PASS", "PASS "+cfg.Password)
	return authError(err)
}

// auth runs an AUTH exchange (RFC 5034) with client.
func (c *Conn) auth(client sasl.Client) error {
	mech, ir, err := client.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	// An initial response that would make the line longer than 255 octets
	// is sent as the answer to the server's first, empty challenge
	// instead (RFC 5034 §4): XOAUTH2 tokens are that long.
	var pending []byte
	if ir != nil {
		arg := "="
		if len(ir) > 0 {
			arg = base64.StdEncoding.EncodeToString(ir)
		}
		if len(line)+1+len(arg)+2 <= 255 {
			line += " " + arg
		} else {
			pending = ir
		}
	}
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return err
	}
	for range maxSASLRounds {
		resp, err := c.readLine()
		if err != nil {
			return err
		}
		switch {
		case resp == "+OK" || strings.HasPrefix(resp, "+OK "):
			return nil
		case resp == "-ERR" || strings.HasPrefix(resp, "-ERR "):
			return authError(&ResponseError{Command: "AUTH " + mech, Text: strings.TrimSpace(strings.TrimPrefix(resp, "-ERR"))})
		case resp == "+" || strings.HasPrefix(resp, "+ "):
			challenge, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(resp, "+")))
			if err != nil {
				return c.cancelAuth(fmt.Errorf("invalid base64 in the server's challenge: %w", err))
			}
			answer := pending
			if pending != nil {
				pending = nil
			} else if answer, err = client.Next(challenge); err != nil {
				return c.cancelAuth(err)
			}
			if err := c.tp.PrintfLine("%s", base64.StdEncoding.EncodeToString(answer)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected response to AUTH: %q", truncate(resp))
		}
	}
	return fmt.Errorf("AUTH %s: more than %d challenges", mech, maxSASLRounds)
}

// cancelAuth cancels an AUTH exchange ("*") and returns err.
func (c *Conn) cancelAuth(err error) error {
	if werr := c.tp.PrintfLine("*"); werr != nil {
		return werr
	}
	if _, rerr := c.response("AUTH"); rerr != nil {
		var re *ResponseError
		if !errors.As(rerr, &re) {
			return rerr
		}
	}
	return err
}

// authError marks the server's refusal of a login with ErrAuth. Refusals
// with a response code saying the server, not the credentials, is the
// trouble (RFC 2449, 3206) are left unmarked.
func authError(err error) error {
	var re *ResponseError
	if !errors.As(err, &re) {
		return err
	}
	text := strings.ToUpper(re.Text)
	for _, code := range []string{"[SYS/", "[IN-USE]", "[LOGIN-DELAY]"} {
		if strings.HasPrefix(text, code) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrAuth, err)
}

// capa returns the capabilities, or nil if the server has no CAPA.
func (c *Conn) capa() ([]string, error) {
	if _, err := c.cmd("CAPA", "CAPA"); err != nil {
		var re *ResponseError
		if errors.As(err, &re) {
			return nil, nil
		}
		return nil, err
	}
	caps := []string{}
	err := c.readLines(maxCapaLines, func(line string) error {
		caps = append(caps, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return caps, nil
}

func hasCap(caps []string, name string) bool {
	for _, cp := range caps {
		f := strings.Fields(cp)
		if len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

func hasSASL(caps []string, mech string) bool {
	for _, cp := range caps {
		f := strings.Fields(cp)
		if len(f) > 1 && strings.EqualFold(f[0], "SASL") {
			for _, m := range f[1:] {
				if strings.EqualFold(m, mech) {
					return true
				}
			}
		}
	}
	return false
}

// redact returns err, or, when its text contains one of the secrets, a
// *StepError of the same step whose text has them replaced and which still
// matches ErrAuth if err did.
func redact(err error, secrets ...string) error {
	return source.RedactError(err, []error{ErrAuth}, secrets...)
}

// cmd sends line and reads the one-line response, returning its text after
// +OK; -ERR is a *ResponseError of command name.
func (c *Conn) cmd(name, line string) (string, error) {
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return "", err
	}
	return c.response(name)
}

// readLine reads one line of the server's, at most source.MaxLineLength
// bytes long.
func (c *Conn) readLine() (string, error) { return source.ReadLine(c.tp.R) }

// response reads a one-line response.
func (c *Conn) response(name string) (string, error) {
	line, err := c.readLine()
	if err != nil {
		return "", err
	}
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return "", &ResponseError{Command: name, Text: strings.TrimSpace(strings.TrimPrefix(line, "-ERR"))}
	}
	return "", fmt.Errorf("unexpected response to %s: %q", name, truncate(line))
}

// readLines reads the lines of a multi-line response up to the line ".",
// undoing the dot-stuffing, and passes each to fn, which may keep it. An
// answer of more than limit lines fails, and so does fn; the rest of the
// answer is then left unread, which leaves the session out of step (do
// closes the connection).
func (c *Conn) readLines(limit int, fn func(line string) error) error {
	for n := 0; ; n++ {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if line == "." {
			return nil
		}
		if n == limit {
			return fmt.Errorf("reading the server's reply: more than %d lines", limit)
		}
		if err := fn(strings.TrimPrefix(line, ".")); err != nil {
			return err
		}
	}
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// Capabilities returns what the server answered to CAPA after login, nil if
// it has no CAPA.
func (c *Conn) Capabilities() []string { return append([]string(nil), c.caps...) }

// do runs one command round: it fails at once on a closed connection, and
// closes the connection when ctx ends, when the server does not answer
// within the command timeout (plus extra), or when the conversation failed
// other than by -ERR (the state of the session is then unknown). Errors are
// *StepError of step.
func (c *Conn) do(ctx context.Context, step string, extra time.Duration, fn func() error) error {
	if err := c.alive(); err != nil {
		return &StepError{Step: step, Err: err}
	}
	timeout := c.timeout + extra
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { c.abort(context.Cause(ctx)) })
	err := fn()
	stop()
	if err == nil {
		return nil
	}
	var re *ResponseError
	if errors.As(err, &re) {
		return &StepError{Step: step, Err: err}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.abort(fmt.Errorf("%w: waited %v", ErrTimeout, timeout))
	} else {
		c.abort(fmt.Errorf("%w: %w", ErrClosed, err))
	}
	return &StepError{Step: step, Err: c.cause()}
}

// abort closes the connection because of reason (the first reason sticks).
func (c *Conn) abort(reason error) {
	c.mu.Lock()
	if c.abortErr == nil {
		c.abortErr = reason
	}
	c.mu.Unlock()
	_ = c.nc.Close()
}

// alive returns nil if the connection is open, else why it is not.
func (c *Conn) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abortErr
}

// cause returns why the connection was closed.
func (c *Conn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abortErr == nil {
		return ErrClosed
	}
	return c.abortErr
}

// Close closes the connection without QUIT, so the server deletes nothing,
// even messages marked with Dele. It returns nil also when the connection
// had already failed.
func (c *Conn) Close() error {
	c.abort(ErrClosed)
	return nil
}

// Quit sends QUIT, on which the server removes the messages marked with
// Dele, and closes the connection. Call it only after the records of the
// messages marked are committed. An error means the server may not have
// removed them (they are then still on the server, unmarked, for the next
// session).
func (c *Conn) Quit(ctx context.Context) error {
	err := c.do(ctx, StepQuit, 0, func() error {
		_, err := c.cmd("QUIT", "QUIT")
		return err
	})
	c.abort(ErrClosed)
	return err
}

// Noop sends NOOP, checking that the connection is alive.
func (c *Conn) Noop(ctx context.Context) error {
	return c.do(ctx, StepNoop, 0, func() error {
		_, err := c.cmd("NOOP", "NOOP")
		return err
	})
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
	// Messages is the number of messages in the mailbox.
	Messages int `json:"messages"`
	// Size is the size of the mailbox in bytes.
	Size int64 `json:"size"`
}

// Test tests cfg as the test-connection operation does: it connects,
// secures the connection, logs in and lists the unique ids (a server without
// UIDL fails step uidl), then reports the capabilities and the number of
// messages, or the step that failed and why. It deletes nothing.
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
	count, size, err := c.Stat(ctx)
	if err != nil {
		return fail(err)
	}
	if _, err := c.UIDL(ctx); err != nil {
		return fail(err)
	}
	_ = c.Quit(ctx)
	return TestResult{OK: true, Capabilities: c.Capabilities(), Messages: count, Size: size}
}

// bufioReader returns the reader of the connection's responses.
func (c *Conn) bufioReader() *bufio.Reader { return c.tp.R }
