package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/graphsource/graphfake"
)

const (
	// graphCrashMessages is how many messages TestGraphCrashSafety reads.
	graphCrashMessages = 120
	// graphCrashMaxKills bounds the kills of one run.
	graphCrashMaxKills = 12
)

func graphCrashMessageID(i int) string { return fmt.Sprintf("graph-crash-%03d@e2e.example.org", i) }

func graphCrashMessage(i int) []byte {
	return fmt.Appendf(nil, "From: Sender <sender@example.org>\r\nTo: graph@contoso.com\r\nSubject: Graph crash test message %03d\r\n"+
		"Message-ID: <%s>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"This is message %d of %d.\r\n%s", i, graphCrashMessageID(i), i, graphCrashMessages, strings.Repeat("some text of the message\r\n", 400))
}

// TestGraphCrashSafety reads 120 messages from the Microsoft Graph fake
// with afterProcessing move while the service is killed with SIGKILL at
// random moments and restarted on the same data directory: every message
// must be recorded exactly once and end in the destination folder (moved
// only once recorded, the moves a kill left undone done by the next
// incarnation), and the deltaLink must be stored.
func TestGraphCrashSafety(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))

	g := graphfake.New(t)
	const user = "graphcrash@contoso.com"
	g.AddUser(user, "Processed")
	for i := 1; i <= graphCrashMessages; i++ {
		g.AddMessage(user, graphCrashMessage(i))
	}

	s := newService(t)
	s.start()
	api := s.api()
	str := func(v string) *string { return &v }
	poll := imapconf.MinPollInterval
	if _, err := api.CreateIMAP(context.Background(), imapconf.Input{
		Name: str("graphcrash"), Type: str(imapconf.TypeMSGraph), Username: str(user),
		TenantID: str(graphfake.TenantID), ClientID: str(graphfake.ClientID), ClientSecret: str(graphfake.ClientSecret),
		GraphURL: str(g.URL), AuthorityURL: str(g.URL), CACert: str(g.CACert),
		Backlog: str(imapconf.BacklogAll), AfterProcessing: str(imapconf.AfterMove), MoveTo: str("Processed"), PollInterval: &poll,
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

	var kills int
	atStart := 0
	for kills < graphCrashMaxKills && atStart < graphCrashMessages {
		waitFor(s, 15*time.Second, "a batch recorded", func() (bool, any) {
			n := committed()
			return n > atStart, fmt.Sprintf("%d recorded", n)
		})
		life := time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		time.Sleep(life)
		s.kill()
		kills++
		atKill := committed()
		t.Logf("kill %2d %3d ms after a batch: %3d recorded (%+d by this incarnation), %d moved",
			kills, life.Milliseconds(), atKill, atKill-atStart, len(g.Messages(user, "Processed")))
		s.start()
		atStart = atKill
	}

	waitFor(s, 30*time.Second, "all recorded and moved", func() (bool, any) {
		n, moved, left := committed(), len(g.Messages(user, "Processed")), len(g.Messages(user, "inbox"))
		return n >= graphCrashMessages && moved == graphCrashMessages && left == 0,
			fmt.Sprintf("%d recorded, %d moved, %d left", n, moved, left)
	})
	waitFor(s, 15*time.Second, "the deltaLink stored and nothing owed", func() (bool, any) {
		l, p := count(`SELECT COUNT(*) FROM checkpoints WHERE kind = 'graph' AND value <> ''`), count(`SELECT COUNT(*) FROM owed_actions`)
		return l == 1 && p == 0, fmt.Sprintf("%d links, %d owed", l, p)
	})
	final := waitState(s, api, "graphcrash", imapconf.StatePolling, 15*time.Second)
	t.Logf("final incarnation's status: %+v", final)
	s.stop()

	checkEachRecordedOnce(t, db, graphCrashMessages, graphCrashMessageID)
}
