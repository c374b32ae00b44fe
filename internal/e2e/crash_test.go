package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

const (
	// crashMessages is how many messages TestCrashSafety appends.
	crashMessages = 500
	// crashMinActiveKills is how many kills must hit the service while it
	// was ingesting.
	crashMinActiveKills = 5
	// crashMaxKills bounds the kills of one run.
	crashMaxKills = 40
	// crashBurstMax and crashPauseMax shape the appends: bursts of 1 to
	// crashBurstMax messages back to back, with pauses of up to
	// crashPauseMax between them, about 9 s for all of them.
	crashBurstMax = 40
	crashPauseMax = 650 * time.Millisecond
	// crashKillMin and crashKillMax bound the random time a started service
	// lives before it is killed.
	crashKillMin = 50 * time.Millisecond
	crashKillMax = 800 * time.Millisecond
)

func crashMessageID(i int) string { return fmt.Sprintf("crash-%03d@e2e.example.org", i) }

func crashMessage(i int) []byte {
	return fmt.Appendf(nil, "From: Sender <sender@example.org>\r\nTo: crash@example.test\r\nSubject: Crash test message %03d\r\n"+
		"Message-ID: <%s>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"This is message %d of %d.\r\n", i, crashMessageID(i), i, crashMessages)
}

// appender appends the numbered messages over one IMAP connection in
// random bursts, recording each message's UID.
type appender struct {
	c        *imapclient.Client
	rng      *rand.Rand // used only by run's goroutine
	uids     []uint32   // by message number; read after done is closed
	appended atomic.Int64
	err      error // read after done is closed
	done     chan struct{}
}

func (a *appender) run() {
	defer close(a.done)
	for i := 1; i <= crashMessages; {
		burst := 1 + a.rng.IntN(crashBurstMax)
		for ; burst > 0 && i <= crashMessages; burst, i = burst-1, i+1 {
			uid, err := appendMessage(a.c, crashMessage(i))
			if err != nil {
				a.err = fmt.Errorf("appending message %d: %w", i, err)
				return
			}
			a.uids[i] = uid
			a.appended.Store(int64(i))
		}
		if i <= crashMessages {
			time.Sleep(time.Duration(a.rng.Int64N(int64(crashPauseMax))))
		}
	}
}

// TestCrashSafety appends 500 messages while the service ingests them and is
// killed with SIGKILL at random moments, restarted each time on the same data
// directory; then every message must be recorded exactly once, under the UID
// it got, and the checkpoint must stand at the folder's highest UID.
//
// The configuration reads the backlog "all", and is created before the
// appends: with "new", a kill before the very first connect had stored the
// starting checkpoint would rightly skip what arrived before that connect,
// and the test would depend on that race. With "all" every message in the
// (fresh, empty) folder is owed, whenever the first connect happens.
func TestCrashSafety(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))

	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "crash", "pw-crash")
	s := newService(t)
	s.start()
	api := s.api()
	createMailbox(s, api, d, "crash", address, imapconf.BacklogAll)
	waitState(s, api, "crash", imapconf.StateIdle, 15*time.Second)
	db := s.readDB()
	committed := func() int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM messages`).Scan(&n); err != nil {
			s.fatalf("counting recorded messages: %v", err)
		}
		return n
	}

	a := &appender{
		c:    d.DialIMAPS(t, address, nil),
		rng:  rand.New(rand.NewPCG(seed+1, seed>>16)),
		uids: make([]uint32, crashMessages+1),
		done: make(chan struct{}),
	}
	go a.run()
	appendDone := func() bool {
		select {
		case <-a.done:
			return true
		default:
			return false
		}
	}

	// Kill and restart until enough kills hit the service while it was
	// ingesting and the appends are over. A kill hit ingestion ("active")
	// when the killed incarnation had recorded something and messages were
	// still owed (fewer than all recorded); it caught the service behind
	// when messages already appended were not yet recorded; both together
	// mean it was killed with work in its hands. An incarnation killed soon
	// after its start may have recorded nothing: Dovecot tells an idling
	// client of new mail about 0.5 s after it arrived.
	var kills, active, behind, both int
	atStart := committed()
	for kills < crashMaxKills {
		if appendDone() && (a.err != nil || active >= crashMinActiveKills) {
			break
		}
		if atStart >= crashMessages {
			break // nothing left to interrupt
		}
		life := crashKillMin + time.Duration(rng.Int64N(int64(crashKillMax-crashKillMin)))
		time.Sleep(life)
		appended := int(a.appended.Load())
		s.kill()
		kills++
		atKill := committed()
		isActive := atKill > atStart && atKill < crashMessages
		isBehind := atKill < appended
		if isActive {
			active++
		}
		if isBehind {
			behind++
		}
		if isActive && isBehind {
			both++
		}
		t.Logf("kill %2d after %3d ms: %3d appended, %3d recorded (%+d by this incarnation), active %v, behind %v",
			kills, life.Milliseconds(), appended, atKill, atKill-atStart, isActive, isBehind)
		s.start()
		atStart = atKill
	}
	t.Logf("%d kills: %d while ingesting (active), %d with appended messages not yet recorded (behind), %d both",
		kills, active, behind, both)

	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		s.fatalf("the appends did not finish within 60 s (%d done)", a.appended.Load())
	}
	if a.err != nil {
		s.fatalf("%v\n%s", a.err, d.Log())
	}
	if active < crashMinActiveKills {
		s.errorf("only %d of %d kills hit the service while it was ingesting, want at least %d", active, kills, crashMinActiveKills)
	}

	waitFor(s, 60*time.Second, fmt.Sprintf("%d messages recorded", crashMessages), func() (bool, any) {
		n := committed()
		return n >= crashMessages, fmt.Sprintf("%d recorded", n)
	})
	final := waitState(s, api, "crash", imapconf.StateIdle, 15*time.Second)
	t.Logf("final incarnation's status: %+v", final)
	s.stop()

	// The folder as the server has it.
	sel, err := a.c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("selecting INBOX: %v", err)
	}
	search, err := a.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatalf("searching INBOX: %v", err)
	}
	set, _ := search.All.(imap.UIDSet)
	folderUIDs, ok := set.Nums()
	if !ok || len(folderUIDs) != crashMessages {
		t.Fatalf("the folder holds UIDs %v, want %d messages", set, crashMessages)
	}
	highest := uint32(slices.Max(folderUIDs))

	// The database, read directly.
	st := s.openStore()
	cfg, err := st.GetIMAP(context.Background(), "crash")
	if err != nil {
		t.Fatalf("reading the configuration: %v", err)
	}
	cp, ok, err := st.GetCheckpoint(context.Background(), cfg.ID)
	if err != nil || !ok {
		t.Fatalf("reading the checkpoint: ok %v, %v", ok, err)
	}
	if cp.Epoch != sel.UIDValidity || cp.Last != highest {
		t.Errorf("checkpoint: got UIDVALIDITY %d last UID %d, want %d and %d (the folder's highest UID)",
			cp.Epoch, cp.Last, sel.UIDValidity, highest)
	}
	checkRecordedOnce(t, db, a.uids)
}

// checkRecordedOnce checks that each numbered message is recorded exactly
// once, under the UID its APPEND returned, and nothing else is.
func checkRecordedOnce(t *testing.T, db *sql.DB, uids []uint32) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(),
		`SELECT message_id, COUNT(*), MIN(uid), MAX(uid) FROM messages GROUP BY message_id ORDER BY message_id`)
	if err != nil {
		t.Fatalf("reading recorded messages: %v", err)
	}
	defer rows.Close()
	type rec struct {
		n          int
		minU, maxU int64
	}
	got := map[string]rec{}
	for rows.Next() {
		var id string
		var r rec
		if err := rows.Scan(&id, &r.n, &r.minU, &r.maxU); err != nil {
			t.Fatalf("reading recorded messages: %v", err)
		}
		got[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading recorded messages: %v", err)
	}
	bad := 0
	for i := 1; i <= crashMessages; i++ {
		id := crashMessageID(i)
		r, ok := got[id]
		delete(got, id)
		switch {
		case !ok:
			t.Errorf("message %d (%s, uid %d): not recorded", i, id, uids[i])
		case r.n != 1:
			t.Errorf("message %d (%s): recorded %d times (uids %d..%d), want once", i, id, r.n, r.minU, r.maxU)
		case r.minU != int64(uids[i]):
			t.Errorf("message %d (%s): recorded under uid %d, want %d", i, id, r.minU, uids[i])
		default:
			continue
		}
		if bad++; bad >= 20 {
			t.Fatalf("too many errors")
		}
	}
	for id, r := range got {
		t.Errorf("unexpected message %q recorded %d times", id, r.n)
	}
}
