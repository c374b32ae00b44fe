package web

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/clientip"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// clientFrom is a client whose connections come from the loopback address
// ip (any of 127.0.0.0/8 on Linux), so that one test plays many addresses.
func (h *harness) clientFrom(ip string) *http.Client {
	c := h.client()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	c.Transport = &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	return c
}

func (h *harness) loginAs(c *http.Client, password string, header map[string]string) int {
	h.t.Helper()
	hd := map[string]string{"Origin": h.url, "Sec-Fetch-Site": "same-origin"}
	for k, v := range header {
		hd[k] = v
	}
	return h.postWith(c, "/login", url.Values{"username": {adminName}, "password": {password}}, hd).StatusCode
}

// TestLoginConcurrentGuesses sends 40 wrong passwords from one address at
// once: the limit is checked and the attempt counted in one step, so at most
// the limit's worth of passwords are checked; the rest are answered 429.
func TestLoginConcurrentGuesses(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	const limit = 10
	h.ui.limit = newLimiter(limit, time.Hour, time.Now)
	// A verifier that takes its time as argon2id does, without its cost
	// under the race detector: the guesses overlap as they would.
	var checked atomic.Int32
	h.ui.checkPassword = func(_, password string) bool {
		checked.Add(1)
		time.Sleep(50 * time.Millisecond)
		return password == adminPassword
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	form := url.Values{"username": {adminName}, "password": {"wrong-guess-password"}}.Encode()
	for range 40 {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, h.url+"/login", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", h.url)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			code := -1
			if resp, err := h.client().Do(req); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if n := checked.Load(); n > limit {
		t.Errorf("got %d passwords checked, want at most %d", n, limit)
	}
	if codes[http.StatusUnauthorized] > limit || codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != 40 {
		t.Errorf("got answers %v, want at most %d × 401 and the rest 429", codes, limit)
	}
}

// TestLoginNoLockoutFromOtherAddresses fails the admin's password 55 times
// from 55 addresses; the right password from a fresh address still logs in.
func TestLoginNoLockoutFromOtherAddresses(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	// The limiter is under test, not argon2id: a quick check keeps 55
	// logins within seconds under the race detector.
	h.ui.checkPassword = func(_, password string) bool { return password == adminPassword }
	for i := range 55 {
		c := h.clientFrom(net.IPv4(127, 0, 1, byte(i+1)).String())
		if code := h.loginAs(c, "wrong-guess-password", nil); code != http.StatusUnauthorized {
			t.Fatalf("guess %d from its own address: got %d, want 401", i+1, code)
		}
	}
	if code := h.loginAs(h.clientFrom("127.0.2.1"), adminPassword, nil); code != http.StatusSeeOther {
		t.Fatalf("the right password from a fresh address: got %d, want 303 (logged in)", code)
	}
	// Guesses from one address still stop at that address's limit.
	h.ui.limit = newLimiter(3, time.Hour, time.Now)
	c := h.clientFrom("127.0.3.1")
	for range 3 {
		h.loginAs(c, "wrong-guess-password", nil)
	}
	if code := h.loginAs(c, adminPassword, nil); code != http.StatusTooManyRequests {
		t.Errorf("after 3 failures from one address: got %d, want 429", code)
	}
	if code := h.loginAs(h.clientFrom("127.0.3.2"), adminPassword, nil); code != http.StatusSeeOther {
		t.Errorf("from another address meanwhile: got %d, want 303", code)
	}
}

// TestLoginTrustedProxies: X-Forwarded-For names the client only when the
// peer is a trusted proxy, and then by its right-most untrusted address.
func TestLoginTrustedProxies(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	h.ui.limit = newLimiter(3, time.Hour, time.Now)
	h.ui.checkPassword = func(_, password string) bool { return password == adminPassword }
	var err error
	if h.ui.proxies, err = clientip.Parse("127.0.0.1, 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	proxy := h.clientFrom("127.0.0.1")
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }
	for range 3 {
		if code := h.loginAs(proxy, "wrong-guess-password", xff("198.51.100.7")); code != http.StatusUnauthorized {
			t.Fatalf("guess: got %d, want 401", code)
		}
	}
	for _, tc := range []struct {
		name, xff string
		want      int
	}{
		{"the guessing client", "198.51.100.7", http.StatusTooManyRequests},
		{"a left part written by the client is ignored", "203.0.113.9, 198.51.100.7", http.StatusTooManyRequests},
		{"a second trusted proxy is skipped", "198.51.100.7, 10.1.2.3", http.StatusTooManyRequests},
		{"another client behind the same proxy", "203.0.113.9", http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := h.loginAs(proxy, adminPassword, xff(tc.xff)); code != tc.want {
				t.Errorf("got %d, want %d", code, tc.want)
			}
		})
	}
	// From a peer that is not a trusted proxy the header is ignored: changing
	// it does not escape the peer's limit.
	direct := h.clientFrom("127.0.0.2")
	for i := range 3 {
		h.loginAs(direct, "wrong-guess-password", xff("192.0.2."+string(rune('1'+i))))
	}
	if code := h.loginAs(direct, adminPassword, xff("192.0.2.99")); code != http.StatusTooManyRequests {
		t.Errorf("untrusted peer with a new X-Forwarded-For: got %d, want 429", code)
	}
}

// TestNewPasswordMinimumLength: the UI refuses a new password shorter than
// 12 characters, naming the field; a shorter password set before still logs in.
func TestNewPasswordMinimumLength(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := h.client()
	h.login(c)
	resp := h.post(c, "/settings/password", url.Values{"current": {adminPassword}, "new": {"eleven-char"}, "confirm": {"eleven-char"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, `id="e-new"`) || !strings.Contains(resp.Body, "at least 12 characters") {
		t.Errorf("11 characters: got %d, want 400 with the new password field marked \"at least 12 characters\"", resp.StatusCode)
	}
	hash, err := auth.HashPassword("old-pass")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetUserPassword(context.Background(), "veteran", hash); err != nil {
		t.Fatal(err)
	}
	resp = h.post(h.client(), "/login", url.Values{"username": {"veteran"}, "password": {"old-pass"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an existing 8-character password: got %d, want 303 (logged in)", resp.StatusCode)
	}
}

// TestControlCharactersRefused: NUL and other control characters in UI
// forms, paths and query parameters are answered 400 (404 for a path)
// naming the field, on SQLite and PostgreSQL, and change nothing.
func TestControlCharactersRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, false)
		seedData(t, st, h.status)
		c := loggedIn(t, h)
		imapForm := func(k, v string) url.Values {
			f := url.Values{"name": {"new_inbox"}, "serverType": {"imaps"}, "type": {"generic"}, "host": {"imap.example.com"},
				"port": {"993"}, "username": {"new@example.com"}, "password": {"New-Secret-1"}}
			f.Set(k, v)
			return f
		}
		flowForm := func(k, v string) url.Values {
			f := url.Values{"name": {"new_flow"}, "imap": {"support_inbox"}, "subject": {"Order"}, "match": {"exact"},
				"acts": {"1"}, "act-0-orig": {"-1"}, "act-0-url": {"https://a.example/hook"}}
			f.Set(k, v)
			return f
		}
		for _, tc := range []struct {
			name, method, path string
			form               url.Values
			status             int
			want               string
		}{
			{"imap description NUL", "POST", "/imap", imapForm("description", "a\x00b"), 400, "description must not contain NUL"},
			{"imap host NUL", "POST", "/imap", imapForm("host", "a\x00b"), 400, "host must not contain NUL"},
			{"imap form not UTF-8", "POST", "/imap", imapForm("username", "a\xffb@example.com"), 400, "username must be valid UTF-8"},
			{"imap host line break", "POST", "/imap", imapForm("host", "imap.example.com\nx"), 400, "must not contain control characters"},
			{"imap edit NUL", "POST", "/imap/support_inbox", imapForm("name", "support_inbox\x00"), 400, "name must not contain NUL"},
			{"imap test _orig NUL", "POST", "/imap/test", imapForm("_orig", "a\x00b"), 400, `"_orig":"must not contain NUL`},
			{"flow subject NUL", "POST", "/flows", flowForm("subject", "a\x00b"), 400, "subject must not contain NUL"},
			{"flow subject tab", "POST", "/flows", flowForm("subject", "Or\tder"), 400, "must not contain control characters"},
			{"flow header value", "POST", "/flows", flowForm("act-0-headers", "X-Team: a\x01b"), 400, "must not contain control characters"},
			{"token name NUL", "POST", "/settings/tokens", url.Values{"name": {"a\x00b"}}, 400, "name must not contain NUL"},
			{"trigger NUL", "POST", "/messages/1/trigger", url.Values{"force": {"a\x00"}}, 400, "force must not contain NUL"},
			{"imap path", "GET", "/imap/a%00b", nil, 404, "control character"},
			{"imap delete path", "POST", "/imap/a%00b/delete", url.Values{}, 404, "control character"},
			{"flow path", "GET", "/flows/a%00b", nil, 404, "control character"},
			{"run path", "GET", "/runs/a%00b", nil, 404, "control character"},
			{"path not UTF-8", "GET", "/imap/a%ffb", nil, 404, "control character"},
			{"messages imap", "GET", "/messages?imap=a%00b", nil, 400, "imap must not contain NUL"},
			{"runs flow", "GET", "/runs?flow=a%00b", nil, 400, "flow must not contain NUL"},
			{"runs imap not UTF-8", "GET", "/runs?imap=a%ffb", nil, 400, "imap must be valid UTF-8"},
			{"new flow imap", "GET", "/flows/new?imap=a%00b", nil, 400, "imap must not contain NUL"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := snapshotAll(t, st)
				var resp response
				if tc.method == "GET" {
					resp = h.get(c, tc.path)
				} else {
					resp = h.post(c, tc.path, tc.form)
				}
				if resp.StatusCode != tc.status || !strings.Contains(resp.Body, tc.want) {
					t.Errorf("got %d, want %d with %q\n%s", resp.StatusCode, tc.status, tc.want, resp.Body)
				}
				if after := snapshotAll(t, st); after != before {
					t.Error("a refused request changed something")
				}
			})
		}
		t.Run("login user name", func(t *testing.T) {
			resp := h.post(h.client(), "/login", url.Values{"username": {"ad\x00min"}, "password": {adminPassword}})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "User name must not contain NUL") {
				t.Errorf("got %d, want 400 naming the user name\n%s", resp.StatusCode, resp.Body)
			}
		})
		if strings.Contains(h.logs.String(), "web request failed") {
			t.Errorf("a request failed with 500:\n%s", h.logs.String())
		}
	})
}

// snapshotAll is what a refused request must not change: configurations,
// flows and tokens.
func snapshotAll(t *testing.T, st *store.Store) string {
	t.Helper()
	ctx := context.Background()
	cs, err := st.ListIMAP(ctx, "", 500)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := st.ListFlows(ctx, "", 500)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := st.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%+v\n", c)
	}
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %s %v\n", f.Name, f.Definition, f.Enabled)
	}
	fmt.Fprintf(&b, "%d tokens\n", len(toks))
	return b.String()
}
