// Package sources picks the mail client of a mailbox configuration: the
// source.Source the watcher reads it with (New), and the test-connection
// operation (Test). It is the one place that knows which protocols there
// are; a new protocol is added here and in a package of its own.
package sources

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-sasl"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/delegated"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/source/xoauth2"
	"mailtrigger/internal/spool"
)

// DialFunc opens a network connection.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Options are the knobs of the sources New makes.
type Options struct {
	Logger *slog.Logger
	// Dial connects IMAP and POP3 servers; HTTPDial the Graph API and
	// OAuth2 token endpoints (the egress policy's; nil: the defaults).
	Dial, HTTPDial                       DialFunc
	DialTimeout, CommandTimeout, IdleMax time.Duration
	SizeCap                              int64
	// Spool takes the messages above its threshold into spool files
	// instead of memory (nil: every message is read into memory).
	Spool *spool.Spooler
	// Grants keeps the grants of oauth2-delegated configurations (the
	// store); without it those configurations fail at the token step.
	Grants delegated.Grants
}

// Tokens is the token source of a configuration with an OAuth2 login, as
// the watcher sees it: it lives as long as the source, so that a token is
// reused across reconnects until it is due.
type Tokens interface {
	// Invalidate makes the next login get a new token (a server refused
	// the last one).
	Invalidate()
	// RedactError returns err with the secrets and tokens replaced,
	// still matching the sentinels in keep it matched.
	RedactError(err error, keep ...error) error
}

// Supported reports whether this release reads mailboxes configured like c,
// and if not, says what it reads.
func Supported(c imapconf.Config) (ok bool, why string) {
	generic := c.Type == imapconf.TypeGeneric && (c.ServerType == imapconf.ServerIMAPS || c.ServerType == imapconf.ServerPOP3S) &&
		(c.Auth == imapconf.AuthPassword || c.Auth == imapconf.AuthOAuth2 || c.Auth == imapconf.AuthOAuth2Delegated)
	if generic || c.Type == imapconf.TypeMSGraph {
		return true, ""
	}
	return false, "this release reads IMAP and POP3 mailboxes (password, OAuth2 or signed-in OAuth2 login) and Microsoft Graph mailboxes, not " +
		c.ServerType + "/" + c.Type + "/" + c.Auth
}

// delegatedTokens is the token source of c, an oauth2-delegated
// configuration.
func delegatedTokens(c imapconf.Config, grants delegated.Grants, log *slog.Logger, dial DialFunc) (*delegated.TokenSource, error) {
	return delegated.New(c, grants, delegated.Options{Logger: log, Dial: dial})
}

// New returns the source of configuration c, and the token source of a
// mailbox with an OAuth2 login (IMAP and POP3 with oauth2, any type with
// oauth2-delegated; nil otherwise), which lives as long as the source, so
// that a token is reused across reconnects until it is due.
func New(c imapconf.Config, o Options) (source.Source, Tokens, error) {
	if c.Type == imapconf.TypeMSGraph {
		gopts := graphsource.Options{Logger: o.Logger, SizeCap: o.SizeCap, Dial: o.HTTPDial, Spool: o.Spool}
		if c.Auth != imapconf.AuthOAuth2Delegated {
			return graphsource.NewSource(c, gopts), nil, nil
		}
		ts, err := delegatedTokens(c, o.Grants, o.Logger, o.HTTPDial)
		if err != nil {
			return nil, nil, err
		}
		gopts.Bearer = ts
		return graphsource.NewSource(c, gopts), ts, nil
	}
	var tokens Tokens
	var login source.LoginFunc
	// tokenLogin logs in with XOAUTH2: the token first (from the cache
	// when not due), so that a failure to get one is reported as the
	// token step before any connection is made.
	tokenLogin := func(token func(context.Context) (string, error), sasl source.SASLFunc) source.LoginFunc {
		return func(ctx context.Context) (source.SASLFunc, error) {
			if _, err := token(ctx); err != nil {
				return nil, err
			}
			return sasl, nil
		}
	}
	switch c.Auth {
	case imapconf.AuthOAuth2:
		ts, err := xoauth2.NewTokenSource(c, xoauth2.Options{Logger: o.Logger, Dial: o.HTTPDial})
		if err != nil {
			return nil, nil, err
		}
		tokens, login = ts, tokenLogin(ts.Token, ts.SASL)
	case imapconf.AuthOAuth2Delegated:
		ts, err := delegatedTokens(c, o.Grants, o.Logger, o.HTTPDial)
		if err != nil {
			return nil, nil, err
		}
		tokens, login = ts, tokenLogin(ts.Token, ts.SASL)
	}
	if c.ServerType == imapconf.ServerPOP3S {
		return pop3source.NewSource(c, pop3source.SourceOptions{Options: pop3source.Options{Logger: o.Logger, Dial: o.Dial,
			DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout}, SizeCap: o.SizeCap, Login: login, Spool: o.Spool}), tokens, nil
	}
	return imapsource.NewSource(c, imapsource.SourceOptions{Options: imapsource.Options{Logger: o.Logger, Dial: o.Dial,
		DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout}, SizeCap: o.SizeCap, IdleMax: o.IdleMax, Login: login, Spool: o.Spool}), tokens, nil
}

// Test is the test-connection operation for configuration c: it tries the
// server the way its watcher reads it (IMAP, POP3 or Microsoft Graph),
// connecting with o.Dial and o.HTTPDial (nil: the defaults; o.Dial
// connects IMAP and POP3 servers), and returns the source's result in its
// JSON form. An oauth2-delegated configuration uses the grant of its
// sign-in in o.Grants (renewing its access token when due).
func Test(ctx context.Context, c imapconf.Config, o Options) any {
	log := o.Logger
	pop3 := c.ServerType == imapconf.ServerPOP3S
	tokenFailed := func(err error) any {
		step, msg := source.StepOf(err, xoauth2.StepToken)
		if errors.Is(err, delegated.ErrNoGrant) {
			msg = "nobody signed in yet: sign in first"
		}
		switch {
		case c.Type == imapconf.TypeMSGraph:
			return graphsource.TestResult{Step: step, Error: msg}
		case pop3:
			return pop3source.TestResult{Step: step, Error: msg}
		}
		return imapsource.TestResult{Step: step, Error: msg}
	}
	var ts testTokens
	var err error
	switch {
	case c.Auth == imapconf.AuthOAuth2Delegated:
		ts, err = delegatedTokens(c, o.Grants, log, o.HTTPDial)
	case c.Type == imapconf.TypeMSGraph:
		return graphsource.Test(ctx, c, graphsource.Options{Logger: log, Dial: o.HTTPDial})
	case c.Auth == imapconf.AuthOAuth2:
		ts, err = xoauth2.NewTokenSource(c, xoauth2.Options{Logger: log, Dial: o.HTTPDial})
	case pop3:
		return pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: o.Dial})
	default:
		return imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: o.Dial})
	}
	// The token first, so that a refused client secret or a missing or
	// revoked sign-in is named as such whatever the server would say.
	if err != nil {
		return tokenFailed(err)
	}
	if _, err := ts.Token(ctx); err != nil {
		return tokenFailed(err)
	}
	switch {
	case c.Type == imapconf.TypeMSGraph:
		res := graphsource.Test(ctx, c, graphsource.Options{Logger: log, Dial: o.HTTPDial, Bearer: ts})
		res.Error = ts.Redact(res.Error)
		return res
	case pop3:
		res := pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: o.Dial, SASL: ts.SASL})
		res.Error = ts.Redact(res.Error)
		return res
	}
	res := imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: o.Dial, SASL: ts.SASL})
	res.Error = ts.Redact(res.Error)
	return res
}

// testTokens is what Test needs of a token source: both kinds
// (xoauth2.TokenSource, delegated.TokenSource) have it.
type testTokens interface {
	graphsource.Bearer
	SASL(ctx context.Context, cfg imapconf.Config) (sasl.Client, error)
	Redact(msg string) string
}
