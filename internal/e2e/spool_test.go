package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// spoolMessageSize is the size of the messages TestSpoolCrash appends:
// well above the spool threshold, below the size cap.
const spoolMessageSize = 24 << 20

func spoolMessageID(i int) string { return fmt.Sprintf("spool-%d@e2e.example.org", i) }

// spoolMessage returns message i: a text part and a base64 attachment of
// random bytes, spoolMessageSize bytes in all.
func spoolMessage(i int) []byte {
	var b bytes.Buffer
	b.Grow(spoolMessageSize + 64<<10)
	fmt.Fprintf(&b, "From: Scanner <scanner@example.org>\r\nTo: spool@example.test\r\nSubject: Scan %d\r\n"+
		"Message-ID: <%s>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"spool-boundary\"\r\n\r\n"+
		"--spool-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n"+
		"--spool-boundary\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n", i, spoolMessageID(i))
	rng := rand.NewChaCha8([32]byte{'s', 'p', 'o', 'o', 'l', byte(i)})
	chunk := make([]byte, 57)
	line := make([]byte, base64.StdEncoding.EncodedLen(len(chunk)))
	for b.Len() < spoolMessageSize {
		_, _ = rng.Read(chunk)
		base64.StdEncoding.Encode(line, chunk)
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString("--spool-boundary--\r\n")
	return b.Bytes()
}

// spoolFiles returns the names of the files in the service's spool
// directory.
func spoolFiles(s *service) []string {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dataDir, "spool"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.fatalf("listing the spool directory: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestSpoolCrash kills the service with SIGKILL while it holds a big message
// in a spool file (24 MB, the threshold 1 MB): the file a crash leaves is
// removed at the next start, before the mailbox is read again, the message
// is then recorded exactly once, byte for byte, and no spool file remains.
func TestSpoolCrash(t *testing.T) {
	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "spool", "pw-spool")
	s := newService(t, "MAILTRIGGER_SPOOL_THRESHOLD=1048576")
	s.start()
	api := s.api()
	createMailbox(s, api, d, "spool", address, imapconf.BacklogNew)
	waitState(s, api, "spool", imapconf.StateIdle, 15*time.Second)
	if fi, err := os.Stat(filepath.Join(s.dataDir, "spool")); err != nil || fi.Mode().Perm() != 0o700 {
		s.fatalf("spool directory: got %v, %v; want mode 0700", fi, err)
	}
	c := d.DialIMAPS(t, address, nil)

	// Kill it while a spool file exists; a kill that comes too late (the
	// message recorded and its file gone already) tries with the next.
	var leftover []string
	var raws [][]byte
	for i := 1; len(leftover) == 0; i++ {
		if i > 3 {
			s.fatalf("no kill caught the service with a spool file in %d tries", i-1)
		}
		raw := spoolMessage(i)
		raws = append(raws, raw)
		if _, err := appendMessage(c, raw); err != nil {
			s.fatalf("appending message %d: %v", i, err)
		}
		if err := testwait.UntilErr(30*time.Second, func() error {
			if len(spoolFiles(s)) == 0 {
				return errNotYet
			}
			return nil
		}); err != nil {
			s.fatalf("no spool file appeared for message %d", i)
		}
		s.kill()
		leftover = spoolFiles(s)
		t.Logf("killed during message %d: spool files left %v", i, leftover)
		s.start()
	}
	// The start removed what the killed one left, before reading on (a
	// new file of the same message has another name).
	if now := spoolFiles(s); slices.ContainsFunc(now, func(n string) bool { return slices.Contains(leftover, n) }) {
		s.errorf("spool files %v still there after the restart (now %v), want them removed", leftover, now)
	}

	waitFor(s, 90*time.Second, "the messages recorded", func() (bool, any) {
		l, err := api.ListMessages(context.Background(), "spool", 10, "")
		if err != nil {
			return false, err
		}
		return len(l.Items) >= len(raws), fmt.Sprintf("%d recorded", len(l.Items))
	})
	waitFor(s, 15*time.Second, "the spool directory empty", func() (bool, any) {
		left := spoolFiles(s)
		return len(left) == 0, left
	})
	l, err := api.ListMessages(context.Background(), "spool", 10, "")
	if err != nil {
		s.fatalf("listing messages: %v", err)
	}
	for _, m := range l.Items {
		var i int
		if _, err := fmt.Sscanf(m.MessageID, "spool-%d@", &i); err != nil || i < 1 || i > len(raws) {
			s.errorf("unexpected message %q", m.MessageID)
			continue
		}
		if m.TooLarge || m.ParseError != "" || m.Size != int64(len(raws[i-1])) {
			s.errorf("message %d: got tooLarge %v, parse error %q, size %d; want a clean message of %d bytes",
				i, m.TooLarge, m.ParseError, m.Size, len(raws[i-1]))
		}
		raw, err := api.Get(context.Background(), fmt.Sprintf("/api/v1/messages/%d/raw", m.ID))
		if err != nil || !bytes.Equal(raw, raws[i-1]) {
			s.errorf("raw of message %d: got %d bytes (%v), want the %d appended", i, len(raw), err, len(raws[i-1]))
		}
	}

	// And in bounded memory: a restarted service (whose peak is its
	// steady state) records one more without its peak RSS growing by the
	// message's size.
	s.stop()
	s.start()
	waitState(s, api, "spool", imapconf.StateIdle, 15*time.Second)
	before := s.peakRSS()
	raws = append(raws, spoolMessage(len(raws)+1))
	if _, err := appendMessage(c, raws[len(raws)-1]); err != nil {
		s.fatalf("appending the last message: %v", err)
	}
	waitFor(s, 90*time.Second, "the last message recorded", func() (bool, any) {
		l, err := api.ListMessages(context.Background(), "spool", 10, "")
		if err != nil {
			return false, err
		}
		return len(l.Items) >= len(raws), fmt.Sprintf("%d recorded", len(l.Items))
	})
	after := s.peakRSS()
	t.Logf("a %.1f MB message recorded: peak RSS %.1f MB before, %.1f MB after: growth %.1f MB",
		mb(spoolMessageSize), mb(before), mb(after), mb(after-before))
	if after-before > maxSpooledGrowth {
		s.errorf("peak RSS grew by %.1f MB recording a %.1f MB message, want at most %.0f MB",
			mb(after-before), mb(spoolMessageSize), mb(maxSpooledGrowth))
	}
	s.stop()
	checkEachRecordedOnce(t, s.readDB(), len(raws), spoolMessageID)
}

// maxSpooledGrowth bounds how much the peak RSS may grow while a spooled
// message is recorded (the goal for a 50 MB message).
const maxSpooledGrowth = 20 << 20

// TestSpoolCrashPOP3 is TestSpoolCrash for a POP3 mailbox with
// afterProcessing delete: killed while a big message's RETR is in the
// spool, the restarted service removes the file, reads the message again,
// records it once, byte for byte, and only then deletes it on the server.
func TestSpoolCrashPOP3(t *testing.T) {
	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "pop3spool", "pw-pop3spool")
	raw := spoolMessage(1)
	c := d.DialIMAPS(t, address, nil)
	if _, err := appendMessage(c, raw); err != nil {
		t.Fatalf("appending: %v", err)
	}
	inbox := func() int {
		out := d.Doveadm(t, "-f", "tab", "fetch", "-u", address, "uid", "mailbox", "INBOX", "all")
		return len(strings.Split(strings.TrimSpace(out), "\n")) - 1 // minus the header row
	}

	s := newService(t, "MAILTRIGGER_SPOOL_THRESHOLD=1048576")
	s.start()
	api := s.api()
	str := func(v string) *string { return &v }
	port, poll := d.POP3SPort, imapconf.MinPollInterval
	if _, err := api.CreateIMAP(context.Background(), imapconf.Input{
		Name: str("pop3spool"), ServerType: str(imapconf.ServerPOP3S), Type: str(imapconf.TypeGeneric),
		Host: str(d.Host), Port: &port, TLS: str(imapconf.TLSImplicit), Username: str(address), Password: str("pw-pop3spool"),
		CACert: str(string(d.CACertPEM)), Backlog: str(imapconf.BacklogAll), AfterProcessing: str(imapconf.AfterDelete),
		PollInterval: &poll,
	}); err != nil {
		t.Fatal(err)
	}
	if err := testwait.UntilErr(30*time.Second, func() error {
		if len(spoolFiles(s)) == 0 {
			return errNotYet
		}
		return nil
	}); err != nil {
		s.fatalf("no spool file appeared")
	}
	s.kill()
	leftover := spoolFiles(s)
	t.Logf("killed: spool files left %v, %d on the server", leftover, inbox())
	s.start()
	if now := spoolFiles(s); slices.ContainsFunc(now, func(n string) bool { return slices.Contains(leftover, n) }) {
		s.errorf("spool files %v still there after the restart (now %v), want them removed", leftover, now)
	}
	waitFor(s, 90*time.Second, "the message recorded and deleted on the server", func() (bool, any) {
		l, err := api.ListMessages(context.Background(), "pop3spool", 10, "")
		if err != nil {
			return false, err
		}
		left := inbox()
		return len(l.Items) >= 1 && left == 0, fmt.Sprintf("%d recorded, %d on the server", len(l.Items), left)
	})
	waitFor(s, 15*time.Second, "the spool directory empty", func() (bool, any) {
		left := spoolFiles(s)
		return len(left) == 0, left
	})
	l, err := api.ListMessages(context.Background(), "pop3spool", 10, "")
	if err != nil || len(l.Items) != 1 {
		s.fatalf("listing messages: %v, %+v", err, l)
	}
	got, err := api.Get(context.Background(), fmt.Sprintf("/api/v1/messages/%d/raw", l.Items[0].ID))
	if err != nil || !bytes.Equal(got, raw) {
		s.errorf("raw: got %d bytes (%v), want the %d appended", len(got), err, len(raw))
	}
	s.stop()
	checkEachRecordedOnce(t, s.readDB(), 1, spoolMessageID)
}
