package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to write the previous release's database
	"github.com/pressly/goose/v3"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

// previousRelease is the newest migration of the previous release: the
// schema version of a database that release left. Raise it, at each release,
// to the newest migration that release shipped; the test then fills the
// database as that release wrote it, which may need its SQL below updated.
const previousRelease = 12

const (
	// upgradeBefore is how many messages the previous release recorded
	// (the last one's run still pending); upgradeAfter how many arrive
	// after the upgrade.
	upgradeBefore = 3
	upgradeAfter  = 3
	// upgradeSecret signs the flow's deliveries (the Standard Webhooks
	// test vector's secret).
	upgradeSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	// Purposes the store binds sealed secrets to (package store).
	purposeIMAPPassword = "imap.password"
	purposeFlowSecrets  = "flow.secrets"
)

func upgradeMessageID(i int) string { return fmt.Sprintf("upgrade-%d@e2e.example.org", i) }

// migrationsDir is the directory of the store's migrations of dialect in
// this checkout.
func migrationsDir(d store.Dialect) string { return "../store/migrations/" + string(d) }

// TestUpgradeFromPreviousRelease makes a database with the previous
// release's migrations (those up to previousRelease, from the store's
// migration directory), fills it as that release did (an IMAP configuration
// with a sealed password, a flow with a sealed signing secret, three
// messages of which the last one's run is still pending), and starts the
// current binary on it, on SQLite and on PostgreSQL: the migrations since
// are applied, the pending run is delivered, new mail is read, and no
// message is recorded or delivered twice.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	d := testenv.StartDovecot(t)
	for _, dialect := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(dialect), func(t *testing.T) { testUpgrade(t, d, dialect) })
	}
}

func testUpgrade(t *testing.T, d *testenv.Dovecot, dialect store.Dialect) {
	ctx := context.Background()
	address := d.AddUser(t, "upgrade"+string(dialect), "pw-upgrade")
	conn := d.DialIMAPS(t, address, nil)
	var uids []uint32
	for i := 1; i <= upgradeBefore; i++ {
		uid, err := appendMessage(conn, mailMessage(upgradeMessageID(i), address, fmt.Sprintf("Order %d", i), "Before the upgrade."))
		if err != nil {
			t.Fatalf("appending message %d: %v", i, err)
		}
		uids = append(uids, uid)
	}
	sel, err := conn.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("selecting INBOX: %v", err)
	}
	if err := conn.Unselect().Wait(); err != nil {
		t.Fatalf("unselecting INBOX: %v", err)
	}

	hooks := newHookListener(t)
	hookURL := hooks.handle("/orders", upgradeSecret, nil)
	key := bytes.Repeat([]byte{0x5a}, secret.KeySize)
	box, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	var s *service
	var db *sql.DB
	if dialect == store.Postgres {
		pgURL := testenv.PostgresURL(t)
		s = newService(t, append(fastRetryEnv, "MAILTRIGGER_DATABASE_URL="+pgURL,
			"MAILTRIGGER_SECRET_KEY="+base64.StdEncoding.EncodeToString(key))...)
		db, err = sql.Open("pgx", pgURL)
	} else {
		s = newService(t, fastRetryEnv...)
		if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.dataDir+"/"+secret.KeyFileName, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// As the store opens it (timestamps in SQLite's text form).
		db, err = sql.Open("sqlite", "file:"+(&url.URL{Path: s.dbPath()}).EscapedPath()+
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_time_format=sqlite")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	// The previous release's schema.
	gooseDialect := goose.DialectSQLite3
	if dialect == store.Postgres {
		gooseDialect = goose.DialectPostgres
	}
	prov, err := goose.NewProvider(gooseDialect, db, os.DirFS(migrationsDir(dialect)))
	if err != nil {
		t.Fatalf("reading the migrations: %v", err)
	}
	if _, err := prov.UpTo(ctx, previousRelease); err != nil {
		t.Fatalf("migrating to the previous release's version %d: %v", previousRelease, err)
	}
	srcs := prov.ListSources()
	newest := srcs[len(srcs)-1].Version
	if v, err := prov.GetDBVersion(ctx); err != nil || v != previousRelease {
		t.Fatalf("schema version %d (%v), want %d", v, err, previousRelease)
	}
	t.Logf("made a database at version %d; this release's newest migration is %d", previousRelease, newest)

	// What the previous release wrote.
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	insert := func(q string, args ...any) int64 {
		t.Helper()
		var id int64
		if err := db.QueryRowContext(ctx, q+" RETURNING id", args...).Scan(&id); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return id
	}
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	imapID := insert(`INSERT INTO imap_configs (name, name_lower, server_type, type, description, enabled, host, port, username,
		password_sealed, tenant_id, client_id, client_secret_sealed, folder, tls, ca_cert, after_processing, move_to, poll_interval,
		backlog, graph_url, authority_url, auth, token_url, scope, provider, auth_url, created_at, updated_at)
		VALUES ('Legacy', 'legacy', 'imaps', 'generic', 'made by the previous release', true, $1, $2, $3,
		NULL, '', '', NULL, 'INBOX', 'implicit', $4, 'none', '', 60, 'all', '', '', 'password', '', '', '', '', $5, $5)`,
		d.Host, d.IMAPSPort, address, string(d.CACertPEM), at)
	sealedPW, err := box.SealRow(d.Password(t, address), purposeIMAPPassword, imapID)
	if err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE imap_configs SET password_sealed = $1 WHERE id = $2`, sealedPW, imapID)
	definition := `{"name":"orders","description":"","enabled":true,"start":{"emailTrigger":{"imap":"Legacy","subject":"Order",` +
		`"match":"prefix","ignoreReplyPrefixes":false}},"activities":[{"type":"webhook","url":"` + hookURL +
		`","timeout":"10s","includeAttachments":false}]}`
	flowID := insert(`INSERT INTO flows (name, name_lower, imap_id, enabled, definition, created_at, updated_at)
		VALUES ('orders', 'orders', $1, true, $2, $3, $3)`, imapID, definition, at)
	sealedFlow, err := box.SealRow(`{"secrets":["`+upgradeSecret+`"]}`, purposeFlowSecrets, flowID)
	if err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE flows SET secrets_sealed = $1 WHERE id = $2`, sealedFlow, flowID)
	for i := 1; i <= upgradeBefore; i++ {
		mid := upgradeMessageID(i)
		raw := mailMessage(mid, address, fmt.Sprintf("Order %d", i), "Before the upgrade.")
		msgID := insert(`INSERT INTO messages (imap_id, imap_name, uid_validity, uid, message_id, dedupe_key, subject, from_json,
			to_json, cc_json, reply_to_json, date, size, received_at, parse_error, too_large, text_body, html_body, raw,
			replica, lease_token, layout)
			VALUES ($1, 'Legacy', $2, $3, $4, $5, $6, '[{"name":"Sender","address":"sender@example.org"}]',
			$7, '[]', '[]', $8, $9, $10, '', false, 'Before the upgrade.', '', $11, '', 0, '')`,
			imapID, int64(sel.UIDValidity), int64(uids[i-1]), mid, "message-id:"+mid, fmt.Sprintf("Order %d", i),
			`[{"name":"","address":"`+address+`"}]`, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), int64(len(raw)), at, raw)
		exec(`INSERT INTO message_matches (message_id, flow_id, flow_name, matched, reason) VALUES ($1, $2, 'orders', true, 'subject starts with "Order"')`,
			msgID, flowID)
		status, attempts, delivered := "delivered", 1, &at
		if i == upgradeBefore {
			status, attempts, delivered = "pending", 0, nil
		}
		runID := insert(`INSERT INTO runs (public_id, flow_id, flow_name, message_id, imap_name, seq, status, attempts,
			next_attempt_at, locked_until, created_at, received_at, delivered_at, last_error)
			VALUES ($1, $2, 'orders', $3, 'Legacy', 0, $4, $5, $6, NULL, $6, $6, $7, '')`,
			store.NewRunID(), flowID, msgID, status, attempts, at, delivered)
		if delivered != nil {
			exec(`INSERT INTO run_attempts (run_id, n, started_at, duration_ms, status_code, error, response) VALUES ($1, 1, $2, 5, 200, '', 'ok')`,
				runID, at)
		}
	}
	exec(`INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, 'imap', $2, $3)`,
		imapID, fmt.Sprintf("%010d:%010d", sel.UIDValidity, uids[len(uids)-1]), at)

	// The current binary on it.
	s.start()
	var v int64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version`).Scan(&v); err != nil || v != newest {
		s.errorf("after the upgrade: schema version %d (%v), want %d", v, err, newest)
	}
	// The run the previous release left pending is delivered, signed with
	// the sealed secret.
	delivered := func(i int) int {
		n := 0
		for _, dl := range hooks.on("/orders") {
			if bareID(dl.payload.Message.MessageID) == upgradeMessageID(i) {
				if dl.sigErr != nil {
					s.errorf("delivery of message %d: signature: %v", i, dl.sigErr)
				}
				n++
			}
		}
		return n
	}
	poll(s, 30*time.Second, 100*time.Millisecond, "the pending run delivered", func() (bool, any) {
		return delivered(upgradeBefore) > 0, len(hooks.on("/orders"))
	})
	c := s.api()
	// The sealed password opens: the mailbox is read.
	waitState(s, c, "Legacy", imapconf.StateIdle, 30*time.Second)
	for i := upgradeBefore + 1; i <= upgradeBefore+upgradeAfter; i++ {
		appendOrFail(s, conn, mailMessage(upgradeMessageID(i), address, fmt.Sprintf("Order %d", i), "After the upgrade."))
	}
	total := upgradeBefore + upgradeAfter
	poll(s, 30*time.Second, 100*time.Millisecond, "the new messages' runs delivered", func() (bool, any) {
		for i := upgradeBefore + 1; i <= total; i++ {
			if delivered(i) == 0 {
				return false, fmt.Sprintf("message %d not delivered", i)
			}
		}
		return true, nil
	})
	s.stop()
	checkEachRecordedOnce(t, db, total, upgradeMessageID)
	for i := 1; i <= total; i++ {
		want := 1
		if i < upgradeBefore {
			want = 0 // delivered by the previous release
		}
		if n := delivered(i); n != want {
			t.Errorf("message %d: delivered %d times after the upgrade, want %d", i, n, want)
		}
	}
	if v, err := prov.GetDBVersion(ctx); err != nil || v != newest {
		t.Errorf("schema version %d (%v), want %d", v, err, newest)
	}

	// A database a newer release migrated further: this binary refuses it.
	exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, newest+1)
	want := fmt.Sprintf("database schema version %d is newer than this mailtrigger knows (%d)", newest+1, newest)
	if msg := s.cliFails("migrate"); !strings.Contains(msg, want) {
		t.Errorf("migrate on a newer database: got %q, want it to say %q", msg, want)
	}
	if died := s.startMayDie(); !died {
		s.fatalf("serve started on a database newer than it knows")
	}
	s.cmd = nil
	if out := s.out.Last(outputTail); !strings.Contains(out, want) {
		s.errorf("serve on a newer database: want the output to say %q", want)
	}
}
