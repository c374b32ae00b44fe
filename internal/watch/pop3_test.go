package watch_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/pop3source"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// pop3Config creates a POP3S configuration reading address, polled every
// 5 s (the shortest interval allowed).
func (e *env) pop3Config(name, address, password string, mod func(in *imapconf.Input)) {
	e.t.Helper()
	port := e.d.POP3SPort
	in := imapconf.Input{Name: ptr(name), ServerType: ptr(imapconf.ServerPOP3S), Host: ptr(e.d.Host), Port: &port,
		TLS: ptr(imapconf.TLSImplicit), Username: ptr(address), Password: ptr(password), CACert: ptr(string(e.d.CACertPEM)),
		PollInterval: ptr(imapconf.MinPollInterval)}
	if mod != nil {
		mod(&in)
	}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
}

// inbox returns the number of messages in address's INBOX.
func (e *env) inbox(address string) int {
	e.t.Helper()
	out := e.d.Doveadm(e.t, "-f", "tab", "fetch", "-u", address, "uid", "mailbox", "INBOX", "all")
	return len(strings.Split(strings.TrimSpace(out), "\n")) - 1 // minus the header row
}

// waitPoll waits until name finished a poll that started after since.
func (e *env) waitPoll(name string, since time.Time, within time.Duration) imapconf.Status {
	e.t.Helper()
	var st imapconf.Status
	testwait.Until(e.t, within, func() error {
		v, err := e.api.GetIMAP(context.Background(), name)
		if err == nil && v.Status != nil && v.Status.LastSuccessAt != nil && v.Status.LastSuccessAt.After(since) &&
			v.Status.State == imapconf.StatePolling {
			st = *v.Status
			return nil
		}
		return fmt.Errorf("%s did not poll again", name)
	})
	return st
}

// TestPOP3 reads POP3S mailboxes: backlog new skips the mail present at
// the first connect and leaves everything on the server by default; backlog
// all with afterProcessing delete reads all and removes exactly what it
// recorded; each message is recorded once, byte for byte (dot-stuffed lines
// and a line over 8 KB included); a wrong password is auth_failed.
func TestPOP3(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{AuthBackoff: time.Hour})
	ctx := context.Background()

	keep := e.d.AddUser(t, "pop_keep", "pw")
	for _, s := range []string{"one", "two"} {
		e.d.Append(t, keep, "INBOX", fixedMessage("keep-"+s+"@x", "old "+s))
	}
	// What the server holds, to compare with at the end: each message's
	// GUID, size and body, which reading without delete must not change.
	keepMail := func() map[string]string {
		out := e.d.Doveadm(t, "-f", "tab", "fetch", "-u", keep, "guid", "mailbox", "INBOX", "all")
		texts := map[string]string{}
		for _, guid := range strings.Fields(out)[1:] { // after the header row
			texts[guid] = e.d.Doveadm(t, "-f", "tab", "fetch", "-u", keep, "size.physical text", "mailbox", "INBOX", "guid", guid)
		}
		return texts
	}
	keepBefore := keepMail()
	e.pop3Config("pop_keep", keep, "pw", nil) // backlog new, afterProcessing none: the defaults
	del := e.d.AddUser(t, "pop_delete", "pw")
	for _, s := range []string{"one", "two", "three"} {
		e.d.Append(t, del, "INBOX", fixedMessage("del-"+s+"@x", "old "+s))
	}
	e.pop3Config("pop_delete", del, "pw", func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing = ptr(imapconf.BacklogAll), ptr(imapconf.AfterDelete)
	})
	locked := e.d.AddUser(t, "pop_locked", "right-password")
	e.pop3Config("pop_locked", locked, "Wrong-Secret-991", nil)

	st := e.waitState("pop_locked", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.Contains(strings.ToLower(st.LastError), "auth") || strings.Contains(st.LastError, "Wrong-Secret") {
		t.Errorf("pop_locked: got lastError %q", st.LastError)
	}

	msgs := e.waitMessages("pop_delete", 3, 15*time.Second)
	if got := msgs[0].Subject + "," + msgs[1].Subject + "," + msgs[2].Subject; got != "old three,old two,old one" {
		t.Errorf("pop_delete: got %s", got)
	}
	e.waitState("pop_keep", imapconf.StatePolling, 15*time.Second)
	before := 0

	var long bytes.Buffer
	long.WriteString("From: a@example.org\r\nTo: b@example.test\r\nSubject: dots\r\nMessage-ID: <dots@x>\r\n\r\n")
	long.WriteString(".\r\n..\r\n.leading dot\r\n..two dots\r\nplain\r\n")
	long.WriteString(strings.Repeat("0123456789abcdef", 600) + "\r\n")
	long.WriteString(". .\r\nlast line\r\n")
	raw := long.Bytes()
	e.d.Append(t, keep, "INBOX", raw)
	e.d.Append(t, del, "INBOX", fixedMessage("del-four@x", "new four"))

	got := e.waitMessages("pop_keep", before+1, 15*time.Second)
	if got[0].Subject != "dots" {
		t.Fatalf("pop_keep: newest is %q", got[0].Subject)
	}
	stored, err := e.api.Get(ctx, fmt.Sprintf("/api/v1/messages/%d/raw", got[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, raw) {
		t.Errorf("pop_keep: raw differs: got %d bytes, want %d\n%q", len(stored), len(raw), stored[:min(len(stored), 200)])
	}
	e.waitMessages("pop_delete", 4, 15*time.Second)

	// Testing the connection speaks POP3 to a pop3s configuration.
	var res pop3source.TestResult
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/pop_keep/test", nil, &res); err != nil || !res.OK || res.Messages != 3 {
		t.Errorf("testing pop_keep: got %+v, %v", res, err)
	}
	res = pop3source.TestResult{}
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/pop_locked/test", nil, &res); err != nil || res.OK || res.Step != "login" {
		t.Errorf("testing pop_locked: got %+v, %v", res, err)
	}

	// One more poll each: nothing is recorded twice, the delete mailbox is
	// empty and the other untouched.
	now := time.Now()
	stKeep := e.waitPoll("pop_keep", now, 15*time.Second)
	stDel := e.waitPoll("pop_delete", now, 15*time.Second)
	e.waitMessages("pop_keep", before+1, time.Second)
	e.waitMessages("pop_delete", 4, time.Second)
	if stKeep.MessagesIngested != int64(before+1) || stDel.MessagesIngested != 4 {
		t.Errorf("got messagesIngested %d and %d", stKeep.MessagesIngested, stDel.MessagesIngested)
	}
	if n := e.inbox(keep); n != 3 {
		t.Errorf("pop_keep: %d messages left on the server, want 3", n)
	}
	keepAfter := keepMail()
	for guid, text := range keepBefore {
		if keepAfter[guid] != text {
			t.Errorf("pop_keep: message %s changed or went: got %.200q, want %.200q", guid, keepAfter[guid], text)
		}
	}
	if len(keepBefore) != 2 || len(keepAfter) != 3 {
		t.Errorf("pop_keep: the server held %d messages before and %d after, want 2 and 3", len(keepBefore), len(keepAfter))
	}
	if n := e.inbox(del); n != 0 {
		t.Errorf("pop_delete: %d messages left on the server, want 0", n)
	}
}

// TestPOP3NoUIDL: a POP3 server without UIDL is an error status saying so,
// retried slowly; nothing is read by guessing.
func TestPOP3NoUIDL(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{AuthBackoff: time.Hour})
	// A POP3 server over implicit TLS on 127.0.0.1 (httptest's certificate
	// is valid for it) that knows no UIDL.
	hs := httptest.NewTLSServer(nil)
	certs := hs.TLS.Certificates
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}))
	hs.Close()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var retrs atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				_, _ = conn.Write([]byte("+OK fake ready\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					resp := "-ERR unknown command"
					switch f := strings.Fields(strings.ToUpper(line)); {
					case len(f) == 0:
					case f[0] == "CAPA":
						resp = "+OK\r\nUSER\r\nTOP\r\n."
					case f[0] == "USER", f[0] == "PASS", f[0] == "QUIT", f[0] == "NOOP":
						resp = "+OK"
					case f[0] == "STAT":
						resp = "+OK 1 100"
					case f[0] == "RETR", f[0] == "LIST", f[0] == "TOP":
						retrs.Add(1)
					}
					if _, err := conn.Write([]byte(resp + "\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := e.api.CreateIMAP(context.Background(), imapconf.Input{Name: ptr("nouidl"), ServerType: ptr(imapconf.ServerPOP3S),
		Host: ptr("127.0.0.1"), Port: &port, TLS: ptr(imapconf.TLSImplicit), Username: ptr("u@example.test"), Password: ptr("pw"),
		CACert: ptr(caPEM), Backlog: ptr(imapconf.BacklogAll)}); err != nil {
		t.Fatal(err)
	}
	st := e.waitState("nouidl", imapconf.StateError, 15*time.Second)
	if !strings.Contains(st.LastError, "UIDL") {
		t.Errorf("got lastError %q", st.LastError)
	}
	testwait.Never(t, 500*time.Millisecond, func() error {
		v, err := e.api.GetIMAP(context.Background(), "nouidl")
		if err != nil || v.Status.State != imapconf.StateError || v.Status.Reconnects != 0 || v.Status.MessagesIngested != 0 {
			return fmt.Errorf("got %+v, %v: want it still waiting before the slow retry", v.Status, err)
		}
		if n := retrs.Load(); n != 0 {
			return fmt.Errorf("%d messages read from a server without UIDL", n)
		}
		return nil
	})
}
