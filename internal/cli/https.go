package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"mailtrigger/internal/config"
	"mailtrigger/internal/server"
	"mailtrigger/internal/tlsconf"
)

// frontDoor is the service's listeners: MAILTRIGGER_LISTEN, over HTTPS when
// certificates are set up (docs/https.md), and MAILTRIGGER_HTTP_LISTEN, plain
// HTTP answering ACME HTTP-01 challenges and redirecting to HTTPS.
type frontDoor struct {
	ln     net.Listener
	front  *tlsconf.Front
	httpLn net.Listener // nil: no MAILTRIGGER_HTTP_LISTEN
	redir  *http.Server
}

// openFrontDoor checks the certificate files (or sets up ACME) and listens.
func openFrontDoor(cfg config.Config, log *slog.Logger) (*frontDoor, error) {
	front, err := tlsconf.New(tlsconf.Options{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
		ACMEDomains: cfg.TLS.Domains(), ACMEEmail: cfg.TLS.ACMEEmail, ACMEDirectory: cfg.TLS.ACMEDirectory,
		DataDir: cfg.DataDir, Logger: log})
	if err != nil {
		return nil, err
	}
	d := &frontDoor{front: front}
	if d.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	if cfg.TLS.HTTPListen != "" {
		if d.httpLn, err = net.Listen("tcp", cfg.TLS.HTTPListen); err != nil {
			d.ln.Close()
			return nil, fmt.Errorf("listening on %s (MAILTRIGGER_HTTP_LISTEN): %w", cfg.TLS.HTTPListen, err)
		}
	}
	if front.TLS != nil {
		log.Info("serving HTTPS", "with", front.Describe)
	}
	return d, nil
}

// url is the address the service listens on, with its scheme.
func (d *frontDoor) url() string {
	if d.front.TLS != nil {
		return "https://" + d.ln.Addr().String()
	}
	return "http://" + d.ln.Addr().String()
}

// serve serves srv on the listeners until shutdown; an error that stops a
// listener comes on the channel.
func (d *frontDoor) serve(srv *http.Server, log *slog.Logger) <-chan error {
	errc := make(chan error, 2)
	if d.front.TLS == nil {
		go func() { errc <- srv.Serve(d.ln) }()
	} else {
		srv.TLSConfig = d.front.TLS
		go func() { errc <- srv.ServeTLS(d.ln, "", "") }()
	}
	if d.httpLn != nil {
		d.redir = server.HTTPServer(d.front.HTTPHandler(d.ln.Addr().String()), log, server.Timeouts{})
		log.Info("redirecting plain HTTP to HTTPS", "addr", "http://"+d.httpLn.Addr().String())
		go func() { errc <- d.redir.Serve(d.httpLn) }()
	}
	return errc
}

// shutdown stops srv and the redirecting server gracefully.
func (d *frontDoor) shutdown(ctx context.Context, srv *http.Server) error {
	err := srv.Shutdown(ctx)
	if d.redir != nil {
		err = errors.Join(err, d.redir.Shutdown(ctx))
	}
	return err
}
