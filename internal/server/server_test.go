package server_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSlowAndAbortedBodies serves the real handler on a real listener with a
// short read timeout: a body that stalls past it is answered 408, one the
// client cuts short 400, never 500; nothing is created.
func TestSlowAndAbortedBodies(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	tok, hash := auth.NewToken()
	if err := st.CreateToken(context.Background(), "test", hash); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv := server.HTTPServer(server.Handler(server.Deps{Store: st, Logger: log}), log, server.Timeouts{Read: 300 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const body = `{"name":"slow_inbox","host":"imap.example.com","port":993,"username":"s@example.com","password":"secret-pass"}`
	head := fmt.Sprintf("POST /api/v1/imap HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n", ln.Addr(), tok, len(body))
	for _, tc := range []struct {
		name   string
		finish func(c *net.TCPConn) // after the headers and half the body
		status int
		code   string
	}{
		// Sends nothing more: the server's read timeout ends the wait.
		{"stalls past the read timeout", func(*net.TCPConn) {}, http.StatusRequestTimeout, "request_timeout"},
		{"closes mid-body", func(c *net.TCPConn) { c.CloseWrite() }, http.StatusBadRequest, "incomplete_body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(head + body[:len(body)/2])); err != nil {
				t.Fatal(err)
			}
			tc.finish(conn.(*net.TCPConn))
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			bufio.NewReader(resp.Body).WriteTo(&b)
			if resp.StatusCode != tc.status || !strings.Contains(b.String(), `"code":"`+tc.code+`"`) {
				t.Errorf("got %d %s, want %d with code %s", resp.StatusCode, b.String(), tc.status, tc.code)
			}
		})
	}
	if _, err := st.GetIMAP(context.Background(), "slow_inbox"); err == nil {
		t.Error("a body read only in part created a configuration")
	}
	if strings.Contains(logs.String(), "api request failed") {
		t.Errorf("a request failed as an internal error:\n%s", logs.String())
	}
}
