package watch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/client"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a store, a running watch manager and the API over them, and a
// private Dovecot.
type env struct {
	t   *testing.T
	st  *store.Store
	mgr *watch.Manager
	d   *testenv.Dovecot
	api *client.Client
}

func newEnv(t *testing.T, dialect store.Dialect, opts watch.Options) *env {
	t.Helper()
	return newEnvHook(t, dialect, opts, nil)
}

// newEnvHook is newEnv with a hook run in every ingest transaction.
func newEnvHook(t *testing.T, dialect store.Dialect, opts watch.Options, hook store.RecordHook) *env {
	t.Helper()
	return newEnvFull(t, dialect, opts, hook, nil)
}

// newEnvFull is newEnvHook that also writes every log record (debug
// included) to logTo when not nil, and starts Dovecot with dovecotOpts.
func newEnvFull(t *testing.T, dialect store.Dialect, opts watch.Options, hook store.RecordHook, logTo io.Writer,
	dovecotOpts ...testenv.DovecotOption) *env {
	t.Helper()
	e := &env{t: t, st: storetest.Open(t, dialect), d: testenv.StartDovecot(t, dovecotOpts...)}
	var out io.Writer = io.Discard
	level := slog.LevelInfo
	if testing.Verbose() {
		out, level = os.Stderr, slog.LevelDebug
	}
	if logTo != nil {
		out, level = io.MultiWriter(out, logTo), slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.ResyncEvery == 0 {
		opts.ResyncEvery = 200 * time.Millisecond
	}
	e.mgr = watch.New(watch.Deps{Store: e.st, Ingester: ingest.New(ingest.Deps{Store: e.st, Logger: log, Hook: hook}), Logger: log, Options: opts})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.mgr.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	srv := httptest.NewServer(server.Handler(server.Deps{Store: e.st, Logger: log, Runtime: &controlfake.Runtime{OnChanged: e.mgr.Changed, StatusOf: e.mgr.Status,
		TestWith: func(ctx context.Context, c imapconf.Config) any {
			return watch.TestConnection(ctx, c, log)
		}}}))
	t.Cleanup(srv.Close)
	tok, hash := auth.NewToken()
	if err := e.st.CreateToken(context.Background(), "t", hash); err != nil {
		t.Fatal(err)
	}
	e.api = &client.Client{BaseURL: srv.URL, Token: tok}
	return e
}

// mailbox creates a Dovecot user and an IMAP configuration reading it.
func (e *env) mailbox(name string, mod func(in *imapconf.Input)) (address string) {
	e.t.Helper()
	address = e.d.AddUser(e.t, strings.ToLower(name), "pw-"+name)
	s := func(v string) *string { return &v }
	port := e.d.IMAPSPort
	in := imapconf.Input{Name: s(name), Host: s(e.d.Host), Port: &port, Username: s(address), Password: s("pw-" + name),
		CACert: s(string(e.d.CACertPEM))}
	if mod != nil {
		mod(&in)
	}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
	return address
}

// waitState waits until the watcher of name is in state.
func (e *env) waitState(name, state string, within time.Duration) imapconf.Status {
	e.t.Helper()
	var last imapconf.View
	if testwait.UntilErr(within, func() error {
		v, err := e.api.GetIMAP(context.Background(), name)
		last = v
		if err == nil && v.Status != nil && v.Status.State == state {
			return nil
		}
		return errors.New("not yet")
	}) != nil {
		e.t.Fatalf("%s did not reach state %s within %v: %+v\n%s", name, state, within, last.Status, e.d.Log())
	}
	return *last.Status
}

// waitMessages waits until name has recorded n messages and returns them.
func (e *env) waitMessages(name string, n int, within time.Duration) []client.Message {
	e.t.Helper()
	var got []client.Message
	_ = testwait.UntilErr(within, func() error {
		l, err := e.api.ListMessages(context.Background(), name, 500, "")
		if err != nil {
			e.t.Fatal(err)
		}
		if got = l.Items; len(got) < n {
			return errors.New("not yet")
		}
		return nil
	})
	if len(got) != n {
		e.t.Fatalf("%s: got %d messages, want %d", name, len(got), n)
	}
	return got
}

func message(subject, body string) []byte {
	return []byte("From: Customer <customer@example.org>\r\nTo: support@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n" + body + "\r\n")
}

func TestAppendRecordedDuringIdle(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	addr := e.mailbox("support", nil)
	e.waitState("support", imapconf.StateIdle, 15*time.Second)
	raw := []byte("From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\nTo: support@example.test\r\n" +
		"Subject: =?UTF-8?B?UmVjaG51bmcgw5xiZXJmw6RsbGln?=\r\nMessage-ID: <idle-1@example.org>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Bitte zahlen.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"rechnung.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")
	start := time.Now()
	e.d.Append(t, addr, "INBOX", raw)
	msgs := e.waitMessages("support", 1, 10*time.Second)
	t.Logf("recorded %v after the append", time.Since(start))
	m := msgs[0]
	if m.Subject != "Rechnung Überfällig" || len(m.From) != 1 || m.From[0].Name != "Jürgen Müller" || m.From[0].Address != "juergen@example.org" {
		t.Errorf("got subject %q from %+v", m.Subject, m.From)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "rechnung.pdf" || m.Attachments[0].Size != 9 {
		t.Fatalf("got attachments %+v", m.Attachments)
	}
	content, err := e.api.Get(context.Background(), m.Attachments[0].URL)
	if err != nil || string(content) != "%PDF-1.4\n" {
		t.Errorf("attachment: got %q, %v", content, err)
	}
	st := e.waitState("support", imapconf.StateIdle, 5*time.Second)
	if st.MessagesIngested != 1 || st.LastMessageAt == nil || st.Reconnects != 0 {
		t.Errorf("got status %+v", st)
	}
}

func TestEncodedSubjects(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	addr := e.mailbox("subjects", func(in *imapconf.Input) { v := "all"; in.Backlog = &v })
	tests := []struct{ raw, want string }{
		{"=?UTF-8?B?8J+TpyBOZXVlIEJlc3RlbGx1bmc=?=", "📧 Neue Bestellung"},
		{"=?UTF-8?Q?Caf=C3=A9_au_lait?=", "Café au lait"},
		{"=?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=", "Grüße aus Köln"},
		{"=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"},
		{"=?KOI8-R?B?8NLJ18XU?=", "Привет"},
		{"=?GB2312?B?xOO6ww==?=", "你好"},
		{"=?UTF-8?Q?Invoice?=\r\n =?UTF-8?Q?_2026-11?=\r\n\tfolded", "Invoice 2026-11\tfolded"}, // unfolding removes only the CRLF (RFC 5322 §2.2.3)
		{"Rechnung f\xfcr M\xe4rz", "Rechnung für März"},
		{"", ""},
	}
	for _, tt := range tests {
		e.d.Append(t, addr, "INBOX", message(tt.raw, "x"))
	}
	e.d.Append(t, addr, "INBOX", []byte("From: a@example.org\r\nTo: b@example.org\r\n\r\nno subject at all\r\n"))
	msgs := e.waitMessages("subjects", len(tests)+1, 20*time.Second)
	got := map[string]bool{}
	for _, m := range msgs {
		got[m.Subject] = true
	}
	for _, tt := range tests {
		if !got[tt.want] {
			t.Errorf("subject %q: no message with the decoded subject %q (got %v)", tt.raw, tt.want, got)
		}
	}
}

func TestAfterProcessing(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	for _, action := range []string{"seen", "delete", "move"} {
		t.Run(action, func(t *testing.T) {
			addr := e.mailbox("after_"+action, func(in *imapconf.Input) {
				in.AfterProcessing = &action
				if action == "move" {
					v := "Processed"
					in.MoveTo = &v
				}
			})
			e.waitState("after_"+action, imapconf.StateIdle, 15*time.Second)
			e.d.Append(t, addr, "INBOX", message("first", "x"))
			e.waitMessages("after_"+action, 1, 10*time.Second)
			e.d.Append(t, addr, "INBOX", message("second", "y"))
			e.waitMessages("after_"+action, 2, 10*time.Second)
			e.waitState("after_"+action, imapconf.StateIdle, 5*time.Second)
			lines := func(s string) int { return len(strings.Split(strings.TrimSpace(s), "\n")) - 1 } // minus the header row
			testwait.Until(t, 5*time.Second, func() error {
				inbox := e.d.Doveadm(t, "-f", "tab", "fetch", "-u", addr, "flags", "mailbox", "INBOX", "all")
				switch action {
				case "seen":
					if strings.Count(inbox, `\Seen`) != 2 {
						return fmt.Errorf("got INBOX flags %q, want both seen", inbox)
					}
				case "delete":
					if lines(inbox) != 0 {
						return fmt.Errorf("got INBOX %q, want it empty", inbox)
					}
				case "move": // the folder does not exist: the move creates it
					if lines(inbox) != 0 {
						return fmt.Errorf("got INBOX %q, want both moved", inbox)
					}
					processed := e.d.Doveadm(t, "-f", "tab", "fetch", "-u", addr, "uid", "mailbox", "Processed", "all")
					if lines(processed) != 2 {
						return fmt.Errorf("got INBOX %q, Processed %q, want both moved", inbox, processed)
					}
				}
				return nil
			})
		})
	}
}
