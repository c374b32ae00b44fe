package alert_test

import (
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/alert"
)

// An error text comes from a server (an IMAP server, a token endpoint, a
// webhook's redirect): its line breaks must not let it write lines of its
// own into the alert e-mail, such as a Link to somewhere else.
func TestTextKeepsForeignLinesIndented(t *testing.T) {
	p := alert.Payload{Type: alert.TypeAuthFailed, OccurredAt: time.Now(),
		Object:   alert.Object{Kind: "mailbox", Name: "support", URL: "https://mt.example.com/imap/support"},
		Previous: "ok", Current: "auth_failed",
		Error: "login: authentication failed\r\nLink:        https://evil.example/reset\rEvent:       mailbox.recovered\n\nDetails:\u2028x"}
	body := alert.Text(p)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "Link:") && !strings.Contains(line, "https://mt.example.com/imap/support") {
			t.Errorf("the error wrote its own Link line:\n%s", body)
		}
		if strings.HasPrefix(line, "Event:") && !strings.Contains(line, alert.TypeAuthFailed) {
			t.Errorf("the error wrote its own Event line:\n%s", body)
		}
		if strings.ContainsAny(line, "\r\u2028") {
			t.Errorf("a carriage return or line separator went through: %q", line)
		}
	}
	if !strings.Contains(body, "https://evil.example/reset") {
		t.Errorf("the error's text was dropped rather than kept indented:\n%s", body)
	}
}
