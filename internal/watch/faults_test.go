package watch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/imapsource"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// The faults tests run a watcher against the real Dovecot while the network
// (a fault-injecting proxy) or the server fails under it, and check that it
// shows the failure, recovers by itself, and records every message exactly
// once.

// TestConnectionFaults delivers mail while the proxy between the watcher
// and Dovecot resets the connections, stalls them (while idling, while
// connecting and in the middle of a FETCH) and refuses new ones.
func TestConnectionFaults(t *testing.T) {
	e := newEnv(t, store.SQLite, watch.Options{
		// The watchdog: a wait is stale after 2 s, a command after 3 s
		// (plus time for a body's size), connecting and login after 5 s.
		IdleMax:        time.Second,
		SilenceGrace:   time.Second,
		CommandTimeout: 3 * time.Second,
		DialTimeout:    5 * time.Second,
		// Long enough for the status poller to see each failure state.
		MinBackoff: 300 * time.Millisecond,
		MaxBackoff: time.Second,
	})
	p := testenv.StartProxy(t, e.d.Addr(e.d.IMAPSPort))
	const name, password = "faults", "pw-faults"
	addr := e.mailbox(name, func(in *imapconf.Input) { in.Host, in.Port = &p.Host, &p.Port })
	e.waitState(name, imapconf.StateIdle, 15*time.Second)
	log := watchStatus(t, e, name)

	// The sender delivers straight to Dovecot, not through the proxy,
	// throughout the faults below.
	const n = 60
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("fault-%d@example.org", i))
	}
	senderErr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := appendDirect(e.d, addr, password, testMessage("fault", i, 600)); err != nil {
				senderErr <- fmt.Errorf("appending message %d: %w", i, err)
				return
			}
			// The sender's pace, part of the scenario: mail keeps
			// arriving while the faults below strike.
			time.Sleep(250 * time.Millisecond)
		}
		senderErr <- nil
	}()

	// idleThen waits until the watcher idles, then a random moment more,
	// so that the faults strike in different phases.
	idleThen := func(maxDelay time.Duration) time.Time {
		t.Helper()
		e.waitState(name, imapconf.StateIdle, 20*time.Second)
		// A random moment, on purpose: the fault's phase.
		time.Sleep(rand.N(maxDelay + 1))
		return time.Now()
	}
	errorAfter := func(since time.Time) func(imapconf.Status) bool {
		return func(st imapconf.Status) bool { return st.LastErrorAt != nil && !st.LastErrorAt.Before(since) }
	}

	// Resets at random moments: while idling, or re-idling every second.
	for i := range 3 {
		start := idleThen(700 * time.Millisecond)
		reset := p.ResetAll()
		st := log.waitFor(t, start, errorAfter(start), 10*time.Second)
		t.Logf("reset %d (%d connections): %s: %s", i, reset, st.State, st.LastError)
	}

	// Stalls while idling: only the watchdog can tell.
	for i := range 2 {
		start := idleThen(300 * time.Millisecond)
		p.Stall(true)
		st := log.waitFor(t, start, errorAfter(start), 10*time.Second)
		if !p.Stalled() {
			t.Fatal("the stall ended before the watcher noticed it")
		}
		p.Stall(false)
		t.Logf("stall %d noticed after %v: %s: %s", i, st.LastErrorAt.Sub(start).Round(time.Millisecond), st.State, st.LastError)
		if st.State != imapconf.StateStale && st.State != imapconf.StateConnecting {
			t.Errorf("stall %d: got state %s, want %s", i, st.State, imapconf.StateStale)
		}
	}

	// A stall while connecting: the TLS handshake and login must time out.
	{
		start := idleThen(300 * time.Millisecond)
		p.Stall(true)
		p.ResetAll()
		st := log.waitFor(t, start, func(st imapconf.Status) bool {
			return errorAfter(start)(st) && strings.Contains(st.LastError, imapsource.ErrTimeout.Error()) &&
				!strings.HasPrefix(st.LastError, imapsource.StepWait+":")
		}, 20*time.Second)
		p.Stall(false)
		t.Logf("stall while connecting noticed after %v: %s: %s", st.LastErrorAt.Sub(start).Round(time.Millisecond), st.State, st.LastError)
	}

	// A reset, then a stall, in the middle of a message body: the stall
	// does not end by itself, so the FETCH must time out. Both FETCHes are
	// done again on the next connection.
	for i, fault := range []string{"reset", "stall"} {
		start := idleThen(0)
		p.AfterBytes(32<<10, func() {
			if fault == "reset" {
				p.ResetAll()
			} else {
				p.Stall(true)
			}
		})
		if err := appendDirect(e.d, addr, password, testMessage("big", i, 256<<10)); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("big-%d@example.org", i))
		st := log.waitFor(t, start, errorAfter(start), 30*time.Second)
		if fault == "stall" {
			if !p.Stalled() {
				t.Fatal("the stall ended before the watcher noticed it")
			}
			p.Stall(false)
		}
		t.Logf("%s in a fetch noticed after %v: %s: %s", fault, st.LastErrorAt.Sub(start).Round(time.Millisecond), st.State, st.LastError)
		if !strings.Contains(st.LastError, "fetch") {
			t.Errorf("%s in a fetch: got last error %q, want it to name the fetch", fault, st.LastError)
		}
		if fault == "stall" && st.State != imapconf.StateStale && st.State != imapconf.StateConnecting {
			t.Errorf("stall in a fetch: got state %s, want %s", st.State, imapconf.StateStale)
		}
	}

	// New connections refused for a while: the failed reconnections show.
	start := idleThen(300 * time.Millisecond)
	p.Refuse(true)
	p.ResetAll()
	st := log.waitFor(t, start, func(st imapconf.Status) bool {
		return errorAfter(start)(st) && st.State == imapconf.StateError &&
			(strings.HasPrefix(st.LastError, imapsource.StepTLS+":") || strings.HasPrefix(st.LastError, imapsource.StepConnect+":"))
	}, 10*time.Second)
	p.Refuse(false)
	t.Logf("refused: %s: %s", st.State, st.LastError)

	select {
	case err := <-senderErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the sender did not finish")
	}
	checkRecorded(t, e, name, want)
	final := e.waitState(name, imapconf.StateIdle, 20*time.Second)
	if final.Reconnects == 0 || final.MessagesIngested != int64(len(want)) {
		t.Errorf("got final status %+v, want reconnects and %d messages", final, len(want))
	}
	seen := log.states()
	for _, s := range []string{imapconf.StateError, imapconf.StateStale, imapconf.StateConnecting} {
		if !seen[s] {
			t.Errorf("the status never showed %s during the faults (saw %v)", s, seen)
		}
	}
	ps := p.Stats()
	t.Logf("proxy: %+v; final status: %+v", ps, final)
	if ps.Reset < 6 || ps.Stalls != 4 || ps.Refused < 1 {
		t.Errorf("got proxy stats %+v, want at least 6 resets, 4 stalls, 1 refused", ps)
	}
}

// TestDovecotOutage stops Dovecot for 30 s with mail delivered before and
// after: the watcher shows the error while the server is down and recovers
// by itself when it is back.
func TestDovecotOutage(t *testing.T) {
	t.Parallel()
	const outage = 30 * time.Second
	e := newEnv(t, store.SQLite, watch.Options{MaxBackoff: 2 * time.Second})
	const name = "outage"
	addr := e.mailbox(name, nil)
	e.waitState(name, imapconf.StateIdle, 15*time.Second)
	log := watchStatus(t, e, name)

	var want []string
	deliver := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			e.d.Append(t, addr, "INBOX", testMessage("outage", i, 200))
			want = append(want, fmt.Sprintf("outage-%d@example.org", i))
		}
	}
	deliver(0, 5)
	e.waitMessages(name, 5, 10*time.Second)
	// These may be read or not when the server goes.
	deliver(5, 8)

	stopped := time.Now()
	e.d.Stop(t)
	down := log.waitFor(t, stopped, func(st imapconf.Status) bool {
		return st.State == imapconf.StateError && st.LastErrorAt != nil && !st.LastErrorAt.Before(stopped)
	}, 10*time.Second)
	t.Logf("down after %v: %s", time.Since(stopped).Round(time.Millisecond), down.LastError)
	// The outage lasts its stated time, on purpose: the watcher must
	// keep retrying through it.
	time.Sleep(outage - time.Since(stopped))
	during := log.since(stopped)
	started := time.Now()
	e.d.Start(t)

	// While down, from the first error on: never connected, retrying.
	afterErr := false
	for _, o := range during {
		if o.st.State == imapconf.StateError {
			afterErr = true
		}
		if afterErr && o.st.State != imapconf.StateError && o.st.State != imapconf.StateConnecting {
			t.Errorf("while the server was down: got state %s (%s)", o.st.State, o.st.LastError)
		}
	}
	last := during[len(during)-1].st
	if retries := last.Reconnects - down.Reconnects; retries < 5 {
		t.Errorf("got %d reconnection attempts in %v, want at least 5 (MaxBackoff 2 s)", retries, outage)
	}
	if !strings.HasPrefix(last.LastError, imapsource.StepConnect+":") {
		t.Errorf("at the end of the outage: got last error %q, want a failure to connect", last.LastError)
	}
	t.Logf("at the end of the outage: %s, %s", last.State, last.LastError)

	st := e.waitState(name, imapconf.StateIdle, 15*time.Second)
	t.Logf("idle again %v after the start, %d reconnects", time.Since(started).Round(time.Millisecond), st.Reconnects)
	deliver(8, 13)
	checkRecorded(t, e, name, want)
	if st := e.waitState(name, imapconf.StateIdle, 10*time.Second); st.MessagesIngested != int64(len(want)) {
		t.Errorf("got status %+v, want %d messages ingested", st, len(want))
	}
}

// testMessage returns message i of a test, with Message-ID
// <tag-i@example.org>, subject "tag i" and a body of about pad bytes.
func testMessage(tag string, i, pad int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender <sender@example.org>\r\nTo: %s@example.test\r\nSubject: %s %d\r\n"+
		"Message-ID: <%s-%d@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n", tag, tag, i, tag, i)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < pad {
		b.WriteString(line)
	}
	b.WriteString("end\r\n")
	return []byte(b.String())
}

// appendDirect appends raw to the INBOX of address straight to Dovecot over
// IMAPS. Unlike Dovecot.Append it returns its error, so that a goroutine
// other than the test's may call it.
func appendDirect(d *testenv.Dovecot, address, password string, raw []byte) error {
	c, err := imapclient.DialTLS(d.Addr(d.IMAPSPort), &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(address, password).Wait(); err != nil {
		return err
	}
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	if _, err := cmd.Wait(); err != nil {
		return err
	}
	return c.Logout().Wait()
}

// checkRecorded waits until name has recorded as many messages as want
// holds, then checks that they are exactly the messages of want, each
// once, by Message-ID.
func checkRecorded(t *testing.T, e *env, name string, want []string) {
	t.Helper()
	msgs := e.waitMessages(name, len(want), 60*time.Second)
	count := map[string]int{}
	for _, m := range msgs {
		count[m.MessageID]++
	}
	for _, id := range want {
		if count[id] != 1 {
			t.Errorf("message %s recorded %d times, want once", id, count[id])
		}
		delete(count, id)
	}
	for id, c := range count {
		t.Errorf("unexpected message %q recorded %d times", id, c)
	}
}

// statusLog is the history of a watcher's status as the API showed it,
// polled every few milliseconds: each change of state, last error or
// reconnect count.
type statusLog struct {
	mu   sync.Mutex
	seen []observed
}

type observed struct {
	at time.Time
	st imapconf.Status
}

// watchStatus starts polling the status of name until the test ends.
func watchStatus(t *testing.T, e *env, name string) *statusLog {
	l := &statusLog{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if v, err := e.api.GetIMAP(ctx, name); err == nil && v.Status != nil {
				l.add(*v.Status)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

func (l *statusLog) add(st imapconf.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.seen); n > 0 {
		last := l.seen[n-1].st
		if last.State == st.State && last.LastError == st.LastError && last.Reconnects == st.Reconnects {
			return
		}
	}
	l.seen = append(l.seen, observed{time.Now(), st})
}

// since returns what was seen from t on.
func (l *statusLog) since(t time.Time) []observed {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.IndexFunc(l.seen, func(o observed) bool { return !o.at.Before(t) })
	if i < 0 {
		return nil
	}
	return slices.Clone(l.seen[i:])
}

// states returns the states seen.
func (l *statusLog) states() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]bool{}
	for _, o := range l.seen {
		m[o.st.State] = true
	}
	return m
}

// waitFor waits until a status seen from t on satisfies cond and returns
// it; it fails the test after within.
func (l *statusLog) waitFor(tt *testing.T, t time.Time, cond func(imapconf.Status) bool, within time.Duration) imapconf.Status {
	tt.Helper()
	var found imapconf.Status
	testwait.Until(tt, within, func() error {
		seen := l.since(t)
		for _, o := range seen {
			if cond(o.st) {
				found = o.st
				return nil
			}
		}
		var b strings.Builder
		for _, o := range seen {
			fmt.Fprintf(&b, "\n  %s %s reconnects=%d %s", o.at.Format("15:04:05.000"), o.st.State, o.st.Reconnects, o.st.LastError)
		}
		return fmt.Errorf("no status as wanted; seen since %s:%s", t.Format("15:04:05.000"), b.String())
	})
	return found
}
