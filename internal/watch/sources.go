package watch

import (
	"context"
	"log/slog"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sources"
)

// newSource returns the source that reads configuration c (Options.Sources
// in tests), and its OAuth2 token source if it has one.
func (m *Manager) newSource(c imapconf.Config, log *slog.Logger) (source.Source, sources.Tokens, error) {
	if m.opts.Sources != nil {
		src, err := m.opts.Sources(c)
		return src, nil, err
	}
	o := m.opts
	return sources.New(c, sources.Options{Logger: log, Dial: o.dial(), HTTPDial: o.Egress.Dialer(),
		DialTimeout: o.DialTimeout, CommandTimeout: o.CommandTimeout, IdleMax: o.IdleMax, SizeCap: o.SizeCap, Spool: o.Spool,
		Grants: m.store})
}

// TestConnection is the test-connection operation for configuration c (see
// sources.Test). Every address may be connected to; Manager.TestConnection
// applies the egress policy. It knows no sign-in: an oauth2-delegated
// configuration fails at the token step (Manager.TestConnection uses the
// store's grants).
func TestConnection(ctx context.Context, c imapconf.Config, log *slog.Logger) any {
	return sources.Test(ctx, c, sources.Options{Logger: log})
}

// TestConnection is the package's TestConnection under the manager's
// egress policy (a refused address fails the step that connects to it:
// connect, or token for an OAuth2 token endpoint, with the reason), with
// the grants of the oauth2-delegated sign-ins in the manager's store.
func (m *Manager) TestConnection(ctx context.Context, c imapconf.Config) any {
	dial := m.opts.Egress.Dialer()
	return sources.Test(ctx, c, sources.Options{Logger: m.log.With("imap", c.Name), Dial: dial, HTTPDial: dial, Grants: m.store})
}
