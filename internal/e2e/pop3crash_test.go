package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

const (
	// pop3CrashMessages is how many messages TestPOP3CrashSafety reads.
	pop3CrashMessages = 300
	// pop3CrashMinKills is how many kills must hit the service while it
	// was still reading; pop3CrashMaxKills bounds the kills of one run.
	pop3CrashMinKills = 3
	pop3CrashMaxKills = 20
)

func pop3CrashMessageID(i int) string { return fmt.Sprintf("pop3-crash-%03d@e2e.example.org", i) }

// pop3CrashMessage is message i, about 20 KB, so that reading them all
// takes long enough to be interrupted.
func pop3CrashMessage(i int) []byte {
	return fmt.Appendf(nil, "From: Sender <sender@example.org>\r\nTo: pop3@example.test\r\nSubject: POP3 crash test message %03d\r\n"+
		"Message-ID: <%s>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"This is message %d of %d.\r\n%s", i, pop3CrashMessageID(i), i, pop3CrashMessages,
		strings.Repeat(".line starting with a dot, dot-stuffed by the server\r\n", 400))
}

// TestPOP3CrashSafety reads 300 messages over POP3S with afterProcessing
// delete while the service is killed with SIGKILL at random moments and
// restarted on the same data directory: every message must be recorded
// exactly once, none missing, the mailbox must end empty (each message
// deleted only once recorded), and the unique ids remembered must be
// forgotten once the messages are gone.
func TestPOP3CrashSafety(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))

	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "pop3crash", "pw-pop3crash")
	c := d.DialIMAPS(t, address, nil)
	for i := 1; i <= pop3CrashMessages; i++ {
		if _, err := appendMessage(c, pop3CrashMessage(i)); err != nil {
			t.Fatalf("appending message %d: %v", i, err)
		}
	}
	inbox := func() int {
		out := d.Doveadm(t, "-f", "tab", "fetch", "-u", address, "uid", "mailbox", "INBOX", "all")
		return len(strings.Split(strings.TrimSpace(out), "\n")) - 1 // minus the header row
	}

	s := newService(t)
	s.start()
	api := s.api()
	str := func(v string) *string { return &v }
	port, poll := d.POP3SPort, imapconf.MinPollInterval
	if _, err := api.CreateIMAP(context.Background(), imapconf.Input{
		Name: str("pop3crash"), ServerType: str(imapconf.ServerPOP3S), Type: str(imapconf.TypeGeneric),
		Host: str(d.Host), Port: &port, TLS: str(imapconf.TLSImplicit), Username: str(address), Password: str("pw-pop3crash"),
		CACert: str(string(d.CACertPEM)), Backlog: str(imapconf.BacklogAll), AfterProcessing: str(imapconf.AfterDelete),
		PollInterval: &poll,
	}); err != nil {
		t.Fatal(err)
	}
	db := s.readDB()
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
			s.fatalf("%s: %v", q, err)
		}
		return n
	}
	committed := func() int { return count(`SELECT COUNT(*) FROM messages`) }

	// Each incarnation is killed at a random moment after it recorded its
	// first batch, until all are recorded: in the middle of reading, or
	// between the last commit and QUIT (the next incarnation then deletes
	// what is recorded).
	var kills, reading int
	atStart := 0
	for kills < pop3CrashMaxKills && atStart < pop3CrashMessages {
		waitFor(s, 15*time.Second, "a batch recorded", func() (bool, any) {
			n := committed()
			return n > atStart, fmt.Sprintf("%d recorded", n)
		})
		// Within 10 ms: a fast machine reads and records 25 messages
		// (a batch) in 3–4 ms, and 200 of them, with pipelined RETRs,
		// in about 60 ms; a kill 30 ms after a batch missed the reading
		// too often.
		life := time.Duration(rng.Int64N(int64(10 * time.Millisecond)))
		time.Sleep(life)
		s.kill()
		kills++
		atKill := committed()
		if atKill < pop3CrashMessages {
			reading++
		}
		t.Logf("kill %2d %3d ms after a batch: %3d recorded (%+d by this incarnation), %d on the server",
			kills, life.Milliseconds(), atKill, atKill-atStart, inbox())
		s.start()
		atStart = atKill
	}
	if reading < pop3CrashMinKills {
		s.errorf("only %d of %d kills hit the service while it was reading, want at least %d", reading, kills, pop3CrashMinKills)
	}

	waitFor(s, 30*time.Second, "all recorded and the mailbox empty", func() (bool, any) {
		n, left := committed(), inbox()
		return n >= pop3CrashMessages && left == 0, fmt.Sprintf("%d recorded, %d on the server", n, left)
	})
	waitFor(s, 15*time.Second, "the unique ids forgotten", func() (bool, any) {
		n := count(`SELECT COUNT(*) FROM seen_ids`)
		return n == 0, fmt.Sprintf("%d remembered", n)
	})
	final := waitState(s, api, "pop3crash", imapconf.StatePolling, 15*time.Second)
	t.Logf("final incarnation's status: %+v", final)
	s.stop()

	checkEachRecordedOnce(t, db, pop3CrashMessages, pop3CrashMessageID)
	if n := count(`SELECT COUNT(DISTINCT uid) FROM messages WHERE uid_validity = 0`); n != pop3CrashMessages {
		t.Errorf("%d distinct uids, want %d", n, pop3CrashMessages)
	}
}
