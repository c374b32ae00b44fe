package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestLoginRequired(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := h.client()
	for _, path := range []string{"/", "/imap", "/imap/new", "/flows", "/runs", "/messages", "/settings"} {
		resp := h.get(c, path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("GET %s: got %d to %q, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp := h.get(c, "/imap/new")
	if got, want := resp.Header.Get("Location"), "/login?next=%2Fimap%2Fnew"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// The scripts' JSON endpoints answer 401 instead.
	req, _ := http.NewRequest(http.MethodGet, h.url+"/imap/status", nil)
	req.Header.Set("Accept", "application/json")
	if resp := h.do(c, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /imap/status as JSON: got %d, want 401", resp.StatusCode)
	}
	// A state change without a session changes nothing.
	if resp := h.post(c, "/imap", url.Values{"name": {"x"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("POST /imap without a session: got %d, want 303", resp.StatusCode)
	}

	// Log in: back to where the user wanted to go, and only to a local path.
	resp = h.post(c, "/login", url.Values{"username": {adminName}, "password": {adminPassword}, "next": {"/flows"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/flows" {
		t.Fatalf("login: got %d to %q, want 303 to /flows", resp.StatusCode, resp.Header.Get("Location"))
	}
	c2 := h.client()
	resp = h.post(c2, "/login", url.Values{"username": {adminName}, "password": {adminPassword}, "next": {"//evil.example/x"}})
	if resp.Header.Get("Location") != "/imap" {
		t.Errorf("login with an outside next: got redirect to %q, want /imap", resp.Header.Get("Location"))
	}
	if resp := h.get(c, "/imap"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /imap logged in: got %d, want 200", resp.StatusCode)
	}
	// Logout is a POST; afterwards the session is gone.
	if resp := h.get(c, "/logout"); resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login" {
		t.Error("GET /logout logged out; state must never change on GET")
	}
	if resp := h.post(c, "/logout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("POST /logout: got %d, want 303", resp.StatusCode)
	}
	if resp := h.get(c, "/imap"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /imap after logout: got %d, want 303 to the login page", resp.StatusCode)
	}
}

func TestWrongPassword(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := h.client()
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", adminName, "nope-nope"},
		{"unknown user", "mallory", adminPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.post(c, "/login", url.Values{"username": {tc.user}, "password": {tc.password}})
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Body, "Wrong user name or password.") {
				t.Errorf("got %d, want 401 with the same message for both", resp.StatusCode)
			}
		})
	}
	if strings.Contains(h.logs.String(), "nope-nope") {
		t.Error("a typed password reached the log")
	}
}

func TestLoginRateLimit(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	h.ui.limit = newLimiter(3, time.Hour, time.Now)
	c := h.client()
	for i := range 3 {
		if resp := h.post(c, "/login", url.Values{"username": {adminName}, "password": {"guess"}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, resp.StatusCode)
		}
	}
	// Blocked now, even with the right password.
	resp := h.post(c, "/login", url.Values{"username": {adminName}, "password": {adminPassword}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.Body, "Too many failed logins") {
		t.Fatalf("got %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	l := newLimiter(2, 10*time.Minute, func() time.Time { return now })
	ip, user := "ip:192.0.2.1", "ipuser:192.0.2.1 admin"
	if _, d := l.reserve(ip, user); d != 0 {
		t.Fatalf("got blocked %v, want not blocked", d)
	}
	now = now.Add(time.Minute)
	if _, d := l.reserve(ip, user); d != 0 {
		t.Fatalf("got blocked %v, want not blocked", d)
	}
	if _, got := l.reserve(ip, user); got != 9*time.Minute {
		t.Errorf("got blocked for %v, want 9m (until the first attempt leaves the window)", got)
	}
	now = now.Add(9 * time.Minute)
	at, d := l.reserve(ip, user)
	if d != 0 {
		t.Fatalf("got blocked %v after the window, want not blocked", d)
	}
	// A success takes its own attempt back and clears the (address, user) key.
	l.succeeded(at, ip, user)
	if n := len(l.fails[ip]); n != 1 {
		t.Errorf("got %d attempts left on the address, want 1 (the failure a minute after the first)", n)
	}
	if _, ok := l.fails[user]; ok {
		t.Error("a success left the (address, user) key")
	}
	// Per address the limit is five times as high: other names from it.
	other := "ip:192.0.2.2"
	for i := range 10 {
		if _, d := l.reserve(other, fmt.Sprintf("ipuser:192.0.2.2 u%d", i)); d != 0 {
			t.Fatalf("attempt %d: got blocked, want 10 allowed per address", i+1)
		}
	}
	if _, d := l.reserve(other, "ipuser:192.0.2.2 fresh"); d == 0 {
		t.Error("got an address not blocked after 10 attempts")
	}
}

func TestSessionCookie(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		proxy  bool
		secure bool
	}{{"plain http", false, false, false}, {"tls", true, false, true}, {"behind a tls proxy", false, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, storetest.Open(t, store.SQLite), tc.tls)
			c := h.client()
			if tc.tls {
				c.Transport = h.srv.Client().Transport
			}
			header := map[string]string{"Origin": h.url, "Sec-Fetch-Site": "same-origin"}
			if tc.proxy {
				header["X-Forwarded-Proto"] = "https"
			}
			resp := h.postWith(c, "/login", url.Values{"username": {adminName}, "password": {adminPassword}}, header)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: got %d", resp.StatusCode)
			}
			cookie := ""
			for _, v := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(v, cookieName+"=") {
					cookie = v
				}
			}
			if cookie == "" {
				t.Fatal("no session cookie set at login")
			}
			for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
				if !strings.Contains(cookie, attr) {
					t.Errorf("cookie %q: missing %s", cookie, attr)
				}
			}
			if got := strings.Contains(cookie, "Secure"); got != tc.secure {
				t.Errorf("cookie %q: got Secure %v, want %v", cookie, got, tc.secure)
			}
			// The database holds a hash of the token, never the token.
			token := strings.TrimPrefix(strings.SplitN(cookie, ";", 2)[0], cookieName+"=")
			if _, found, _ := h.st.FindSession(context.Background(), token); found {
				t.Error("the session table holds the cookie's value itself")
			}
		})
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	seedData(t, st, h.status)
	c := h.client()
	h.login(c)
	for _, header := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
		{"Origin": "https://evil.example"},
	} {
		resp := h.postWith(c, "/imap/orders/delete", nil, header)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Body, "cross-origin request refused") {
			t.Errorf("POST with %v: got %d, want 403", header, resp.StatusCode)
		}
	}
	if _, err := st.GetIMAP(context.Background(), "orders"); err != nil {
		t.Fatalf("a refused request deleted the configuration: %v", err)
	}
	// The same request from the site itself goes through.
	if resp := h.post(c, "/imap/orders/delete", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin delete: got %d, want 303", resp.StatusCode)
	}
}

func TestStaticFiles(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := h.client()
	page := h.get(c, "/login")
	urls := regexp.MustCompile(`/static/[a-z]+\.[0-9a-f]{12}\.(css|js|svg)`).FindAllString(page.Body, -1)
	if len(urls) != 3 {
		t.Fatalf("got static URLs %v, want app.css, app.js and favicon.svg with a hash", urls)
	}
	for _, u := range urls {
		resp := h.get(c, u)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s: got %d, Cache-Control %q", u, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	if resp := h.get(c, "/static/app.000000000000.css"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a stale hash: got %d, want 404", resp.StatusCode)
	}
	// No external resources: no URL with a host in any page.
	h.login(c)
	for _, path := range []string{"/imap", "/imap/new", "/flows/new", "/settings"} {
		body := h.get(c, path).Body
		if m := regexp.MustCompile(`(src|href)="(https?:)?//`).FindString(body); m != "" {
			t.Errorf("%s loads an external resource: %s", path, m)
		}
	}
	if csp := h.get(c, "/imap").Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("got CSP %q", csp)
	}
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c1, c2 := h.client(), h.client()
	h.login(c1)
	h.login(c2)
	resp := h.post(c1, "/settings/password", url.Values{"current": {"wrong"}, "new": {"short"}, "confirm": {"other"}})
	for _, want := range []string{"not your current password", "at least 12 characters", "does not match"} {
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, want) {
			t.Errorf("got %d, want 400 with %q", resp.StatusCode, want)
		}
	}
	resp = h.post(c1, "/settings/password", url.Values{"current": {adminPassword}, "new": {"a-new-long-password"}, "confirm": {"a-new-long-password"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: got %d", resp.StatusCode)
	}
	if resp := h.get(c1, "/settings"); resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, "Password changed") {
		t.Errorf("the session that changed the password: got %d", resp.StatusCode)
	}
	if resp := h.get(c2, "/settings"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("another session after the change: got %d, want 303 to the login page", resp.StatusCode)
	}
	hash, _ := h.st.UserPasswordHash(context.Background(), adminName)
	if !auth.CheckPassword(hash, "a-new-long-password") {
		t.Error("the new password was not stored")
	}
}

func TestTokens(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := h.client()
	h.login(c)
	resp := h.post(c, "/settings/tokens", url.Values{"name": {"ci-bot"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "only letters, digits and underscore") {
		t.Errorf("bad name: got %d", resp.StatusCode)
	}
	resp = h.post(c, "/settings/tokens", url.Values{"name": {"ci_bot"}})
	tok := regexp.MustCompile(`mt_[A-Z2-7]+`).FindString(resp.Body)
	if resp.StatusCode != http.StatusOK || tok == "" {
		t.Fatalf("create: got %d, no token shown", resp.StatusCode)
	}
	// The token works on the API, and is never shown again.
	req, _ := http.NewRequest(http.MethodGet, h.url+"/api/v1/imap", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if r := h.do(http.DefaultClient, req); r.StatusCode != http.StatusOK {
		t.Errorf("API with the new token: got %d", r.StatusCode)
	}
	if body := h.get(c, "/settings").Body; strings.Contains(body, tok) || !strings.Contains(body, "ci_bot") {
		t.Error("the settings page shows the token again, or does not list it")
	}
	if r := h.post(c, "/settings/tokens/ci_bot/revoke", nil); r.StatusCode != http.StatusSeeOther {
		t.Errorf("revoke: got %d", r.StatusCode)
	}
	if r := h.do(http.DefaultClient, req); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with a revoked token: got %d, want 401", r.StatusCode)
	}
}

// TestNoSecretInAnyPage fetches every page the UI links to (and the panels
// and dialogs of every configuration and flow) and looks for every stored
// secret in the HTML.
func TestNoSecretInAnyPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, false)
		s := seedData(t, st, h.status)
		c := h.client()
		h.login(c)
		// Delegated OAuth2 (issue 17): a signed-in configuration's tokens,
		// a sign-in under way's verifier, a code on a refused callback.
		s.Secrets = append(s.Secrets, seedSignIn(t, st)...)
		code := "Seed-Callback-Code-5e1b"
		s.Secrets = append(s.Secrets, code)
		if r := h.get(c, "/oauth/callback?state=state-of-the-seed&code="+code); r.StatusCode != http.StatusBadRequest ||
			strings.Contains(r.Body, code) || strings.Contains(r.Body, "state-of-the-seed") {
			t.Errorf("a refused callback: got %d %s", r.StatusCode, r.Body)
		}
		seen := map[string]bool{}
		queue := []string{"/imap", "/flows", "/runs", "/messages", "/settings", "/imap/new", "/flows/new", "/imap/status",
			"/imap/support_inbox/duplicate", "/imap/invoices_m365/duplicate", "/imap/oauth_gmail/duplicate", "/imap/owner_gmail/duplicate"}
		link := regexp.MustCompile(`href="(/[^"#]*)`)
		for len(queue) > 0 {
			path := queue[0]
			queue = queue[1:]
			if seen[path] || strings.HasPrefix(path, "/static/") || strings.HasSuffix(path, "/raw") || strings.Contains(path, "/attachments/") {
				continue
			}
			seen[path] = true
			resp := h.get(c, strings.ReplaceAll(path, "&amp;", "&"))
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: got %d, want 200", path, resp.StatusCode)
				continue
			}
			for _, secret := range s.Secrets {
				if secret == "" {
					continue
				}
				// As written, or as html/template escapes it in an attribute or a script.
				for _, form := range []string{secret, template.HTMLEscapeString(secret), strings.ReplaceAll(secret, "+", "&#43;"),
					template.JSEscapeString(secret)} {
					if strings.Contains(resp.Body, form) {
						t.Errorf("GET %s contains the stored secret %q", path, secret)
					}
				}
			}
			for _, m := range link.FindAllStringSubmatch(resp.Body, -1) {
				queue = append(queue, m[1])
			}
		}
		for _, want := range []string{"/imap/support_inbox", "/imap/owner_gmail", "/imap/orders/delete", "/flows/invoice_to_erp", "/runs/" + s.RunID, "/messages?imap=support_inbox"} {
			if !seen[want] {
				t.Errorf("the crawl never reached %s; got %v", want, slices.Sorted(func(yield func(string) bool) {
					for k := range seen {
						if !yield(k) {
							return
						}
					}
				}))
			}
		}
		if len(seen) < 25 {
			t.Errorf("crawled %d pages, want at least 25", len(seen))
		}
	})
}

func TestFlowForm(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	seedData(t, st, h.status)
	c := loggedIn(t, h)
	ctx := context.Background()
	secretA := "whsec_" + base64.StdEncoding.EncodeToString([]byte("secret-of-webhook-A-0123"))
	secretB := "whsec_" + base64.StdEncoding.EncodeToString([]byte("secret-of-webhook-B-4567"))

	t.Run("refused with every wrong field", func(t *testing.T) {
		resp := h.post(c, "/flows", url.Values{"name": {"bad name"}, "imap": {"nope"}, "subject": {"(unclosed"}, "match": {"regex"},
			"acts": {"1"}, "act-0-orig": {"-1"}, "act-0-url": {"ftp://x"}, "act-0-headers": {"no colon here"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got %d, want 400", resp.StatusCode)
		}
		for _, want := range []string{"only letters, digits and underscore", "no IMAP configuration named nope",
			"not a valid regular expression", "must be an absolute http:// or https:// URL", "one header per line"} {
			if !strings.Contains(resp.Body, want) {
				t.Errorf("missing %q", want)
			}
		}
		if _, err := st.GetFlow(ctx, "bad name"); err == nil {
			t.Error("a refused flow was stored")
		}
	})

	t.Run("each webhook keeps its own secret", func(t *testing.T) {
		resp := h.post(c, "/flows", url.Values{"name": {"two_hooks"}, "imap": {"support_inbox"}, "subject": {"Order"}, "match": {"prefix"},
			"enabled": {"on"}, "acts": {"3"},
			"act-0-orig": {"-1"}, "act-0-url": {"https://a.example/hook"}, "act-0-secret": {secretA},
			"act-1-orig": {"-1"}, "act-1-url": {"https://b.example/hook"}, "act-1-secret": {secretB}, "act-1-headers": {"X-Team: billing"},
			"act-2-orig": {"-1"}, "act-2-url": {""}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: got %d\n%s", resp.StatusCode, resp.Body)
		}
		fr, err := st.GetFlow(ctx, "two_hooks")
		if err != nil || len(fr.Secrets) != 2 || fr.Secrets[0] != secretA || fr.Secrets[1] != secretB {
			t.Fatalf("got %v, %v", fr.Secrets, err)
		}
		page := h.get(c, "/flows/two_hooks").Body
		if strings.Contains(page, secretA) || strings.Contains(page, secretB) {
			t.Fatal("the editor shows a stored secret")
		}
		// Remove the first webhook; the second keeps its secret, not the first's.
		resp = h.post(c, "/flows/two_hooks", url.Values{"name": {"two_hooks"}, "imap": {"support_inbox"}, "subject": {"Order"},
			"match": {"prefix"}, "enabled": {"on"}, "acts": {"2"},
			"act-0-orig": {"0"}, "act-0-url": {"https://a.example/hook"}, "act-0-remove": {"on"},
			"act-1-orig": {"1"}, "act-1-url": {"https://b.example/hook"}, "act-1-headers": {"X-Team: billing"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: got %d\n%s", resp.StatusCode, resp.Body)
		}
		fr, err = st.GetFlow(ctx, "two_hooks")
		if err != nil || len(fr.Secrets) != 1 || fr.Secrets[0] != secretB {
			t.Fatalf("got secrets %v, want only webhook B's", fr.Secrets)
		}
		if len(fr.Headers) != 1 || fr.Headers[0]["X-Team"] != "billing" {
			t.Errorf("got headers %v, want the header kept", fr.Headers)
		}
	})

	t.Run("header values are write-only", func(t *testing.T) {
		const token, typed = "Bearer ui-hdr-secret-4471", "typed-hdr-secret-9"
		form := func(hook, headers string) url.Values {
			return url.Values{"name": {"hdr_flow"}, "imap": {"support_inbox"}, "subject": {"Order"}, "match": {"exact"},
				"enabled": {"on"}, "acts": {"1"}, "act-0-orig": {"0"}, "act-0-url": {hook}, "act-0-headers": {headers}}
		}
		create := form("https://a.example/hook", "Authorization: "+token+"\nX-Team: billing")
		create.Set("act-0-orig", "-1")
		create.Set("act-0-secret", secretA)
		if resp := h.post(c, "/flows", create); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: got %d", resp.StatusCode)
		}
		page := h.get(c, "/flows/hdr_flow").Body
		if strings.Contains(page, "ui-hdr-secret") || !strings.Contains(page, "Authorization: •••• (stored)\nX-Team: •••• (stored)") {
			t.Fatalf("the editor shows a header value, or not the names of the stored ones")
		}
		stored := func() map[string]string {
			fr, err := st.GetFlow(ctx, "hdr_flow")
			if err != nil || len(fr.Headers) != 1 {
				t.Fatalf("got %v, %v", fr.Headers, err)
			}
			return fr.Headers[0]
		}
		// Saved as shown: kept; one replaced.
		if resp := h.post(c, "/flows/hdr_flow", form("https://a.example/other", "Authorization: •••• (stored)\nX-Team: sales")); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save as shown: got %d", resp.StatusCode)
		}
		if got := stored(); got["Authorization"] != token || got["X-Team"] != "sales" {
			t.Errorf("save as shown: got %v", got)
		}
		// Another host keeping the stored value: refused by the field.
		resp := h.post(c, "/flows/hdr_flow", form("https://evil.example.net/hook", "Authorization: •••• (stored)\nX-New: "+typed))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, `id="e-act-0-headers">required again because the url&#39;s scheme, host or port changed`) {
			t.Errorf("another host: got %d, want 400 with the reason by the headers field", resp.StatusCode)
		}
		if strings.Contains(resp.Body, typed) || strings.Contains(resp.Body, "ui-hdr-secret") || !strings.Contains(resp.Body, "Enter the header values again") {
			t.Error("the page shown again holds a header value, or does not ask for the typed one again")
		}
		if got := stored(); got["Authorization"] != token || len(got) != 2 {
			t.Errorf("a refused save changed the headers: %v", got)
		}
		// A line deleted removes the header.
		if resp := h.post(c, "/flows/hdr_flow", form("https://a.example/other", "X-Team: •••• (stored)")); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("remove: got %d", resp.StatusCode)
		}
		if got := stored(); len(got) != 1 || got["X-Team"] != "sales" {
			t.Errorf("remove: got %v", got)
		}
		if strings.Contains(h.logs.String(), "hdr-secret") {
			t.Error("the log contains a header value")
		}
	})

	t.Run("a webhook moved to another host gets a new secret", func(t *testing.T) {
		form := func(hook string) url.Values {
			return url.Values{"name": {"moved"}, "imap": {"support_inbox"}, "subject": {"Order"}, "match": {"exact"},
				"enabled": {"on"}, "acts": {"1"}, "act-0-orig": {"0"}, "act-0-url": {hook}}
		}
		create := form("https://a.example/hook")
		create.Set("act-0-orig", "-1")
		create.Set("act-0-secret", secretA)
		if resp := h.post(c, "/flows", create); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: got %d", resp.StatusCode)
		}
		stored := func() string {
			fr, err := st.GetFlow(ctx, "moved")
			if err != nil || len(fr.Secrets) != 1 {
				t.Fatalf("got %v, %v", fr.Secrets, err)
			}
			return fr.Secrets[0]
		}
		// Another path on the same host: kept, redirected.
		if resp := h.post(c, "/flows/moved", form("https://a.example/other")); resp.StatusCode != http.StatusSeeOther || stored() != secretA {
			t.Errorf("same host: got %d, want a redirect and the stored secret kept", resp.StatusCode)
		}
		// Another host, the secret left empty: a new one, shown once.
		resp := h.post(c, "/flows/moved", form("https://evil.example.net/hook"))
		got := stored()
		if resp.StatusCode != http.StatusOK || got == secretA || !strings.Contains(resp.Body, "Signing secret of webhook 1") ||
			!strings.Contains(html.UnescapeString(resp.Body), got) || strings.Contains(html.UnescapeString(resp.Body), secretA) {
			t.Errorf("another host: got %d, stored secret kept %v; want a new secret shown once and never the old one", resp.StatusCode, got == secretA)
		}
	})

	t.Run("limits per webhook", func(t *testing.T) {
		form := func(maxC, rate string) url.Values {
			return url.Values{"name": {"limited"}, "imap": {"support_inbox"}, "subject": {"Order"}, "match": {"prefix"},
				"enabled": {"on"}, "acts": {"1"}, "act-0-orig": {"-1"}, "act-0-url": {"https://a.example/hook"}, "act-0-secret": {secretA},
				"act-0-maxConcurrency": {maxC}, "act-0-ratePerSecond": {rate}}
		}
		for _, tc := range []struct{ maxC, rate, want string }{
			{"0", "", "from 1 to 1000"},
			{"many", "", "from 1 to 1000"},
			{"4", "-2", "from 0.01 to 10000"},
			{"4", "fast", "from 0.01 to 10000"},
		} {
			resp := h.post(c, "/flows", form(tc.maxC, tc.rate))
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, tc.want) {
				t.Errorf("maxConcurrency %q, ratePerSecond %q: got %d, want 400 with %q", tc.maxC, tc.rate, resp.StatusCode, tc.want)
			}
			if _, err := st.GetFlow(ctx, "limited"); err == nil {
				t.Fatal("a refused flow was stored")
			}
		}
		if resp := h.post(c, "/flows", form("8", "2.5")); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: got %d\n%s", resp.StatusCode, resp.Body)
		}
		fr, err := st.GetFlow(ctx, "limited")
		if err != nil || !strings.Contains(fr.Definition, `"maxConcurrency":8`) || !strings.Contains(fr.Definition, `"ratePerSecond":2.5`) {
			t.Fatalf("got definition %s, %v; want both limits", fr.Definition, err)
		}
		page := h.get(c, "/flows/limited").Body
		if !strings.Contains(page, `name="act-0-maxConcurrency" value="8"`) || !strings.Contains(page, `name="act-0-ratePerSecond" value="2.5"`) {
			t.Error("the editor does not show the limits")
		}
		// Emptied: the limits are gone.
		if resp := h.post(c, "/flows/limited", form("", "")); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: got %d\n%s", resp.StatusCode, resp.Body)
		}
		if fr, _ := st.GetFlow(ctx, "limited"); strings.Contains(fr.Definition, "maxConcurrency") || strings.Contains(fr.Definition, "ratePerSecond") {
			t.Errorf("got definition %s, want the limits removed", fr.Definition)
		}
	})

	t.Run("test a subject", func(t *testing.T) {
		for _, tc := range []struct{ query, want string }{
			{"subject=Invoice&match=prefix&ignoreReplyPrefixes=1&test=Re:+Invoice+7", `"matched":true`},
			{"subject=Invoice&match=exact&test=Invoice+7", `"matched":false`},
			{"subject=(x&match=regex&test=x", `not a valid regular expression`},
			{"subject=Invoice&from=@acme.example&test=Invoice&sender=a@globex.example", `is not`},
		} {
			req, _ := http.NewRequest(http.MethodGet, h.url+"/flows/match?"+tc.query, nil)
			req.Header.Set("Accept", "application/json")
			if resp := h.do(c, req); !strings.Contains(resp.Body, tc.want) {
				t.Errorf("%s: got %s, want %s", tc.query, resp.Body, tc.want)
			}
		}
	})
}

// TestSettingsReplicas: the settings page lists the replicas with their
// address, mailboxes and liveness, marking the one answering.
func TestSettingsReplicas(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := h.client()
	h.login(c)
	body := h.get(c, "/settings").Body
	for _, want := range []string{"Replicas", "web-1-3f9a2c", "(this one)", "http://10.0.0.12:8080", ">12<", "badge ok\">live", "badge bad\">silent", "15 s"} {
		if !strings.Contains(body, want) {
			t.Errorf("the settings page lacks %q", want)
		}
	}
}
