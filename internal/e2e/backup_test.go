package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/testenv"
)

const (
	// backupBefore is how many messages are recorded before the backup is
	// taken; backupAfter how many more are appended after it, while the
	// service still runs; restoredAfter how many arrive once the restored
	// service runs.
	backupBefore  = 30
	backupAfter   = 30
	restoredAfter = 10
	// backupPace is the pause between two appends of the steady mail.
	backupPace = 20 * time.Millisecond
)

func backupMessageID(i int) string { return fmt.Sprintf("backup-%03d@e2e.example.org", i) }

// cliFails runs the binary with args on the service's data directory,
// fails the test unless it exits with status 1, and returns its standard
// error.
func (s *service) cliFails(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		s.fatalf("mailtrigger %s: %v, want exit status 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stderr.String()
}

// apiAs creates an API token named name with the CLI and returns a client
// using it.
func (s *service) apiAs(name string) *client.Client {
	s.t.Helper()
	token := strings.TrimSpace(s.cli("token", "create", name))
	return &client.Client{BaseURL: s.baseURL(), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// names lists the names of every IMAP configuration and every flow.
func names(s *service, c *client.Client) (imaps, flows []string) {
	s.t.Helper()
	page, err := c.ListIMAP(context.Background(), 500, "")
	if err != nil {
		s.fatalf("listing imap configurations: %v", err)
	}
	for _, v := range page.Items {
		imaps = append(imaps, v.Name)
	}
	var fl client.List[api.FlowView]
	if err := c.Do(context.Background(), http.MethodGet, "/api/v1/flows?limit=500", nil, &fl); err != nil {
		s.fatalf("listing flows: %v", err)
	}
	for _, f := range fl.Items {
		flows = append(flows, f.Name)
	}
	slices.Sort(imaps)
	slices.Sort(flows)
	return imaps, flows
}

// countMessages counts the messages recorded in db.
func countMessages(s *service, db *sql.DB) int {
	s.t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM messages`).Scan(&n); err != nil {
		s.fatalf("counting recorded messages: %v", err)
	}
	return n
}

// TestBackupRestore takes a backup with "mailtrigger backup" while the
// service runs and records steady mail, restores it with "mailtrigger
// restore" into a fresh data directory (refused first with another key),
// and starts a service there: it lists every configuration and flow of the
// original, and goes on reading the mailbox from the backup's checkpoint,
// recording each message once, the ones the original recorded after the
// backup and the ones that arrive after the restore alike.
func TestBackupRestore(t *testing.T) {
	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "backup", "pw-backup")
	other := d.AddUser(t, "quiet", "pw-quiet")
	hooks := newHookListener(t)
	s := newService(t, fastRetryEnv...)
	s.start()
	c := s.api()
	createMailbox(s, c, d, "backup_inbox", address, imapconf.BacklogAll)
	createMailbox(s, c, d, "quiet_inbox", other, imapconf.BacklogAll)
	ordersURL := hooks.handle("/orders", "", nil)
	hooks.setSecret("/orders", createFlow(s, c, flowSpec{name: "orders", imap: "backup_inbox", subject: "Order", match: "prefix", url: ordersURL}))
	quietURL := hooks.handle("/quiet", "", nil)
	hooks.setSecret("/quiet", createFlow(s, c, flowSpec{name: "quiet", imap: "quiet_inbox", subject: "Quiet", match: "exact", url: quietURL}))
	wantIMAPs, wantFlows := names(s, c)
	waitState(s, c, "backup_inbox", imapconf.StateIdle, 15*time.Second)

	// Steady mail, until stopped.
	conn := d.DialIMAPS(t, address, nil)
	var appended atomic.Int64
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			raw := mailMessage(backupMessageID(i), address, fmt.Sprintf("Order %03d", i), "Steady mail.")
			if _, err := appendMessage(conn, raw); err != nil {
				done <- fmt.Errorf("appending message %d: %w", i, err)
				return
			}
			appended.Store(int64(i))
			time.Sleep(backupPace)
		}
	}()
	db := s.readDB()
	waitFor(s, 60*time.Second, fmt.Sprintf("%d messages recorded", backupBefore), func() (bool, any) {
		n := countMessages(s, db)
		return n >= backupBefore, fmt.Sprintf("%d recorded", n)
	})

	file := filepath.Join(t.TempDir(), "mailtrigger.backup")
	atBackup := appended.Load()
	out := s.cli("backup", file)
	t.Logf("backup while %d messages were appended: %s", atBackup, strings.TrimSpace(out))
	// The service goes on recording the steady mail after the backup.
	waitFor(s, 60*time.Second, "the steady mail after the backup", func() (bool, any) {
		return appended.Load() >= atBackup+backupAfter, appended.Load()
	})
	close(stop)
	if err := <-done; err != nil {
		s.fatalf("%v", err)
	}
	total := int(appended.Load())
	waitFor(s, 60*time.Second, fmt.Sprintf("all %d messages recorded by the original", total), func() (bool, any) {
		n := countMessages(s, db)
		return n >= total, fmt.Sprintf("%d recorded", n)
	})
	s.stop()

	// The backup holds a snapshot from the middle of the steady mail.
	bdb, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	inBackup := countMessages(s, bdb)
	bdb.Close()
	t.Logf("the backup holds %d messages of the %d the original recorded", inBackup, total)
	if inBackup < backupBefore || inBackup >= total {
		t.Errorf("the backup holds %d messages, want at least %d and fewer than %d (taken during the steady mail)", inBackup, backupBefore, total)
	}

	// A fresh data directory: another key is refused, the right one taken.
	r := newService(t, fastRetryEnv...)
	if err := os.MkdirAll(r.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	wrongKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, secret.KeySize)) + "\n"
	keyPath := filepath.Join(r.dataDir, secret.KeyFileName)
	if err := os.WriteFile(keyPath, []byte(wrongKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := r.cliFails("restore", file); !strings.Contains(msg, "the key does not match the backup") {
		t.Errorf("restore with another key: got %q, want a refusal saying the key does not match", msg)
	}
	if fileExists(r.dbPath()) {
		t.Errorf("the refused restore left %s", r.dbPath())
	}
	key, err := os.ReadFile(filepath.Join(s.dataDir, secret.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %s", strings.TrimSpace(r.cli("restore", file)))

	r.start()
	rc := r.apiAs("e2e_restored")
	if imaps, flows := names(r, rc); !slices.Equal(imaps, wantIMAPs) || !slices.Equal(flows, wantFlows) {
		r.errorf("the restored service lists configurations %q and flows %q, want %q and %q", imaps, flows, wantIMAPs, wantFlows)
	}
	// A restored service refuses another restore while it runs.
	if msg := r.cliFails("restore", "--force", file); !strings.Contains(msg, "stop it before restoring") {
		t.Errorf("restore into the running service's directory: got %q, want a refusal", msg)
	}

	// It reads on from the backup's checkpoint: what the original recorded
	// after the backup, and what arrives now, each once.
	for i := total + 1; i <= total+restoredAfter; i++ {
		appendOrFail(r, conn, mailMessage(backupMessageID(i), address, fmt.Sprintf("Order %03d", i), "After the restore."))
	}
	total += restoredAfter
	rdb := r.readDB()
	waitFor(r, 60*time.Second, fmt.Sprintf("all %d messages recorded by the restored service", total), func() (bool, any) {
		n := countMessages(r, rdb)
		return n >= total, fmt.Sprintf("%d recorded", n)
	})
	waitState(r, rc, "backup_inbox", imapconf.StateIdle, 15*time.Second)
	checkEachRecordedOnce(t, rdb, total, backupMessageID)
	// And it delivers: the last message's run reaches the endpoint.
	last := backupMessageID(total)
	poll(r, 30*time.Second, 100*time.Millisecond, "the run of "+last+" delivered", func() (bool, any) {
		for _, dl := range hooks.on("/orders") {
			if bareID(dl.payload.Message.MessageID) == last && dl.answered == http.StatusOK {
				return true, nil
			}
		}
		return false, len(hooks.on("/orders"))
	})
	r.stop()
}
