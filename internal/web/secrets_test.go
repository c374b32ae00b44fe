package web

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// formValues is what the Edit panel submits for c, password left empty.
func formValues(c imapconf.Config) url.Values {
	return url.Values{"name": {c.Name}, "serverType": {c.ServerType}, "type": {c.Type}, "description": {c.Description},
		"enabled": {"on"}, "host": {c.Host}, "port": {strconv.Itoa(c.Port)}, "username": {c.Username}, "password": {""},
		"folder": {c.Folder}, "tls": {c.TLS}, "caCert": {strings.ReplaceAll(c.CACert, "\n", "\r\n")},
		"afterProcessing": {c.AfterProcessing}, "pollInterval": {strconv.Itoa(c.PollInterval)}, "backlog": {c.Backlog},
		"auth": {c.Auth}}
}

// TestIMAPFormBindsStoredPassword is issue 12's exfiltration through the UI:
// the Edit panel and its Test button with a new host, port and CA and the
// password left empty. The new server (a recorder in front of Dovecot) is
// never contacted; the page shows why by the password field; nothing is
// saved. With the server unchanged the stored password is used.
func TestIMAPFormBindsStoredPassword(t *testing.T) {
	d := testenv.StartDovecot(t)
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	user := d.AddUser(t, "uiexfil", "UI-Stored-PW-Tapir-3391")
	cfg, err := imapconf.Build(imapconf.Input{Name: p("ui_inbox"), Host: p(d.Host), Port: p(d.IMAPSPort), Username: p(user),
		Password: p(d.Password(t, user)), CACert: p(string(d.CACertPEM))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIMAP(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	rec := testenv.StartTLSRecorder(t, d.Addr(d.IMAPSPort), d.TLSConfig())
	evil := formValues(cfg)
	evil.Set("host", rec.Host)
	evil.Set("port", strconv.Itoa(rec.Port))
	evil.Set("caCert", string(rec.CACertPEM))
	const why = "required again because host, port and caCert changed"

	resp := h.post(c, "/imap/ui_inbox", evil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("save to a new server without the password: got %d, want 400", resp.StatusCode)
	}
	if !strings.Contains(resp.Body, `<p class="field-error" id="e-password">`+why) {
		t.Errorf("the page does not say by the password field that it is %s", why)
	}
	if got, _ := st.GetIMAP(ctx, "ui_inbox"); got.Host != d.Host || got.Port != d.IMAPSPort || got.Password != cfg.Password {
		t.Errorf("a refused save changed the configuration: %s:%d", got.Host, got.Port)
	}

	evil.Set("_orig", "ui_inbox")
	resp = h.post(c, "/imap/test", evil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, why) {
		t.Errorf("test against a new server without the password: got %d %s, want 400 naming the password", resp.StatusCode, resp.Body)
	}
	if rec.Hits() != 0 || rec.Saw(cfg.Password) {
		t.Fatalf("the new server was contacted %d times (password seen: %v)", rec.Hits(), rec.Saw(cfg.Password))
	}

	same := formValues(cfg)
	same.Set("_orig", "ui_inbox")
	resp = h.post(c, "/imap/test", same)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, `"ok":true`) {
		t.Errorf("test with the stored password and the same server: got %d %s", resp.StatusCode, resp.Body)
	}
	same.Set("description", "edited")
	if resp := h.post(c, "/imap/ui_inbox", same); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("save with the same server: got %d, want 303", resp.StatusCode)
	}
	if got, _ := st.GetIMAP(ctx, "ui_inbox"); got.Description != "edited" || got.Password != cfg.Password {
		t.Errorf("save with the same server: got %q, password kept %v", got.Description, got.Password == cfg.Password)
	}
	if strings.Contains(h.logs.String(), cfg.Password) {
		t.Error("the log contains the password")
	}
}
