package watch_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// TestMovedSealedSecretIsReported: a mailbox whose row holds another row's
// sealed password (copied in the database by someone without the key) is not
// logged in with it: the mailbox reports an error naming the password, and
// the other mailboxes go on.
func TestMovedSealedSecretIsReported(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{})
	e.mailbox("own", nil)
	e.mailbox("victim", func(in *imapconf.Input) { in.Enabled = new(false) })
	e.waitState("own", imapconf.StateIdle, 15*time.Second)

	db, err := sql.Open("sqlite", e.st.SQLitePath())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), `UPDATE imap_configs SET enabled = 1, updated_at = CURRENT_TIMESTAMP,
		password_sealed = (SELECT password_sealed FROM imap_configs WHERE name = 'own') WHERE name = 'victim'`); err != nil {
		t.Fatal(err)
	}
	st := e.waitState("victim", imapconf.StateError, 15*time.Second)
	if !strings.Contains(st.LastError, "password") || !strings.Contains(st.LastError, "cannot open sealed secret") {
		t.Errorf("got last error %q, want the password named as not opening", st.LastError)
	}
	v, err := e.api.GetIMAP(context.Background(), "victim")
	if err != nil || v.HasPassword {
		t.Errorf("the API view: got hasPassword %v, %v, want the configuration shown without a password", v.HasPassword, err)
	}
	// It stays so: no login is tried with a secret that does not open.
	testwait.Never(t, 500*time.Millisecond, func() error {
		if st := e.waitState("victim", imapconf.StateError, time.Second); st.Reconnects != 0 {
			return fmt.Errorf("got %d reconnects, want no login tried", st.Reconnects)
		}
		return nil
	})
	e.waitState("own", imapconf.StateIdle, time.Second)
}
