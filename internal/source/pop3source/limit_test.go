package pop3source

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
)

// longLine is what the hostile servers of these tests send as one line:
// far more than source.MaxLineLength, and over before a test's deadline.
const longLine = sourcetest.LongLine

// TestLongGreeting checks that a greeting line that does not end, before
// STLS or over implicit TLS, fails Dial at once with ErrLineTooLong, the
// client having read little more than the bound.
func TestLongGreeting(t *testing.T) {
	t.Parallel()
	serverTLS, caPEM := sourcetest.ServerTLS(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var config *tls.Config
			if mode == imapconf.TLSImplicit {
				config = serverTLS
			}
			port := sourcetest.Serve(t, config, func(conn net.Conn) {
				sourcetest.WriteLongLine(conn, "+OK ", longLine)
			})
			cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: mode, CACert: caPEM, Username: "u@example.test", Password: "pw"}
			var read atomic.Int64
			began := time.Now()
			_, err := Dial(testCtx(t), cfg, Options{DialTimeout: 10 * time.Second, Dial: sourcetest.CountingDial(&read)})
			elapsed := time.Since(began)

			var se *StepError
			if !errors.Is(err, source.ErrLineTooLong) || !errors.As(err, &se) || se.Step != StepConnect {
				t.Fatalf("got %v, want step connect failing with ErrLineTooLong", err)
			}
			sourcetest.CheckCutShort(t, err, read.Load(), elapsed)
		})
	}
}

// TestLongReply checks that a reply line over the bound after login fails
// the command with ErrLineTooLong and closes the connection.
func TestLongReply(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("1", longLine)
	tests := []struct {
		name  string
		reply func(line string) []string
		call  func(c *Conn) error
	}{
		{"STAT", func(string) []string { return []string{"+OK " + long} }, func(c *Conn) error {
			_, _, err := c.Stat(testCtx(t))
			return err
		}},
		{"UIDL", func(string) []string { return []string{"+OK", "1 " + long, "."} }, func(c *Conn) error {
			_, err := c.UIDL(testCtx(t))
			return err
		}},
		{"LIST", func(string) []string { return []string{"+OK", "1 " + long, "."} }, func(c *Conn) error {
			_, err := c.Sizes(testCtx(t))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, func(line string) []string {
				if strings.HasPrefix(line, tt.name) {
					return tt.reply(line)
				}
				return basic("USER", "UIDL")(line)
			})
			c, err := Dial(testCtx(t), f.config(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = tt.call(c)
			if !errors.Is(err, source.ErrLineTooLong) || !errors.Is(err, ErrClosed) || len(err.Error()) > 200 {
				t.Errorf("got %.300v, want ErrLineTooLong and ErrClosed, without the line", err)
			}
			if err := c.Noop(testCtx(t)); !errors.Is(err, ErrClosed) {
				t.Errorf("got Noop after the long line %v, want ErrClosed", err)
			}
		})
	}
}

// readWriter is a connection's two halves, which Close leaves alone.
type readWriter struct {
	io.Reader
	io.Writer
}

func (readWriter) Close() error { return nil }

func TestReadLines(t *testing.T) {
	tests := []struct {
		name    string
		wire    string
		want    []string
		wantErr string
	}{
		{"empty", ".\r\n", nil, ""},
		{"at the bound", "1 a\r\n2 b\r\n3 c\r\n.\r\n", []string{"1 a", "2 b", "3 c"}, ""},
		{"dot-stuffed", "..x\r\n.\r\n", []string{".x"}, ""},
		{"over the bound", "1 a\r\n2 b\r\n3 c\r\n4 d\r\n.\r\n", nil, "more than 3 lines"},
		{"line too long", strings.Repeat("x", source.MaxLineLength) + "\r\n.\r\n", nil, "line longer than 65536 bytes"},
		{"cut short", "1 a\r\n", nil, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Conn{tp: textproto.NewConn(readWriter{strings.NewReader(tt.wire), io.Discard})}
			var got []string
			err := c.readLines(3, func(line string) error {
				got = append(got, line)
				return nil
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestLongLinesInMessage checks that the bound on lines leaves message
// data alone: RETR of a message of 3 MB with a line of 300 KB reads it
// whole.
func TestLongLinesInMessage(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	raw := sourcetest.NewLongLineMessage(1, 3<<20, 300<<10)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg := newUser(t, d, "longline-"+mode, mode)
			appendAll(t, d, cfg.Username, raw)
			c := dialT(t, cfg)
			m, err := c.Retr(longCtx(t), 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if m.TooLarge || !bytes.Equal(m.Raw, raw) {
				t.Errorf("got %d bytes (tooLarge %v), want the %d of the message; differ at %d", len(m.Raw), m.TooLarge, len(raw), firstDiff(m.Raw, raw))
			}
		})
	}
}
