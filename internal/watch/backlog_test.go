package watch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// TestBacklogModes: on the first connect, "new" skips what is there, "all"
// reads it all and "unseen" reads what is not flagged \Seen; mail that
// arrives afterwards is read in every mode.
func TestBacklogModes(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	for _, mode := range []string{"new", "unseen", "all"} {
		t.Run(mode, func(t *testing.T) {
			name := "backlog_" + mode
			addr := e.d.AddUser(t, name, "pw")
			for _, s := range []string{"one", "two", "three"} {
				e.d.Append(t, addr, "INBOX", fixedMessage(mode+"-"+s+"@x", "old "+s))
			}
			e.d.Doveadm(t, "flags", "add", "-u", addr, `\Seen`, "mailbox", "INBOX", "uid", "2")
			port := e.d.IMAPSPort
			in := imapconf.Input{Name: ptr(name), Host: ptr(e.d.Host), Port: &port, Username: ptr(addr), Password: ptr("pw"),
				CACert: ptr(string(e.d.CACertPEM)), Backlog: ptr(mode)}
			if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			e.waitState(name, imapconf.StateIdle, 15*time.Second)
			e.d.Append(t, addr, "INBOX", fixedMessage(mode+"-four@x", "new four"))
			want := map[string][]string{
				"new":    {"new four"},
				"unseen": {"new four", "old three", "old one"},
				"all":    {"new four", "old three", "old two", "old one"},
			}[mode]
			msgs := e.waitMessages(name, len(want), 10*time.Second)
			var got []string
			for _, m := range msgs {
				got = append(got, m.Subject)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestAuthFailureShownPlainly: a wrong password puts the watcher in
// auth_failed with the server's words, and it is retried slowly.
func TestAuthFailureShownPlainly(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{AuthBackoff: time.Hour})
	addr := e.d.AddUser(t, "locked", "right-password")
	port := e.d.IMAPSPort
	in := imapconf.Input{Name: ptr("locked"), Host: ptr(e.d.Host), Port: &port, Username: ptr(addr), Password: ptr("Wrong-Secret-991"),
		CACert: ptr(string(e.d.CACertPEM))}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	st := e.waitState("locked", imapconf.StateAuthFailed, 15*time.Second)
	if !strings.Contains(strings.ToLower(st.LastError), "auth") || strings.Contains(st.LastError, "Wrong-Secret") {
		t.Errorf("got lastError %q", st.LastError)
	}
	testwait.Never(t, time.Second, func() error {
		if v, _ := e.api.GetIMAP(context.Background(), "locked"); v.Status.State != imapconf.StateAuthFailed || v.Status.Reconnects != 0 {
			return fmt.Errorf("got %+v, want it still waiting before the slow retry", v.Status)
		}
		return nil
	})
}
