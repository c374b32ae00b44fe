// Package sources picks the mail client of a mailbox configuration: the
// source.Source the watcher reads it with (New), and the test-connection
// operation (Test). It is the one place that knows which protocols there
// are; a new protocol is added here and in a package of its own.
package sources

import (
	"context"
	"log/slog"
	"net"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
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
}

// Supported reports whether this release reads mailboxes configured like c,
// and if not, says what it reads.
func Supported(c imapconf.Config) (ok bool, why string) {
	generic := c.Type == imapconf.TypeGeneric && (c.ServerType == imapconf.ServerIMAPS || c.ServerType == imapconf.ServerPOP3S) &&
		(c.Auth == imapconf.AuthPassword || c.Auth == imapconf.AuthOAuth2)
	if generic || c.Type == imapconf.TypeMSGraph {
		return true, ""
	}
	return false, "this release reads IMAP and POP3 mailboxes (password or OAuth2 login) and Microsoft Graph mailboxes, not " +
		c.ServerType + "/" + c.Type + "/" + c.Auth
}

// New returns the source of configuration c, and the OAuth2 token source
// of an IMAP or POP3 mailbox with OAuth2 login (nil otherwise), which lives
// as long as the source, so that a token is reused across reconnects until
// it is due.
func New(c imapconf.Config, o Options) (source.Source, *xoauth2.TokenSource, error) {
	if c.Type == imapconf.TypeMSGraph {
		return graphsource.NewSource(c, graphsource.Options{Logger: o.Logger, SizeCap: o.SizeCap, Dial: o.HTTPDial, Spool: o.Spool}), nil, nil
	}
	var ts *xoauth2.TokenSource
	var login source.LoginFunc
	if c.Auth == imapconf.AuthOAuth2 {
		var err error
		if ts, err = xoauth2.NewTokenSource(c, xoauth2.Options{Logger: o.Logger, Dial: o.HTTPDial}); err != nil {
			return nil, nil, err
		}
		// The token first (from the cache when not due), so that a
		// failure to get one is reported as the token step before any
		// connection is made.
		login = func(ctx context.Context) (source.SASLFunc, error) {
			if _, err := ts.Token(ctx); err != nil {
				return nil, err
			}
			return ts.SASL, nil
		}
	}
	if c.ServerType == imapconf.ServerPOP3S {
		return pop3source.NewSource(c, pop3source.SourceOptions{Options: pop3source.Options{Logger: o.Logger, Dial: o.Dial,
			DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout}, SizeCap: o.SizeCap, Login: login, Spool: o.Spool}), ts, nil
	}
	return imapsource.NewSource(c, imapsource.SourceOptions{Options: imapsource.Options{Logger: o.Logger, Dial: o.Dial,
		DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout}, SizeCap: o.SizeCap, IdleMax: o.IdleMax, Login: login, Spool: o.Spool}), ts, nil
}

// Test is the test-connection operation for configuration c: it tries the
// server the way its watcher reads it (IMAP, POP3 or Microsoft Graph),
// connecting with dial (nil: the defaults), and returns the source's result
// in its JSON form.
func Test(ctx context.Context, c imapconf.Config, log *slog.Logger, dial DialFunc) any {
	if c.Type == imapconf.TypeMSGraph {
		return graphsource.Test(ctx, c, graphsource.Options{Logger: log, Dial: dial})
	}
	pop3 := c.ServerType == imapconf.ServerPOP3S
	if c.Auth != imapconf.AuthOAuth2 {
		if pop3 {
			return pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: dial})
		}
		return imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: dial})
	}
	// OAuth2: the token first, so that a refused client secret is named
	// as such whatever the mail server would say.
	tokenFailed := func(err error) any {
		step, msg := source.StepOf(err, xoauth2.StepToken)
		if pop3 {
			return pop3source.TestResult{Step: step, Error: msg}
		}
		return imapsource.TestResult{Step: step, Error: msg}
	}
	ts, err := xoauth2.NewTokenSource(c, xoauth2.Options{Logger: log, Dial: dial})
	if err != nil {
		return tokenFailed(err)
	}
	if _, err := ts.Token(ctx); err != nil {
		return tokenFailed(err)
	}
	if pop3 {
		res := pop3source.Test(ctx, c, pop3source.Options{Logger: log, Dial: dial, SASL: ts.SASL})
		res.Error = ts.Redact(res.Error)
		return res
	}
	res := imapsource.Test(ctx, c, imapsource.Options{Logger: log, Dial: dial, SASL: ts.SASL})
	res.Error = ts.Redact(res.Error)
	return res
}
