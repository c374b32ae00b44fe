package watch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/store"
	"mailtrigger/internal/watch"
)

// TestEgressFencesSources: with MAILTRIGGER_EGRESS=public, test connection
// to a mail server on a loopback address fails at the connect step with the
// reason (IMAP and POP3), an OAuth2 token endpoint or a Graph authority on
// loopback fails at the token step without being asked anything, and a
// watcher of such a mailbox shows the reason; with 127.0.0.0/8 allowed the
// same test connection logs in.
func TestEgressFencesSources(t *testing.T) {
	denied, err := egress.Parse("public", "")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store.SQLite, watch.Options{Egress: denied})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := e.d.AddUser(t, "fenced", "pw-fenced")
	imapCfg := imapconf.Config{Name: "fenced", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Host: e.d.Host,
		Port: e.d.IMAPSPort, Username: addr, Password: "pw-fenced", CACert: string(e.d.CACertPEM), Folder: "INBOX",
		Auth: imapconf.AuthPassword}
	pop3Cfg := imapCfg
	pop3Cfg.ServerType, pop3Cfg.Port = imapconf.ServerPOP3S, e.d.POP3SPort
	const reason = " is a loopback address (MAILTRIGGER_EGRESS=public)"

	var asked atomic.Int32
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer tokenSrv.Close()
	oauthCfg := imapCfg
	oauthCfg.Auth, oauthCfg.TokenURL, oauthCfg.ClientID, oauthCfg.ClientSecret = imapconf.AuthOAuth2, tokenSrv.URL+"/token", "app", "S3cret-value"
	graphCfg := imapconf.Config{Name: "fenced_graph", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeMSGraph, Username: addr,
		TenantID: "contoso.example", ClientID: "app", ClientSecret: "S3cret-value", GraphURL: tokenSrv.URL, AuthorityURL: tokenSrv.URL,
		Folder: "INBOX"}

	for _, tt := range []struct {
		name string
		cfg  imapconf.Config
		step string
	}{
		{"imap", imapCfg, "connect"},
		{"pop3", pop3Cfg, "connect"},
		{"oauth2 token", oauthCfg, "token"},
		{"graph", graphCfg, "token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var step, msg string
			var ok bool
			switch r := e.mgr.TestConnection(ctx, tt.cfg).(type) {
			case imapsource.TestResult:
				ok, step, msg = r.OK, r.Step, r.Error
			case pop3source.TestResult:
				ok, step, msg = r.OK, r.Step, r.Error
			case graphsource.TestResult:
				ok, step, msg = r.OK, r.Step, r.Error
			default:
				t.Fatalf("got result %T", r)
			}
			if ok || step != tt.step || !strings.Contains(msg, "egress denied: ") || !strings.Contains(msg, reason) {
				t.Errorf("got ok %v, step %q, error %q; want step %q denied: …%s", ok, step, msg, tt.step, reason)
			}
			if strings.Contains(msg, "S3cret") || strings.Contains(msg, "not here") {
				t.Errorf("the error shows a secret or the server's answer: %q", msg)
			}
		})
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the token endpoint was asked %d times, want never", n)
	}

	e.mailbox("fenced_watch", nil)
	st := e.waitState("fenced_watch", imapconf.StateError, 20*time.Second)
	if !strings.Contains(st.LastError, "egress denied: ") || !strings.Contains(st.LastError, reason) {
		t.Errorf("got the watcher's last error %q, want …%s", st.LastError, reason)
	}

	allowed, err := egress.Parse("public", "127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	mgr := watch.New(watch.Deps{Store: e.st, Options: watch.Options{Egress: allowed}})
	if r := mgr.TestConnection(ctx, imapCfg).(imapsource.TestResult); !r.OK {
		t.Errorf("with 127.0.0.0/8 allowed: got %+v, want a login", r)
	}
	if r := mgr.TestConnection(ctx, pop3Cfg).(pop3source.TestResult); !r.OK {
		t.Errorf("with 127.0.0.0/8 allowed: got %+v, want a login", r)
	}
}
