package imapsource

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
)

// TestStartTLSRefused checks what a server may not do before TLS: each
// case fails Dial in step tls, saying why, and nothing is sent in the clear
// but STARTTLS.
func TestStartTLSRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		greeting string
		answer   string // to STARTTLS, after its tag
		wantErr  string
	}{
		{"PREAUTH", "* PREAUTH welcome", "", "PREAUTH on a connection without TLS"},
		{"BYE", "* BYE too busy", "", `server said BYE: "too busy"`},
		{"not a greeting", "hello", "", `unexpected greeting "hello"`},
		{"STARTTLS refused", "* OK ready", "BAD unknown command", `server refused STARTTLS: BAD "unknown command"`},
		{"data after the answer", "* OK ready", "OK go ahead\r\n* OK injected", "server sent data after its STARTTLS response"},
		{"answer too long", "* OK ready", "OK " + strings.Repeat("x", 1<<20), "line longer than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sent := make(chan []string, 1)
			port := sourcetest.Serve(t, nil, func(conn net.Conn) {
				var lines []string
				defer func() { sent <- lines }()
				if _, err := io.WriteString(conn, tt.greeting+"\r\n"); err != nil {
					return
				}
				r := bufio.NewReader(conn)
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					lines = append(lines, line)
					tag, _, _ := strings.Cut(line, " ")
					if _, err := io.WriteString(conn, tag+" "+tt.answer+"\r\n"); err != nil {
						return
					}
				}
			})
			cfg := imapconf.Config{Host: "127.0.0.1", Port: port, TLS: imapconf.TLSStartTLS, Username: "u@example.test", Password: "S3cret-pw"}
			_, err := Dial(testCtx(t), cfg, Options{DialTimeout: 5 * time.Second})
			var se *StepError
			if !errors.As(err, &se) || se.Step != StepTLS || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %.300v, want step tls saying %q", err, tt.wantErr)
			}
			if lines := <-sent; len(lines) > 1 || len(lines) == 1 && !strings.HasSuffix(lines[0], " STARTTLS\r\n") {
				t.Errorf("got %q sent in the clear, want at most STARTTLS", lines)
			}
		})
	}
}
