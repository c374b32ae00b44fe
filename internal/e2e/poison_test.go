package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"testing"
	"time"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/testenv"
)

// poisonExit is the exit status of the test hook MAILTRIGGER_TEST_CRASH_ON_SUBJECT
// (ingest.Ingester.Prepare).
const poisonExit = 86

// startMayDie starts the service like start, but a service that dies
// before or after it is ready is not a failure: it returns once the service
// is ready (false) or has exited (true).
func (s *service) startMayDie() (died bool) {
	s.t.Helper()
	switch err := s.launch(); {
	case errors.Is(err, testenv.ErrExited):
		return true
	case err != nil:
		s.fatalf("the service was not ready after start #%d: %v", s.starts, err)
	}
	return false
}

// waitDeath waits until the service exits by the poison test hook (at
// once if it has).
func (s *service) waitDeath(within time.Duration) {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		s.fatalf("the service (start #%d) did not die on the poison message within %v", s.starts, within)
	}
	s.diedOfPoison()
}

// diedOfPoison checks that the service, which has exited, died of the test
// hook.
func (s *service) diedOfPoison() {
	s.t.Helper()
	s.cmd = nil
	var ee *exec.ExitError
	if err := s.result(); !errors.As(err, &ee) || ee.ExitCode() != poisonExit {
		s.fatalf("the service (start #%d) ended with %v, want exit status %d (the test hook)", s.starts, err, poisonExit)
	}
}

// diesBeforeRecording waits, up to within, until the running service dies
// on the poison message (true) or has recorded message uid of imap (false).
func (s *service) diesBeforeRecording(c *client.Client, imap string, uid uint32, within time.Duration) bool {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.diedOfPoison()
			return true
		case <-time.After(100 * time.Millisecond):
		}
		// An error is the service dying under the request: the next
		// round sees it exited.
		page, err := c.ListMessages(context.Background(), imap, 500, "")
		if err != nil {
			continue
		}
		for _, m := range page.Items {
			if m.UID == uid {
				return false
			}
		}
	}
	s.fatalf("within %v the service neither died on the poison message nor recorded it", within)
	return false
}

// TestPoisonMessageCrashLoop: a message that kills the service whenever it
// is parsed (the test hook stands for a memory limit) kills it twice (three
// times when it first came in a batch of several); the next start records it raw with the breaker's parse error and goes on
// with the mailbox: the messages after it are recorded, their runs created,
// and nothing is recorded twice.
func TestPoisonMessageCrashLoop(t *testing.T) {
	const poisonSubject = "Poison pill"
	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "poison", "pw-poison")
	hooks := newHookListener(t)
	s := newService(t, append(fastRetryEnv, "MAILTRIGGER_TEST_CRASH_ON_SUBJECT="+poisonSubject)...)
	s.start()
	c := s.api()
	createMailbox(s, c, d, "poison_inbox", address, imapconf.BacklogNew)
	hookURL := hooks.handle("/orders", "", nil)
	hooks.setSecret("/orders", createFlow(s, c, flowSpec{name: "orders", imap: "poison_inbox", subject: "Order", match: "prefix", url: hookURL}))
	waitState(s, c, "poison_inbox", imapconf.StateIdle, 15*time.Second)

	conn := d.DialIMAPS(t, address, nil)
	appendOrFail(s, conn, mailMessage("order-1@e2e.example.org", address, "Order 1", "before the poison"))
	waitFor(s, 30*time.Second, "the first message recorded", func() (bool, any) {
		n := len(listMessages(s, c, "poison_inbox"))
		return n == 1, n
	})
	poison := mailMessage("poison-1@e2e.example.org", address, poisonSubject, "kills whoever parses it")
	poisonUID := appendOrFail(s, conn, poison)

	// Death 1, on the poison message alone (new mail, as it comes).
	s.waitDeath(60 * time.Second)
	// Two more arrive while the service is down: the next start reads
	// the poison message alone again (the guard is careful after a death),
	// so death 2 is also alone and the third start records it raw. (A
	// death in a batch of several blames no message: see ingest.Guard.)
	appendOrFail(s, conn, mailMessage("order-2@e2e.example.org", address, "Order 2", "after the poison"))
	appendOrFail(s, conn, mailMessage("order-3@e2e.example.org", address, "Order 3", "after the poison"))
	deaths := 1
	for {
		if died := s.startMayDie(); !died && !s.diesBeforeRecording(c, "poison_inbox", poisonUID, 60*time.Second) {
			break
		}
		if deaths++; deaths > 3 {
			s.fatalf("the service died %d times on the poison message, want 2", deaths)
		}
	}
	if deaths != 2 {
		s.fatalf("the service died %d time(s) on the poison message read alone, want 2", deaths)
	}
	t.Logf("the poison message killed the service %d times before it was recorded raw", deaths)
	var msgs []string
	waitFor(s, 30*time.Second, "4 messages recorded", func() (bool, any) {
		l := listMessages(s, c, "poison_inbox")
		msgs = msgs[:0]
		for _, m := range l {
			msgs = append(msgs, fmt.Sprintf("uid %d %q %q", m.UID, m.Subject, m.ParseError))
		}
		return len(l) >= 4, msgs
	})
	l := listMessages(s, c, "poison_inbox")
	if len(l) != 4 {
		s.fatalf("got %d messages %v, want 4, each once", len(l), msgs)
	}
	uids := map[uint32]bool{}
	subjects := map[string]bool{}
	for _, m := range l {
		if uids[m.UID] {
			s.errorf("uid %d recorded twice: %v", m.UID, msgs)
		}
		uids[m.UID] = true
		subjects[m.Subject] = true
		if m.UID != poisonUID {
			if m.ParseError != "" {
				s.errorf("message uid %d: got parse error %q, want none", m.UID, m.ParseError)
			}
			continue
		}
		if m.ParseError != ingest.ParseErrorCrashed || m.Subject != "" {
			s.errorf("poison message: got parseError %q, subject %q; want %q and no subject (not parsed)", m.ParseError, m.Subject, ingest.ParseErrorCrashed)
		}
		raw, err := c.Get(context.Background(), fmt.Sprintf("/api/v1/messages/%d/raw", m.ID))
		if err != nil || !bytes.Equal(raw, poison) {
			s.errorf("raw of the poison message: got %q, %v; want it as appended", raw, err)
		}
	}
	for _, want := range []string{"Order 1", "Order 2", "Order 3"} {
		if !subjects[want] {
			s.errorf("message %q not recorded: %v", want, msgs)
		}
	}
	// Each order starts one run, and no more.
	poll(s, 30*time.Second, 200*time.Millisecond, "3 runs of flow orders", func() (bool, any) {
		runs := listRuns(s, c, url.Values{"flow": {"orders"}})
		return len(runs) == 3, len(runs)
	})
	byMessage := map[int64]int{}
	for _, r := range listRuns(s, c, url.Values{"flow": {"orders"}}) {
		byMessage[r.MessageID]++
	}
	if len(byMessage) != 3 {
		s.errorf("runs by message: got %v, want one run for each of the 3 orders", byMessage)
	}
	st := waitState(s, c, "poison_inbox", imapconf.StateIdle, 15*time.Second)
	if st.LastError != "" {
		s.errorf("status after the poison message: %+v, want no error", st)
	}
	s.stop()
	if s.starts != 3 {
		t.Errorf("starts: got %d, want 3 (the first and the second died, the third skipped the message)", s.starts)
	}
}
