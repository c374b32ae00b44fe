package watch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

func fixedMessage(id, subject string) []byte {
	h := ""
	if id != "" {
		h = "Message-ID: <" + id + ">\r\n"
	}
	return []byte("From: a@example.org\r\nTo: b@example.test\r\nDate: Tue, 24 Nov 2026 09:00:00 +0000\r\nSubject: " + subject + "\r\n" + h + "\r\nbody of " + subject + "\r\n")
}

// TestConfigurationChangesReachTheWatcher: created, disabled, enabled,
// edited and deleted through the API, without a restart.
func TestConfigurationChangesReachTheWatcher(t *testing.T) {
	logs := &testenv.Buffer{}
	e := newEnvFull(t, store.Postgres, watch.Options{}, nil, logs)
	ctx := context.Background()
	addr := e.mailbox("changing", nil)
	e.waitState("changing", imapconf.StateIdle, 15*time.Second)

	v, _ := e.api.GetIMAP(ctx, "changing")
	in := inputOf(v)
	in.Enabled = ptr(false)
	if _, err := e.api.EditIMAP(ctx, "changing", in); err != nil {
		t.Fatal(err)
	}
	e.waitState("changing", imapconf.StateDisabled, 5*time.Second)
	e.d.Append(t, addr, "INBOX", fixedMessage("while-disabled@x", "while disabled"))
	testwait.Never(t, 1500*time.Millisecond, func() error {
		if l, _ := e.api.ListMessages(ctx, "changing", 10, ""); len(l.Items) != 0 {
			return fmt.Errorf("a disabled configuration recorded %d messages", len(l.Items))
		}
		return nil
	})
	// Enabled again, renamed: it goes on from its checkpoint, so the mail
	// that came meanwhile is read.
	in.Enabled = ptr(true)
	in.Name = ptr("renamed")
	if _, err := e.api.EditIMAP(ctx, "changing", in); err != nil {
		t.Fatal(err)
	}
	e.waitState("renamed", imapconf.StateIdle, 15*time.Second)
	msgs := e.waitMessages("renamed", 1, 10*time.Second)
	if msgs[0].Subject != "while disabled" {
		t.Errorf("got %q", msgs[0].Subject)
	}
	// Deleted: the watcher stops; the history stays.
	logged := len(logs.String())
	if err := e.api.DeleteIMAP(ctx, "renamed"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, func() error {
		for _, line := range strings.Split(logs.String()[logged:], "\n") {
			if strings.Contains(line, `msg="watcher stopped"`) && strings.Contains(line, "imap=renamed") {
				return nil
			}
		}
		return errors.New("the watcher of the deleted configuration has not stopped")
	})
	e.d.Append(t, addr, "INBOX", fixedMessage("after-delete@x", "after delete"))
	testwait.Never(t, 1500*time.Millisecond, func() error {
		if l, err := e.api.ListMessages(ctx, "renamed", 10, ""); err != nil || len(l.Items) != 1 {
			return fmt.Errorf("after delete: got %d messages, %v, want the 1 recorded before", len(l.Items), err)
		}
		return nil
	})
}

func ptr[T any](v T) *T { return &v }

func inputOf(v imapconf.View) imapconf.Input {
	return imapconf.Input{Name: ptr(v.Name), Host: ptr(v.Host), Port: ptr(v.Port), Username: ptr(v.Username),
		CACert: ptr(v.CACert), Folder: ptr(v.Folder), Backlog: ptr(v.Backlog), AfterProcessing: ptr(v.AfterProcessing),
		MoveTo: ptr(v.MoveTo), PollInterval: ptr(v.PollInterval), Enabled: ptr(v.Enabled), TLS: ptr(v.TLS)}
}

// TestUIDValidityChange: the folder is deleted and recreated with old and
// new mail; nothing is recorded twice and the new mail is recorded.
func TestUIDValidityChange(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	addr := e.d.AddUser(t, "recreated", "pw")
	e.d.Doveadm(t, "mailbox", "create", "-u", addr, "Work")
	old := [][]byte{fixedMessage("old-1@x", "old one"), fixedMessage("", "old two without id")}
	for _, m := range old {
		e.d.Append(t, addr, "Work", m)
	}
	port := e.d.IMAPSPort
	in := imapconf.Input{Name: ptr("recreated"), Host: ptr(e.d.Host), Port: &port, Username: ptr(addr), Password: ptr("pw"),
		CACert: ptr(string(e.d.CACertPEM)), Folder: ptr("Work"), Backlog: ptr("all")}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	e.waitMessages("recreated", 2, 15*time.Second)
	e.waitState("recreated", imapconf.StateIdle, 5*time.Second)
	before := e.d.Doveadm(t, "-f", "flow", "mailbox", "status", "-u", addr, "uidvalidity", "Work")

	e.d.Doveadm(t, "mailbox", "delete", "-u", addr, "Work")
	time.Sleep(1100 * time.Millisecond) // UIDVALIDITY is a timestamp: make sure it changes
	e.d.Doveadm(t, "mailbox", "create", "-u", addr, "Work")
	for _, m := range old {
		e.d.Append(t, addr, "Work", m)
	}
	e.d.Append(t, addr, "Work", fixedMessage("new-3@x", "new three"))
	after := e.d.Doveadm(t, "-f", "flow", "mailbox", "status", "-u", addr, "uidvalidity", "Work")
	if before == after {
		t.Fatalf("UIDVALIDITY did not change: %s", after)
	}
	msgs := e.waitMessages("recreated", 3, 20*time.Second)
	// Anything recorded twice would show within a second.
	testwait.Never(t, time.Second, func() error {
		if l, _ := e.api.ListMessages(context.Background(), "recreated", 100, ""); len(l.Items) != 3 {
			return fmt.Errorf("got %d messages, want 3", len(l.Items))
		}
		return nil
	})
	if msgs[0].Subject != "new three" {
		t.Errorf("newest: got %q, want new three", msgs[0].Subject)
	}
	e.waitState("recreated", imapconf.StateIdle, 10*time.Second)
}

// TestAfterProcessingOnlyForCommitted: a message whose ingest transaction
// fails is neither recorded nor deleted on the server; the mailbox goes on
// retrying.
func TestAfterProcessingOnlyForCommitted(t *testing.T) {
	poison := errors.New("refusing the poison message")
	hook := func(ctx context.Context, tx *store.Tx, b *store.Batch, id int64, in store.Incoming) error {
		if strings.Contains(in.Msg.Subject, "poison") {
			return poison
		}
		return nil
	}
	e := newEnvHook(t, store.SQLite, watch.Options{MinBackoff: 200 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}, hook)
	addr := e.mailbox("deleting", func(in *imapconf.Input) { in.AfterProcessing = ptr("delete") })
	e.waitState("deleting", imapconf.StateIdle, 15*time.Second)
	e.d.Append(t, addr, "INBOX", fixedMessage("good-1@x", "good"))
	e.waitMessages("deleting", 1, 10*time.Second)
	e.d.Append(t, addr, "INBOX", fixedMessage("poison-2@x", "poison"))
	st := e.waitState("deleting", imapconf.StateError, 10*time.Second)
	if !strings.Contains(st.LastError, "poison") {
		t.Errorf("got lastError %q", st.LastError)
	}
	// Retried, the poison message is never recorded.
	testwait.Never(t, time.Second, func() error {
		if l, _ := e.api.ListMessages(context.Background(), "deleting", 10, ""); len(l.Items) != 1 {
			return fmt.Errorf("got %d messages recorded, want 1", len(l.Items))
		}
		return nil
	})
	inbox := e.d.Doveadm(t, "-f", "tab", "fetch", "-u", addr, "hdr.subject", "mailbox", "INBOX", "all")
	if !strings.Contains(inbox, "poison") || strings.Contains(inbox, "good") {
		t.Errorf("got INBOX %q, want only the uncommitted poison message left", inbox)
	}
	if l, _ := e.api.ListMessages(context.Background(), "deleting", 10, ""); len(l.Items) != 1 {
		t.Errorf("got %d messages recorded, want 1", len(l.Items))
	}
}

func TestTestConnectionThroughTheAPI(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	addr := e.d.AddUser(t, "tester", "Right-Password-77")
	e.d.Append(t, addr, "INBOX", fixedMessage("t-1@x", "one"))
	port := e.d.IMAPSPort
	base := func() imapconf.Input {
		return imapconf.Input{Name: ptr("tester"), Host: ptr(e.d.Host), Port: &port, Username: ptr(addr),
			Password: ptr("Right-Password-77"), CACert: ptr(string(e.d.CACertPEM)), Enabled: ptr(false)}
	}
	type result struct {
		OK           bool     `json:"ok"`
		Step         string   `json:"step"`
		Error        string   `json:"error"`
		Capabilities []string `json:"capabilities"`
		Messages     uint32   `json:"messages"`
		UIDValidity  uint32   `json:"uidValidity"`
	}
	closed := 1 // nothing listens on port 1 of 127.0.0.2
	tests := []struct {
		name     string
		mod      func(in *imapconf.Input)
		wantStep string
	}{
		{"ok", func(*imapconf.Input) {}, ""},
		{"wrong port", func(in *imapconf.Input) { in.Port = &closed }, "connect"},
		{"untrusted certificate", func(in *imapconf.Input) { in.CACert = nil }, "tls"},
		{"wrong password", func(in *imapconf.Input) { in.Password = ptr("Wrong-Password-13") }, "login"},
		{"missing folder", func(in *imapconf.Input) { in.Folder = ptr("Nope") }, "select"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.mod(&in)
			var got result
			if err := e.api.Do(context.Background(), http.MethodPost, "/api/v1/imap/test", in, &got); err != nil {
				t.Fatal(err)
			}
			if got.Step != tt.wantStep || got.OK != (tt.wantStep == "") {
				t.Errorf("got %+v, want step %q", got, tt.wantStep)
			}
			if tt.wantStep == "" && (got.Messages != 1 || len(got.Capabilities) == 0) {
				t.Errorf("got %+v, want 1 message and the capabilities", got)
			}
			if tt.wantStep != "" && got.Error == "" {
				t.Error("a failure without an error text")
			}
			if strings.Contains(got.Error, "Password-") {
				t.Errorf("the error %q contains a password", got.Error)
			}
		})
	}
	// A saved configuration.
	if _, err := e.api.CreateIMAP(context.Background(), base()); err != nil {
		t.Fatal(err)
	}
	var got result
	if err := e.api.Do(context.Background(), http.MethodPost, "/api/v1/imap/tester/test", nil, &got); err != nil || !got.OK {
		t.Errorf("saved: got %+v, %v", got, err)
	}
}

// TestEditWhileRetrying: a configuration edited while its watcher waits to
// retry a failed connection is restarted, and the status stays readable (a
// stopping watcher reporting its status once deadlocked the manager).
func TestEditWhileRetrying(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{MinBackoff: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	ctx := context.Background()
	addr := e.d.AddUser(t, "retrying", "pw")
	closed := 1
	in := imapconf.Input{Name: ptr("retrying"), Host: ptr(e.d.Host), Port: &closed, Username: ptr(addr), Password: ptr("pw"),
		CACert: ptr(string(e.d.CACertPEM))}
	if _, err := e.api.CreateIMAP(ctx, in); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.waitState("retrying", imapconf.StateError, 10*time.Second)
		in.Description = ptr(time.Now().String())
		if _, err := e.api.EditIMAP(ctx, "retrying", in); err != nil {
			t.Fatal(err)
		}
	}
	port := e.d.IMAPSPort
	in.Port = &port
	if _, err := e.api.EditIMAP(ctx, "retrying", in); err != nil {
		t.Fatal(err)
	}
	e.waitState("retrying", imapconf.StateIdle, 10*time.Second)
}
