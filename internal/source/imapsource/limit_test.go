package imapsource

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
)

// longLine is what the hostile servers of these tests send as one line:
// far more than maxResponse, and over before a test's deadline.
const longLine = sourcetest.LongLine

// shortLines returns n bytes of short lines.
func shortLines(n int) string {
	return strings.Repeat("abcdefghijklmnopqrstuvwxyz01234\r\n", n/33+1)[:n]
}

// announced returns s announced as a literal after before: before{len}CRLF s.
func announced(before, s string) string {
	return before + "{" + strconv.Itoa(len(s)) + "}\r\n" + s
}

func TestResponseLimit(t *testing.T) {
	big := shortLines(1<<20) + strings.Repeat("L", 300<<10) + "\r\n" + shortLines(1<<20)
	over := shortLines(maxResponse + 1)
	tests := []struct {
		name    string
		wire    string
		wantErr bool
	}{
		{"greeting", "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n", false},
		{"bare LF line ends", "* OK ready\n* 1 EXISTS\n", false},
		{"line at the bound", "* OK " + strings.Repeat("x", maxResponse-7) + "\r\n* OK next\r\n", false},
		{"line over the bound", "* OK " + strings.Repeat("x", maxResponse-6) + "\r\n", true},
		{"line that does not end", "* OK " + strings.Repeat("x", longLine), true},
		{"tagged", "T1 OK " + strings.Repeat("x", longLine) + "\r\n", true},
		{"continuation", "+ " + strings.Repeat("x", longLine) + "\r\n", true},
		{"many lines at the bound", strings.Repeat("* OK "+strings.Repeat("x", maxResponse-7)+"\r\n", 40), false},

		// Message data: not counted.
		{"body", announced("* 1 FETCH (UID 5 BODY[] ", big) + ")\r\nT1 OK done\r\n", false},
		{"partial body", announced("* 1 FETCH (UID 5 BODY[]<0> ", big) + ")\r\n", false},
		{"header section", announced(`* 1 FETCH (BODY[HEADER.FIELDS ("SUBJECT" "X]")] `, big) + " UID 5)\r\n", false},
		{"binary literal8", "* 1 FETCH (BINARY[1] ~" + announced("", big) + ")\r\n", false},
		{"two bodies", announced(announced("* 1 FETCH (BODY[1] ", big)+" BODY[2] ", big) + ")\r\n", false},
		{"body, line end after a space", "* 1 FETCH (BODY[] {5} \r\nabcde)\r\n", false},
		{"body, bare LF", "* 1 FETCH (BODY[] {5}\nabcde)\n", false},
		{"body, then a long line", announced("* 1 FETCH (BODY[] ", "x") + " FLAGS (" + strings.Repeat("x", longLine) + "))\r\n", true},

		// Counted: literals imapclient holds as strings, and what only
		// looks like a literal.
		{"mailbox name", announced(`* LIST () "/" `, over) + "\r\n", true},
		{"envelope field", announced("* 1 FETCH (ENVELOPE (", over) + " NIL))\r\n", true},
		{"literal with leading zeros", `* LIST () "/" {` + strings.Repeat("0", 100) + strconv.Itoa(len(over)) + "}\r\n" + over + "\r\n", true},
		{"body in a tagged response", announced("T1 OK BODY[] ", big) + "\r\n", true},
		{"body in a status response", announced("* OK [ALERT] BODY[] ", big) + "\r\n", true},
		{"body of a FETCH in a response code", "* OK [X \r\n" + announced("* 1 FETCH (BODY[] ", big) + "] text\r\n", true},
		{"literal+ is no literal", "* 1 FETCH (BODY[] {5+}\r\n" + strings.Repeat("x", longLine) + "\r\n", true},
		{"quoted string across lines", `* LIST () "/" "` + over + "\"\r\n", true},
		{"escaped quote does not close", `* LIST () "/" "a\"` + "\r\n" + over + "\"\r\n", true},
		{"literal in a quoted string", `* LIST () "/" "{5}` + "\r\n" + over + "\"\r\n", true},
		{"quoted string closed", `* LIST () "/" "a\\"` + "\r\n" + strings.Repeat(`* LIST () "/" "b"`+"\r\n", 10000), false},

		// SEARCH lists every UID found on one line.
		{"long search", "* SEARCH" + strings.Repeat(" 1234567", 1<<20/8) + "\r\n* OK next\r\n", false},
		{"long esearch", `* ESEARCH (TAG "T1") UID ALL ` + strings.Repeat("1,3,", 1<<20/4) + "5\r\n", false},
		{"numbered search is no search", "* 1 SEARCH" + strings.Repeat(" 1234567", 1<<20/8) + "\r\n", true},
		{"search, then a long line", "* SEARCH 1 2\r\n* OK " + strings.Repeat("x", longLine) + "\r\n", true},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"halves":   iotest.HalfReader,
		"bufio 4K": func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 4096) },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for how, wrap := range readers {
				l := newResponseLimit(wrap(strings.NewReader(tt.wire)))
				var got bytes.Buffer
				_, err := io.Copy(&got, l)
				if tt.wantErr {
					if !errors.Is(err, source.ErrLineTooLong) || !errors.Is(l.Failure(), source.ErrLineTooLong) {
						t.Errorf("%s: got %v, want ErrLineTooLong", how, err)
					}
					if got.Len() > len(tt.wire)-1 {
						t.Errorf("%s: got all %d bytes through, want the read to stop", how, got.Len())
					}
					continue
				}
				if err != nil || got.String() != tt.wire {
					t.Errorf("%s: got %d bytes of %d, %v; want them all", how, got.Len(), len(tt.wire), err)
				}
			}
		})
	}
}

// TestResponseLimitStops checks that a line that does not end is given up
// on soon after the bound, and its bytes are not all read.
func TestResponseLimitStops(t *testing.T) {
	src := &endless{}
	l := newResponseLimit(io.MultiReader(strings.NewReader("* OK "), src))
	_, err := io.Copy(io.Discard, bufio.NewReader(l))
	if !errors.Is(err, source.ErrLineTooLong) || err.Error() != "reading the server's reply: line longer than 65536 bytes" {
		t.Errorf("got %v, want the line too long", err)
	}
	if src.read > maxResponse+32<<10 {
		t.Errorf("got %d bytes read, want little more than %d", src.read, maxResponse)
	}
}

// endless is a line of longLine bytes that does not end.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= longLine {
		return 0, io.EOF
	}
	n := min(len(p), longLine-e.read)
	copy(p, bytes.Repeat([]byte("A"), n))
	e.read += n
	return n, nil
}

func FuzzResponseLimit(f *testing.F) {
	f.Add([]byte("* OK [CAPABILITY IMAP4rev1] ready\r\n"))
	f.Add([]byte("* 1 FETCH (UID 5 BODY[] {5}\r\nabcde)\r\nT1 OK done\r\n"))
	f.Add([]byte("* 1 FETCH (BINARY[1] ~{3}\r\nabc ENVELOPE (\"a\\\"b\" {2}\r\nxy))\r\n"))
	f.Add([]byte("* OK [X \r\n] text\r\n+ go on\r\n* SEARCH 1 2 3\r\n"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		l := newResponseLimit(bytes.NewReader(wire))
		var got bytes.Buffer
		_, err := io.Copy(&got, l)
		if err != nil && !errors.Is(err, source.ErrLineTooLong) {
			t.Fatalf("got %v, want nil or ErrLineTooLong", err)
		}
		if err == nil && !bytes.Equal(got.Bytes(), wire) {
			t.Fatalf("got %q through, want %q", got.Bytes(), wire)
		}
		if err == nil && len(wire) > maxResponse && !bytes.Contains(wire, []byte("{")) && !bytes.Contains(wire, []byte("\n")) {
			t.Fatalf("got %d bytes on one line through, want ErrLineTooLong", len(wire))
		}
	})
}

// TestLongGreeting checks that a greeting that does not end, before
// STARTTLS or over implicit TLS, fails Dial at once with ErrLineTooLong,
// the client having read little more than the bound.
func TestLongGreeting(t *testing.T) {
	t.Parallel()
	serverTLS, caPEM := sourcetest.ServerTLS(t)
	tests := []struct {
		name     string
		tls      string
		wantStep string
	}{
		{"implicit", imapconf.TLSImplicit, StepConnect},
		{"starttls", imapconf.TLSStartTLS, StepTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var config *tls.Config
			if tt.tls == imapconf.TLSImplicit {
				config = serverTLS
			}
			port := sourcetest.Serve(t, config, func(conn net.Conn) {
				sourcetest.WriteLongLine(conn, "* OK ", longLine)
			})
			cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: tt.tls, CACert: caPEM, Username: "u@example.test", Password: "pw"}
			dialHostile(t, cfg, tt.wantStep)
		})
	}
}

// TestLongLineAfterStartTLS checks that the bound holds over the
// connection STARTTLS secured: a server that answers STARTTLS and then
// sends a line that does not end fails Dial with ErrLineTooLong.
func TestLongLineAfterStartTLS(t *testing.T) {
	t.Parallel()
	serverTLS, caPEM := sourcetest.ServerTLS(t)
	port := sourcetest.Serve(t, nil, func(conn net.Conn) {
		r := bufio.NewReader(conn)
		if _, err := io.WriteString(conn, "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"); err != nil {
			return
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		if _, err := io.WriteString(conn, tag+" OK begin TLS\r\n"); err != nil {
			return
		}
		tlsConn := tls.Server(conn, serverTLS)
		if err := tlsConn.Handshake(); err != nil {
			return
		}
		if _, err := bufio.NewReader(tlsConn).ReadString('\n'); err != nil { // CAPABILITY
			return
		}
		sourcetest.WriteLongLine(tlsConn, "* CAPABILITY IMAP4rev1 ", longLine)
	})
	cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: imapconf.TLSStartTLS, CACert: caPEM, Username: "u@example.test", Password: "pw"}
	dialHostile(t, cfg, StepLogin)
}

// dialHostile dials cfg, a server that sends a line that does not end, and
// checks that Dial fails in step wantStep with ErrLineTooLong at once,
// having read little of the line.
func dialHostile(t *testing.T, cfg imapconf.Config, wantStep string) {
	t.Helper()
	var read atomic.Int64
	began := time.Now()
	_, err := Dial(testCtx(t), cfg, Options{DialTimeout: 10 * time.Second, Dial: sourcetest.CountingDial(&read)})
	elapsed := time.Since(began)
	var se *StepError
	if !errors.Is(err, source.ErrLineTooLong) || !errors.As(err, &se) || se.Step != wantStep {
		t.Fatalf("got %.300v, want step %s failing with ErrLineTooLong", err, wantStep)
	}
	sourcetest.CheckCutShort(t, err, read.Load(), elapsed)
}

// TestLongLinesInMessage checks that the bound leaves message data alone:
// a message of 3 MB with a line of 300 KB is read whole over both kinds of
// TLS, in memory and spooled, and one over the size cap keeps its header.
func TestLongLinesInMessage(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "longline")
	raw := crlf(sourcetest.NewLongLineMessage(1, 3<<20, 300<<10))
	uids := appendMessages(t, d, cfg.Username, "INBOX", raw)

	for _, mode := range []string{imapconf.TLSImplicit, imapconf.TLSStartTLS} {
		t.Run(mode, func(t *testing.T) {
			cfg := cfg
			if mode == imapconf.TLSStartTLS {
				cfg.TLS, cfg.Port = mode, d.IMAPPort
			}
			c := dialSelect(t, cfg, Options{})
			msgs := collect(t, func(fn func(Message) error) error { return c.FetchUIDs(longCtx(t), uids, 0, fn) })
			if len(msgs) != 1 || msgs[0].TooLarge || !bytes.Equal(msgs[0].Raw, raw) {
				t.Fatalf("got %d messages, want the one of %d bytes whole", len(msgs), len(raw))
			}

			sp := newSpoolSpy(t, 1<<20)
			msgs = collect(t, func(fn func(Message) error) error { return c.FetchSpooled(longCtx(t), uids, 0, sp.Spooler, fn) })
			if len(msgs) != 1 || msgs[0].Spool == nil {
				t.Fatalf("got %d messages, want the one spooled", len(msgs))
			}
			got, err := io.ReadAll(msgs[0].Spool.Reader())
			_ = msgs[0].Spool.Close()
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("got %d bytes spooled (%v), want the %d of the message", len(got), err, len(raw))
			}

			msgs = collect(t, func(fn func(Message) error) error { return c.FetchUIDs(longCtx(t), uids, 1<<20, fn) })
			if len(msgs) != 1 || !msgs[0].TooLarge || !bytes.Equal(msgs[0].Raw, headerOf(raw)) {
				t.Errorf("got %d messages, want the one's header with TooLarge", len(msgs))
			}
		})
	}
}
