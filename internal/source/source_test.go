package source

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
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

// A server that echoes what it was sent echoes the secret in the form it
// travelled in: IMAP's quoted string (LOGIN), the base64 of SASL PLAIN's
// response (AUTHENTICATE PLAIN, POP3's AUTH PLAIN), a form-encoded token
// request (client_secret=…), a JSON string. None of them may get through.
func TestRedactEncodedForms(t *testing.T) {
	const pw = `Pa"ss\w+rd/=é&<x>`
	quoted := `"Pa\"ss\\w+rd/=é&<x>"`
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + pw))
	plain2 := base64.StdEncoding.EncodeToString([]byte("alice\x00alice\x00" + pw))
	jsonForm, _ := json.Marshal(pw)
	for name, msg := range map[string]string{
		"imap quoted":     `NO [AUTHENTICATIONFAILED] bad command: A1 LOGIN alice ` + quoted,
		"sasl plain":      "NO invalid response " + plain + " (auth)",
		"sasl plain user": "-ERR " + plain2,
		"base64 alone":    "bad: " + base64.StdEncoding.EncodeToString([]byte(pw)),
		"form encoded":    "invalid_client: grant_type=client_credentials&client_secret=" + url.QueryEscape(pw) + "&scope=x",
		"path escaped":    "no route /secrets/" + url.PathEscape(pw),
		"json":            `{"error":"invalid_client","echo":` + string(jsonForm) + `}`,
	} {
		got, found := Redact(msg, pw)
		if !found || !strings.Contains(got, "[redacted]") {
			t.Errorf("%s: got %q, found %v; want the secret redacted", name, got, found)
		}
		for _, leak := range []string{pw, `Pa\"ss`, "Pa%22ss", "w+rd", "w%2Brd", plain, plain2} {
			if strings.Contains(got, leak) {
				t.Errorf("%s: %q still holds %q", name, got, leak)
			}
		}
	}
	// Base64 that does not hold the secret is left alone.
	if got, found := Redact("token aGVsbG8gd29ybGQ= refused", pw); found || got != "token aGVsbG8gd29ybGQ= refused" {
		t.Errorf("got %q %v", got, found)
	}
}
