package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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

// TestReadyzSaysNothingOfTheDatabase: /readyz, which needs no token,
// answers a database it cannot reach with a fixed text; the error, which
// names the database's address, user and name, is only logged.
func TestReadyzSaysNothingOfTheDatabase(t *testing.T) {
	dbURL, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, dbURL.Host)
	dbURL.Host = proxy.Addr
	st, err := store.Open(context.Background(), store.Options{DatabaseURL: dbURL.String(), DataDir: t.TempDir(), Box: storetest.Box(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv := httptest.NewServer(server.Handler(server.Deps{Store: st, Logger: log}))
	t.Cleanup(srv.Close)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("got %d %q, want 200 ready", code, body)
	}

	proxy.Refuse(true)
	proxy.ResetAll()
	// A probe first finds one of the pool's idle connections broken
	// ("driver: bad connection"); once they are used up it fails to
	// connect, with an error that names the database.
	dbName := strings.TrimPrefix(dbURL.Path, "/")
	for i := 0; i < 20 && !strings.Contains(logs.String(), dbName); i++ {
		code, body := get()
		if want := "not ready: database unavailable; see the server log\n"; code != http.StatusServiceUnavailable || body != want {
			t.Errorf("got %d %q, want 503 %q", code, body, want)
		}
		for _, s := range []string{dbName, strconv.Itoa(proxy.Port), dbURL.User.Username()} {
			if strings.Contains(body, s) {
				t.Errorf("the answer names %q: %q", s, body)
			}
		}
	}
	if !strings.Contains(logs.String(), "readiness probe: not ready") || !strings.Contains(logs.String(), dbName) {
		t.Errorf("the log does not hold the error:\n%s", logs.String())
	}
}

// With a metrics token, /metrics (which names the flows and the webhook
// endpoints) answers only to a request that carries it; without one it is
// open, as the probes are.
func TestMetricsToken(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	const token = "metrics-token-0123456789"
	for _, tc := range []struct {
		token, auth string
		want        int
	}{
		{"", "", http.StatusOK},
		{token, "", http.StatusUnauthorized},
		{token, "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{token, "Basic " + token, http.StatusUnauthorized},
		{token, "Bearer " + token, http.StatusOK},
	} {
		srv := httptest.NewServer(server.Handler(server.Deps{Store: st, Logger: slog.New(slog.DiscardHandler), MetricsToken: tc.token}))
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q, Authorization %q: %d, want %d", tc.token, tc.auth, resp.StatusCode, tc.want)
		}
		if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "go_goroutines") {
			t.Errorf("token %q, Authorization %q: no metrics in the answer", tc.token, tc.auth)
		}
		if resp.StatusCode != http.StatusOK && strings.Contains(string(body), token) {
			t.Errorf("the refusal repeats the token: %q", body)
		}
	}
}
