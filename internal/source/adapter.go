package source

import (
	"context"
	"log/slog"
)

// What the adapters (imapsource, pop3source, graphsource Source) share.

// Logger returns log, or a logger that discards when log is nil.
func Logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// WithLogin returns o for one connection: with the SASL hook login returns
// when login is set (an OAuth2 login gets its token there, before any
// connection is made), else o as it is.
func (o ClientOptions) WithLogin(ctx context.Context, login LoginFunc) (ClientOptions, error) {
	if login == nil {
		return o, nil
	}
	hook, err := login(ctx)
	if err != nil {
		return o, err
	}
	o.SASL = hook
	return o, nil
}
