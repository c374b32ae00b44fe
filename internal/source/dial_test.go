package source

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
)

// TestDialTLSTimeouts: a server that stays silent fails the step it was
// silent in with ErrTimeout, whether the dial's time ran out (implicit TLS:
// the handshake) or a read's deadline passed first (a greeting read with a
// deadline of its own), for every protocol that dials with DialTLS.
func TestDialTLSTimeouts(t *testing.T) {
	host, port := sourcetest.SilentServer(t)
	spec := DialSpec{Proto: "test", ImplicitPort: 1, StartTLSPort: 2, Timeout: 300 * time.Millisecond}

	cfg := imapconf.Config{Host: host, Port: port, TLS: imapconf.TLSImplicit}
	_, err := DialTLS(context.Background(), cfg, spec, func(*Dialing) error { return nil })
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepTLS || !errors.Is(err, ErrTimeout) {
		t.Errorf("implicit TLS to a silent server: got %v, want a tls step matching ErrTimeout", err)
	}

	cfg.TLS = imapconf.TLSStartTLS
	spec.Timeout = time.Minute
	_, err = DialTLS(context.Background(), cfg, spec, func(d *Dialing) error {
		_ = d.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := d.Conn.Read(make([]byte, 1))
		return d.Fail(StepConnect, err)
	})
	if !errors.As(err, &se) || se.Step != StepConnect || !errors.Is(err, ErrTimeout) {
		t.Errorf("a greeting past its deadline: got %v, want a connect step matching ErrTimeout", err)
	}
}
