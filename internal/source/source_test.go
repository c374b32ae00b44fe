package source

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
)

func TestTLSMode(t *testing.T) {
	tests := []struct {
		tls      string
		port     int
		wantMode string
		wantPort int
	}{
		{"", 993, imapconf.TLSImplicit, 993},
		{"", 143, imapconf.TLSStartTLS, 143},
		{"", 0, imapconf.TLSImplicit, 993},
		{imapconf.TLSStartTLS, 0, imapconf.TLSStartTLS, 143},
		{imapconf.TLSImplicit, 10993, imapconf.TLSImplicit, 10993},
	}
	for _, tt := range tests {
		mode, port, err := TLSMode(imapconf.Config{TLS: tt.tls, Port: tt.port}, 993, 143)
		if err != nil || mode != tt.wantMode || port != tt.wantPort {
			t.Errorf("TLSMode(%q, %d): got %q %d %v, want %q %d", tt.tls, tt.port, mode, port, err, tt.wantMode, tt.wantPort)
		}
	}
	if _, _, err := TLSMode(imapconf.Config{TLS: "none", Port: 143}, 993, 143); err == nil {
		t.Error("plaintext accepted")
	}
	if _, err := TLSConfig(imapconf.Config{CACert: "not pem"}); err == nil {
		t.Error("a caCert without a certificate accepted")
	}
}

func TestRedact(t *testing.T) {
	got, found := Redact("login failed for pw Secret-1 and Secret-1", "Secret-1", "")
	if !found || got != "login failed for pw [redacted] and [redacted]" {
		t.Errorf("got %q %v", got, found)
	}
	if got, found := Redact("nothing here", "Secret-1"); found || got != "nothing here" {
		t.Errorf("got %q %v", got, found)
	}
}

func TestRedactErrorKeepsStepAndSentinels(t *testing.T) {
	other := errors.New("other")
	err := &StepError{Step: "login", Err: fmt.Errorf("%w: server said pw=Hunter-2", ErrAuth)}
	got := RedactError(err, []error{ErrAuth, other}, "Hunter-2")
	var se *StepError
	if !errors.As(got, &se) || se.Step != "login" || strings.Contains(got.Error(), "Hunter-2") {
		t.Errorf("got %v, want step login without the secret", got)
	}
	if !errors.Is(got, ErrAuth) || errors.Is(got, other) {
		t.Errorf("got ErrAuth %v, other %v; want only ErrAuth kept", errors.Is(got, ErrAuth), errors.Is(got, other))
	}
	if RedactError(err, nil, "absent") != error(err) || RedactError(nil, nil, "x") != nil {
		t.Error("an error without the secret, or nil, was changed")
	}
}
