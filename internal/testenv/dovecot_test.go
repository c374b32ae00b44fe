package testenv

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func TestDovecot(t *testing.T) {
	began := time.Now()
	d := StartDovecot(t)
	t.Logf("dovecot started in %v on %s (IMAP %d, IMAPS %d, POP3 %d, POP3S %d)",
		time.Since(began), d.Host, d.IMAPPort, d.IMAPSPort, d.POP3Port, d.POP3SPort)

	alice := d.AddUser(t, "alice", "alice-secret")
	if want := "alice@" + DovecotDomain; alice != want {
		t.Fatalf("got address %q, want %q", alice, want)
	}
	bob := d.AddUser(t, "bob", "bob-secret")

	inbox := []testMessage{newTestMessage(1), newTestMessage(2)}
	for i := range inbox {
		inbox[i].uid = d.Append(t, alice, "INBOX", inbox[i].raw)
	}
	if inbox[0].uid != 1 || inbox[1].uid != 2 {
		t.Fatalf("got UIDs %d, %d, want 1, 2", inbox[0].uid, inbox[1].uid)
	}

	t.Run("IMAPS", func(t *testing.T) {
		checkIMAPMailbox(t, d, alice, "INBOX", inbox)
		checkIMAPMailbox(t, d, bob, "INBOX", nil)
	})

	t.Run("IDLE", func(t *testing.T) {
		exists := make(chan uint32, 16)
		c := d.DialIMAPS(t, alice, &imapclient.Options{
			UnilateralDataHandler: &imapclient.UnilateralDataHandler{
				Mailbox: func(data *imapclient.UnilateralDataMailbox) {
					if data.NumMessages != nil {
						select {
						case exists <- *data.NumMessages:
						default:
						}
					}
				},
			},
		})
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("select: %v", err)
		}
		idle, err := c.Idle()
		if err != nil {
			t.Fatalf("idle: %v", err)
		}
		msg := newTestMessage(3)
		appended := time.Now()
		msg.uid = d.Append(t, alice, "INBOX", msg.raw)
		inbox = append(inbox, msg)
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case n := <-exists:
				if n == uint32(len(inbox)) {
					t.Logf("IDLE saw the append after %v", time.Since(appended))
					break wait
				}
			case <-timeout:
				t.Errorf("no EXISTS %d during IDLE within 10 s of an append\n%s", len(inbox), d.logTail())
				break wait
			}
		}
		if err := idle.Close(); err != nil {
			t.Fatalf("closing idle: %v", err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatalf("idle: %v", err)
		}
	})

	t.Run("POP3S", func(t *testing.T) {
		conn, err := tls.Dial("tcp", d.Addr(d.POP3SPort), d.TLSConfig())
		if err != nil {
			t.Fatalf("dialing pop3s: %v", err)
		}
		p := newPOP3(t, conn)
		p.ok("") // greeting
		p.ok("USER " + alice)
		p.ok("PASS alice-secret")
		checkPOP3Stat(t, p.ok("STAT"), inbox)
		p.ok("QUIT")
	})

	t.Run("POP3 STLS", func(t *testing.T) {
		conn, err := net.Dial("tcp", d.Addr(d.POP3Port))
		if err != nil {
			t.Fatalf("dialing pop3: %v", err)
		}
		p := newPOP3(t, conn)
		p.ok("") // greeting
		if d.PlaintextRefused {
			if line := p.cmd("USER " + alice); !strings.HasPrefix(line, "-ERR") {
				t.Errorf("got %q to USER before STLS, want -ERR", line)
			}
		}
		p.ok("STLS")
		p.upgrade(d.TLSConfig())
		p.ok("USER " + alice)
		p.ok("PASS alice-secret")
		checkPOP3Stat(t, p.ok("STAT"), inbox)
		p.ok("QUIT")
	})

	t.Run("IMAP STARTTLS", func(t *testing.T) {
		plain, err := imapclient.DialInsecure(d.Addr(d.IMAPPort), nil)
		if err != nil {
			t.Fatalf("dialing imap: %v", err)
		}
		defer plain.Close()
		caps := plain.Caps()
		if !caps.Has(imap.CapStartTLS) {
			t.Errorf("got capabilities %v, want STARTTLS", caps)
		}
		if d.PlaintextRefused {
			if !caps.Has(imap.CapLoginDisabled) {
				t.Errorf("got capabilities %v before STARTTLS, want LOGINDISABLED", caps)
			}
			if err := plain.Login(alice, "alice-secret").Wait(); err == nil {
				t.Errorf("login without TLS succeeded, want it refused")
			}
		}

		c, err := imapclient.DialStartTLS(d.Addr(d.IMAPPort), &imapclient.Options{TLSConfig: d.TLSConfig()})
		if err != nil {
			t.Fatalf("dialing imap with starttls: %v", err)
		}
		defer c.Close()
		if err := c.Login(alice, "alice-secret").Wait(); err != nil {
			t.Fatalf("login after starttls: %v", err)
		}
		data, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		if data.NumMessages != uint32(len(inbox)) {
			t.Errorf("got %d messages, want %d", data.NumMessages, len(inbox))
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		c, err := imapclient.DialTLS(d.Addr(d.IMAPSPort), &imapclient.Options{TLSConfig: d.TLSConfig()})
		if err != nil {
			t.Fatalf("dialing imaps: %v", err)
		}
		defer c.Close()
		began := time.Now()
		err = c.Login(alice, "wrong").Wait()
		var imapErr *imap.Error
		if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("got %v, want AUTHENTICATIONFAILED", err)
		}
		if elapsed := time.Since(began); elapsed > 1500*time.Millisecond {
			t.Errorf("failed login took %v, want less than the default 2 s delay", elapsed)
		}

		// No penalty delays the next login from the same address.
		began = time.Now()
		d.DialIMAPS(t, alice, nil)
		if elapsed := time.Since(began); elapsed > time.Second {
			t.Errorf("login after a failed one took %v, want no penalty", elapsed)
		}
	})

	t.Run("Doveadm", func(t *testing.T) {
		// Append creates a missing folder.
		archived := newTestMessage(4)
		archived.uid = d.Append(t, alice, "Archive/2024", archived.raw)
		checkIMAPMailbox(t, d, alice, "Archive/2024", []testMessage{archived})

		out := d.Doveadm(t, "search", "-u", alice, "mailbox", "INBOX", "all")
		if got := len(strings.Fields(out)); got != 2*len(inbox) {
			t.Errorf("got doveadm search output %q, want %d messages", out, len(inbox))
		}

		// Recreating a folder changes its UIDVALIDITY.
		before := uidValidity(t, d, alice, "Archive/2024")
		d.Doveadm(t, "mailbox", "delete", "-u", alice, "Archive/2024")
		d.Doveadm(t, "mailbox", "create", "-u", alice, "Archive/2024")
		after := uidValidity(t, d, alice, "Archive/2024")
		if after == before {
			t.Errorf("got UIDVALIDITY %d after recreating the folder, want it changed", after)
		}
		checkIMAPMailbox(t, d, alice, "Archive/2024", nil)

		d.Doveadm(t, "flags", "add", "-u", alice, `\Seen`, "mailbox", "INBOX", "uid", "1")
		out = d.Doveadm(t, "fetch", "-u", alice, "flags", "mailbox", "INBOX", "uid", "1")
		if !strings.Contains(out, `\Seen`) {
			t.Errorf("got flags %q, want \\Seen", out)
		}
	})

	t.Run("StopStart", func(t *testing.T) {
		validity := uidValidity(t, d, alice, "INBOX")
		connected := d.DialIMAPS(t, alice, nil)
		d.Stop(t)
		select {
		case <-connected.Closed():
		case <-time.After(5 * time.Second):
			t.Errorf("a connection stayed open after Stop")
		}
		for _, port := range []int{d.IMAPPort, d.IMAPSPort, d.POP3Port, d.POP3SPort} {
			if conn, err := net.DialTimeout("tcp", d.Addr(port), time.Second); err == nil {
				conn.Close()
				t.Errorf("port %d accepts while stopped", port)
			}
		}
		began := time.Now()
		d.Start(t)
		t.Logf("restarted in %v", time.Since(began))
		checkIMAPMailbox(t, d, alice, "INBOX", inbox)
		if got := uidValidity(t, d, alice, "INBOX"); got != validity {
			t.Errorf("got UIDVALIDITY %d after restart, want %d", got, validity)
		}
		carol := d.AddUser(t, "carol", "carol-secret")
		uid := d.Append(t, carol, "INBOX", newTestMessage(5).raw)
		if uid != 1 {
			t.Errorf("got UID %d, want 1", uid)
		}
	})
}

// TestDovecotParallel starts several instances at once, as parallel tests
// do, and checks that they are separate.
func TestDovecotParallel(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			d := StartDovecot(t)
			t.Logf("dovecot started in %v", time.Since(began))
			address := d.AddUser(t, "user", "secret")
			msgs := make([]testMessage, i+1)
			for j := range msgs {
				msgs[j] = newTestMessage(j)
				msgs[j].uid = d.Append(t, address, "INBOX", msgs[j].raw)
			}
			checkIMAPMailbox(t, d, address, "INBOX", msgs)
		})
	}
}

type testMessage struct {
	raw []byte
	uid uint32
}

func newTestMessage(n int) testMessage {
	raw := fmt.Sprintf("From: Sender <sender@example.test>\r\n"+
		"To: <alice@example.test>\r\n"+
		"Subject: test message %[1]d\r\n"+
		"Message-ID: <%[1]d@example.test>\r\n"+
		"Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"+
		"\r\n"+
		"Body of message %[1]d.\r\n", n)
	return testMessage{raw: []byte(raw)}
}

// checkIMAPMailbox checks over IMAPS that folder holds exactly want, by UID
// and content.
func checkIMAPMailbox(t *testing.T, d *Dovecot, address, folder string, want []testMessage) {
	t.Helper()
	c := d.DialIMAPS(t, address, nil)
	defer c.Close()
	data, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("selecting %q: %v", folder, err)
	}
	if data.NumMessages != uint32(len(want)) {
		t.Fatalf("got %d messages in %q, want %d", data.NumMessages, folder, len(want))
	}
	if len(want) == 0 {
		return
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("fetching %q: %v", folder, err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages fetched, want %d", len(msgs), len(want))
	}
	for i, msg := range msgs {
		if uint32(msg.UID) != want[i].uid {
			t.Errorf("message %d: got UID %d, want %d", i+1, msg.UID, want[i].uid)
		}
		if body := msg.FindBodySection(section); !bytes.Equal(body, want[i].raw) {
			t.Errorf("message %d: got body %q, want %q", i+1, body, want[i].raw)
		}
	}
}

func uidValidity(t *testing.T, d *Dovecot, address, folder string) uint32 {
	t.Helper()
	// doveadm's default "flow" output: "<folder> uidvalidity=<n>".
	out := strings.TrimSpace(d.Doveadm(t, "mailbox", "status", "-u", address, "uidvalidity", folder))
	_, value, _ := strings.Cut(out, "uidvalidity=")
	v, err := strconv.ParseUint(value, 10, 32)
	if err != nil {
		t.Fatalf("parsing doveadm mailbox status output %q: %v", out, err)
	}
	return uint32(v)
}

func checkPOP3Stat(t *testing.T, stat string, want []testMessage) {
	t.Helper()
	size := 0
	for _, m := range want {
		size += len(m.raw)
	}
	if wantStat := fmt.Sprintf("+OK %d %d", len(want), size); stat != wantStat {
		t.Errorf("got STAT %q, want %q", stat, wantStat)
	}
}

// pop3 is a minimal POP3 client for checking the server.
type pop3 struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

func newPOP3(t *testing.T, conn net.Conn) *pop3 {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &pop3{t: t, conn: conn, text: textproto.NewConn(conn)}
}

// cmd sends line (none if empty) and returns the response line.
func (p *pop3) cmd(line string) string {
	p.t.Helper()
	if line != "" {
		if err := p.text.PrintfLine("%s", line); err != nil {
			p.t.Fatalf("sending %q: %v", line, err)
		}
	}
	resp, err := p.text.ReadLine()
	if err != nil {
		p.t.Fatalf("reading response to %q: %v", line, err)
	}
	return resp
}

// ok is cmd that fails the test unless the response is +OK.
func (p *pop3) ok(line string) string {
	p.t.Helper()
	resp := p.cmd(line)
	if !strings.HasPrefix(resp, "+OK") {
		p.t.Fatalf("got %q to %q, want +OK", resp, line)
	}
	return resp
}

func (p *pop3) upgrade(config *tls.Config) {
	p.t.Helper()
	tlsConn := tls.Client(p.conn, config)
	if err := tlsConn.Handshake(); err != nil {
		p.t.Fatalf("tls handshake after STLS: %v", err)
	}
	p.conn = tlsConn
	p.text = textproto.NewConn(tlsConn)
}

func TestRemoveStaleDovecotDirs(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	makeDir := func(pid string, mtime time.Time) string {
		t.Helper()
		dir, err := os.MkdirTemp("", dovecotDirPrefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if pid != "" {
			if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "run", "master.pid"), []byte(pid+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(dir, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// A pid that surely is not running: a child that has been waited for.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := strconv.Itoa(cmd.Process.Pid)

	tests := []struct {
		name      string
		dir       string
		wantStale bool
	}{
		{"old, master dead", makeDir(deadPID, old), true},
		{"old, no master", makeDir("", old), true},
		{"old, master running", makeDir(strconv.Itoa(os.Getpid()), old), false},
		{"recent, no master", makeDir("", time.Now()), false},
	}
	removeStaleDovecotDirs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := os.Stat(tt.dir)
			if removed := errors.Is(err, os.ErrNotExist); removed != tt.wantStale {
				t.Errorf("got removed %v, want %v", removed, tt.wantStale)
			}
		})
	}
}
