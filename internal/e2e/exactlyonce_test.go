package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

const (
	// onceMessages is how many matching messages TestExactlyOnceUnderCrashes
	// appends.
	onceMessages = 300
	// onceMinActiveKills is how many kills must hit the service with work
	// in its hands: messages appended but not recorded, or runs not
	// delivered.
	onceMinActiveKills = 5
	// onceMaxKills bounds the kills of one run.
	onceMaxKills = 30
	// onceBurstMax and oncePauseMax shape the appends: bursts of 1 to
	// onceBurstMax messages, pauses of up to oncePauseMax between them,
	// about 6 s for all of them.
	onceBurstMax = 25
	oncePauseMax = 500 * time.Millisecond
	// onceKillMin and onceKillMax bound how long a started service lives
	// before it is killed.
	onceKillMin = 100 * time.Millisecond
	onceKillMax = 900 * time.Millisecond
	// onceHookDelayMax bounds the listener's random delay before it answers,
	// so that kills also land while a delivery waits for its answer.
	onceHookDelayMax = 60 * time.Millisecond
)

func onceMessageID(i int) string { return fmt.Sprintf("once-%03d@e2e.example.org", i) }

// onceAppender appends the numbered messages over one IMAP connection in
// random bursts.
type onceAppender struct {
	c        *imapclient.Client
	to       string
	rng      *rand.Rand // used only by run's goroutine
	appended atomic.Int64
	err      error // read after done is closed
	done     chan struct{}
}

func (a *onceAppender) run() {
	defer close(a.done)
	for i := 1; i <= onceMessages; {
		burst := 1 + a.rng.IntN(onceBurstMax)
		for ; burst > 0 && i <= onceMessages; burst, i = burst-1, i+1 {
			raw := mailMessage(onceMessageID(i), a.to, fmt.Sprintf("Ticket %03d", i), fmt.Sprintf("Ticket number %d.", i))
			if _, err := appendMessage(a.c, raw); err != nil {
				a.err = fmt.Errorf("appending message %d: %w", i, err)
				return
			}
			a.appended.Store(int64(i))
		}
		if i <= onceMessages {
			time.Sleep(time.Duration(a.rng.Int64N(int64(oncePauseMax))))
		}
	}
}

func (a *onceAppender) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// TestExactlyOnceUnderCrashes appends 300 messages that all match one flow
// while the service ingests them and delivers their runs, and kills it with
// SIGKILL at random moments (at least 5 times with messages or runs owed),
// restarting it each time on the same data directory. A run lease of 3 s
// (MAILTRIGGER_RUN_LEASE) lets runs a killed incarnation left "delivering"
// be taken up again soon. Afterwards every message must be recorded once and
// have exactly one run, every run must be delivered, and the listener must
// have seen only run ids the service has, each with a valid signature. A run
// delivered again because the service died before recording its delivery is
// allowed (at least once) and counted; a second run for a message is not.
func TestExactlyOnceUnderCrashes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))

	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "once", "pw-once")
	hooks := newHookListener(t)
	var delayMu sync.Mutex
	delayRNG := rand.New(rand.NewPCG(seed+2, seed>>8))
	hookURL := hooks.handle("/tickets", "", func(int) hookResponse {
		delayMu.Lock()
		defer delayMu.Unlock()
		return hookResponse{status: 200, body: "ok", delay: time.Duration(delayRNG.Int64N(int64(onceHookDelayMax)))}
	})
	s := newService(t, fastRetryEnv...)
	s.start()
	c := s.api()
	// Backlog "all": every message in the fresh folder is owed, whenever
	// the first connect happens (see TestCrashSafety).
	createMailbox(s, c, d, "once_inbox", addr, imapconf.BacklogAll)
	hooks.setSecret("/tickets", createFlow(s, c, flowSpec{name: "tickets", imap: "once_inbox", subject: "Ticket", match: "prefix", url: hookURL}))
	waitState(s, c, "once_inbox", imapconf.StateIdle, 15*time.Second)

	db := s.readDB()
	count := func(query string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
			s.fatalf("%s: %v", query, err)
		}
		return n
	}

	a := &onceAppender{c: d.DialIMAPS(t, addr, nil), to: addr, rng: rand.New(rand.NewPCG(seed+1, seed>>16)), done: make(chan struct{})}
	go a.run()

	// Kill and restart until the appends are over and enough kills found
	// work in the service's hands. A kill is "active" when, in the database
	// the killed incarnation left, messages already appended were not
	// recorded or runs were not delivered; "mid-delivery" when the listener
	// had taken a run the database does not show delivered.
	var kills, active, whileAppending, midDelivery int
	for kills < onceMaxKills {
		if a.finished() && (a.err != nil || active >= onceMinActiveKills) {
			break
		}
		life := onceKillMin + time.Duration(rng.Int64N(int64(onceKillMax-onceKillMin)))
		time.Sleep(life)
		appended := int(a.appended.Load())
		appending := !a.finished()
		s.kill()
		kills++
		recorded := count(`SELECT COUNT(*) FROM messages`)
		runs := count(`SELECT COUNT(*) FROM runs`)
		owed := count(`SELECT COUNT(*) FROM runs WHERE status <> 'delivered'`)
		taken := takenNotRecorded(t, s, db, hooks)
		isActive := recorded < appended || owed > 0
		if isActive {
			active++
		}
		if appending {
			whileAppending++
		}
		if taken > 0 {
			midDelivery++
		}
		t.Logf("kill %2d after %3d ms: %3d appended, %3d recorded, %3d runs, %3d not delivered, %d taken by the listener but not recorded delivered; active %v",
			kills, life.Milliseconds(), appended, recorded, runs, owed, taken, isActive)
		s.start()
	}
	t.Logf("%d kills: %d active, %d while appending, %d mid-delivery", kills, active, whileAppending, midDelivery)

	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		s.fatalf("the appends did not finish within 60 s (%d done)", a.appended.Load())
	}
	if a.err != nil {
		s.fatalf("%v\n%s", a.err, d.Log())
	}
	if active < onceMinActiveKills {
		s.errorf("only %d of %d kills found messages or runs owed, want at least %d", active, kills, onceMinActiveKills)
	}

	// Everything recorded and delivered, within the lease and a few polls.
	poll(s, 90*time.Second, 200*time.Millisecond, "every message recorded and every run delivered", func() (bool, any) {
		recorded := count(`SELECT COUNT(*) FROM messages`)
		runs := count(`SELECT COUNT(*) FROM runs`)
		delivered := count(`SELECT COUNT(*) FROM runs WHERE status = 'delivered'`)
		return recorded >= onceMessages && runs >= onceMessages && delivered == runs,
			fmt.Sprintf("%d recorded, %d runs, %d delivered", recorded, runs, delivered)
	})
	checkExactlyOnce(t, s, c, hooks)
	s.stop()
}

// takenNotRecorded counts the runs the listener has taken that the database
// does not show delivered.
func takenNotRecorded(t *testing.T, s *service, db *sql.DB, hooks *hookListener) int {
	t.Helper()
	status := map[string]string{}
	rows, err := db.QueryContext(context.Background(), `SELECT public_id, status FROM runs`)
	if err != nil {
		s.fatalf("reading runs: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			s.fatalf("reading runs: %v", err)
		}
		status[id] = st
	}
	if err := rows.Err(); err != nil {
		s.fatalf("reading runs: %v", err)
	}
	n := 0
	for id := range deliveredIDs(hooks) {
		if status[id] != "delivered" {
			n++
		}
	}
	return n
}

// deliveredIDs counts the listener's deliveries by run id.
func deliveredIDs(hooks *hookListener) map[string]int {
	out := map[string]int{}
	for _, d := range hooks.all() {
		out[d.id]++
	}
	return out
}

// checkExactlyOnce checks, through the API, that each of the messages is
// recorded once with exactly one run of flow tickets, delivered; and that
// the listener saw only those runs, each at least once, validly signed.
func checkExactlyOnce(t *testing.T, s *service, c *client.Client, hooks *hookListener) {
	t.Helper()
	msgs := listMessages(s, c, "once_inbox")
	byAPIID := map[int64]string{}
	recorded := map[string]int{}
	for _, m := range msgs {
		byAPIID[m.ID] = bareID(m.MessageID)
		recorded[bareID(m.MessageID)]++
	}
	bad := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		if bad++; bad >= 20 {
			t.Fatalf("too many errors")
		}
	}
	for i := 1; i <= onceMessages; i++ {
		if n := recorded[onceMessageID(i)]; n != 1 {
			fail("message %s recorded %d times, want once", onceMessageID(i), n)
		}
		delete(recorded, onceMessageID(i))
	}
	for id, n := range recorded {
		fail("unexpected message %q recorded %d times", id, n)
	}

	runs := listRuns(s, c, url.Values{"flow": {"tickets"}})
	if all := listRuns(s, c, nil); len(all) != len(runs) {
		fail("%d runs in all, %d of flow tickets; want only runs of tickets", len(all), len(runs))
	}
	runsOf := map[int64][]string{}
	known := map[string]int64{}
	for _, r := range runs {
		runsOf[r.MessageID] = append(runsOf[r.MessageID], r.ID)
		known[r.ID] = r.MessageID
		if r.Status != "delivered" {
			fail("run %s (message %s): %s after %d attempts (%s), want delivered", r.ID, byAPIID[r.MessageID], r.Status, r.AttemptCount, r.LastError)
		}
	}
	for apiID, id := range byAPIID {
		if n := len(runsOf[apiID]); n != 1 {
			fail("message %s has %d runs %v, want exactly one", id, n, runsOf[apiID])
		}
	}
	if len(runs) != onceMessages {
		fail("%d runs, want %d", len(runs), onceMessages)
	}

	seen := deliveredIDs(hooks)
	var repeated []string
	for _, dl := range hooks.all() {
		msg, ok := known[dl.id]
		if !ok {
			fail("the listener got run id %q (path %s), which the service does not have", dl.id, dl.path)
			continue
		}
		if err := checkDelivery(dl, "tickets", "once_inbox"); err != nil {
			fail("a delivery of run %s: %v", dl.id, err)
		}
		if dl.payload.Message.ID != msg || bareID(dl.payload.Message.MessageID) != byAPIID[msg] {
			fail("a delivery of run %s: message %d %q, want %d %q", dl.id, dl.payload.Message.ID, dl.payload.Message.MessageID, msg, byAPIID[msg])
		}
	}
	for id := range known {
		switch n := seen[id]; {
		case n == 0:
			fail("run %s (message %s) is delivered, but the listener never got it", id, byAPIID[known[id]])
		case n > 1:
			repeated = append(repeated, fmt.Sprintf("%s×%d", id, n))
		}
	}
	sort.Strings(repeated)
	incomplete, unknown := hooks.counts()
	t.Logf("the listener took %d deliveries of %d runs; %d runs delivered more than once after a crash %v; %d requests cut off by a kill",
		len(hooks.all()), len(seen), len(repeated), repeated, incomplete)
	if unknown != 0 {
		fail("%d requests on unknown paths", unknown)
	}
}
