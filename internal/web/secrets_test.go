package web

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// formValues is what the Edit panel submits for c, password left empty.
func formValues(c imapconf.Config) url.Values {
	return url.Values{"name": {c.Name}, "serverType": {c.ServerType}, "type": {c.Type}, "description": {c.Description},
		"enabled": {"on"}, "host": {c.Host}, "port": {strconv.Itoa(c.Port)}, "username": {c.Username}, "password": {""},
		"folder": {c.Folder}, "tls": {c.TLS}, "caCert": {strings.ReplaceAll(c.CACert, "\n", "\r\n")},
		"afterProcessing": {c.AfterProcessing}, "pollInterval": {strconv.Itoa(c.PollInterval)}, "backlog": {c.Backlog},
		"auth": {c.Auth}}
}

// TestIMAPFormBindsStoredPassword is issue 12's exfiltration through the UI:
// the Edit panel and its Test button with a new host, port and CA and the
// password left empty. The new server (a recorder in front of Dovecot) is
// never contacted; the page shows why by the password field; nothing is
// saved. With the server unchanged the stored password is used.
func TestIMAPFormBindsStoredPassword(t *testing.T) {
	d := testenv.StartDovecot(t)
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	user := d.AddUser(t, "uiexfil", "UI-Stored-PW-Tapir-3391")
	cfg, err := imapconf.Build(imapconf.Input{Name: p("ui_inbox"), Host: p(d.Host), Port: p(d.IMAPSPort), Username: p(user),
		Password: p(d.Password(t, user)), CACert: p(string(d.CACertPEM))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIMAP(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	rec := testenv.StartTLSRecorder(t, d.Addr(d.IMAPSPort), d.TLSConfig())
	evil := formValues(cfg)
	evil.Set("host", rec.Host)
	evil.Set("port", strconv.Itoa(rec.Port))
	evil.Set("caCert", string(rec.CACertPEM))
	const why = "required again because host, port and caCert changed"

	resp := h.post(c, "/imap/ui_inbox", evil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("save to a new server without the password: got %d, want 400", resp.StatusCode)
	}
	if !strings.Contains(resp.Body, `<p class="field-error" id="e-password">`+why) {
		t.Errorf("the page does not say by the password field that it is %s", why)
	}
	if got, _ := st.GetIMAP(ctx, "ui_inbox"); got.Host != d.Host || got.Port != d.IMAPSPort || got.Password != cfg.Password {
		t.Errorf("a refused save changed the configuration: %s:%d", got.Host, got.Port)
	}

	evil.Set("_orig", "ui_inbox")
	resp = h.post(c, "/imap/test", evil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, why) {
		t.Errorf("test against a new server without the password: got %d %s, want 400 naming the password", resp.StatusCode, resp.Body)
	}
	if rec.Hits() != 0 || rec.Saw(cfg.Password) {
		t.Fatalf("the new server was contacted %d times (password seen: %v)", rec.Hits(), rec.Saw(cfg.Password))
	}

	same := formValues(cfg)
	same.Set("_orig", "ui_inbox")
	resp = h.post(c, "/imap/test", same)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, `"ok":true`) {
		t.Errorf("test with the stored password and the same server: got %d %s", resp.StatusCode, resp.Body)
	}
	same.Set("description", "edited")
	if resp := h.post(c, "/imap/ui_inbox", same); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("save with the same server: got %d, want 303", resp.StatusCode)
	}
	if got, _ := st.GetIMAP(ctx, "ui_inbox"); got.Description != "edited" || got.Password != cfg.Password {
		t.Errorf("save with the same server: got %q, password kept %v", got.Description, got.Password == cfg.Password)
	}
	if strings.Contains(h.logs.String(), cfg.Password) {
		t.Error("the log contains the password")
	}
}

// TestIMAPFormTestKeepsSignIn is the same attempt against a signed-in
// oauth2-delegated configuration: the Test button of its Edit panel with a
// new token URL, host or client id (and no client secret, or one of the
// attacker's choosing) tries the form as an unsaved configuration that
// nobody signed in to; the saved configuration's grant is used only while
// the destination is unchanged.
func TestIMAPFormTestKeepsSignIn(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient(signInClient)
	fake.SetSignInUser("owner@example.com")
	conf, err := h.ui.changes.CreateIMAP(ctx, "", delegatedInput("signed_box", "owner@example.com", fake), nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fake.Consent(ctx, nil, h.startSignIn(c, "signed_box"), true)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.callback(c, back); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: got %d %s", r.StatusCode, r.Body)
	}
	var mu sync.Mutex
	var tested []int64
	h.rt.TestWith = func(_ context.Context, c imapconf.Config) any {
		mu.Lock()
		tested = append(tested, c.ID)
		mu.Unlock()
		return map[string]any{"ok": false, "step": "token", "error": "stub"}
	}
	form := func(change func(v url.Values)) url.Values {
		v := formValues(conf)
		v.Set("_orig", "signed_box")
		v.Set("provider", conf.Provider)
		v.Set("clientId", conf.ClientID)
		v.Set("authUrl", conf.AuthURL)
		v.Set("tokenUrl", conf.TokenURL)
		v.Set("scope", conf.Scope)
		v.Set("clientSecret", "")
		change(v)
		return v
	}
	for _, tt := range []struct {
		what   string
		change func(v url.Values)
		want   int64
	}{
		{"unchanged", func(url.Values) {}, conf.ID},
		{"tokenUrl", func(v url.Values) { v.Set("tokenUrl", "http://127.0.0.1:1/token") }, 0},
		{"tokenUrl and a client secret", func(v url.Values) {
			v.Set("tokenUrl", "http://127.0.0.1:1/token")
			v.Set("clientSecret", "attacker-chosen")
		}, 0},
		{"host", func(v url.Values) { v.Set("host", "imap.evil.example") }, 0},
		{"clientId", func(v url.Values) { v.Set("clientId", "attacker-client") }, 0},
	} {
		mu.Lock()
		tested = nil
		mu.Unlock()
		r := h.post(c, "/imap/test", form(tt.change))
		mu.Lock()
		got := tested
		mu.Unlock()
		if r.StatusCode != http.StatusOK || len(got) != 1 || got[0] != tt.want {
			t.Errorf("test with %s: got %d %s, tested ids %v; want the id %d", tt.what, r.StatusCode, r.Body, got, tt.want)
		}
	}
}

// TestSignInPageEscapesAuthURL: the page that goes on to the provider
// carries the authorization URL in a link its script follows. An authUrl
// with quotes, markup or </script> cannot break out of the attribute, and
// one that is not http(s) (a configuration stored without Build's checks:
// javascript: or data: with a host) is never put on the page.
func TestSignInPageEscapesAuthURL(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	fake := oauthfake.New(t)
	hostile := `https://auth.example.com/a"b'c<d>/</script><script>alert(1)</script>?x="'><img src=x onerror=alert(1)>`
	in := delegatedInput("quoted_box", "owner@example.com", fake)
	in.AuthURL = p(hostile)
	if _, err := h.ui.changes.CreateIMAP(ctx, "", in, nil); err != nil {
		t.Fatalf("creating with authUrl %s: %v", hostile, err)
	}
	r := h.post(c, "/imap/quoted_box/signin", url.Values{})
	m := continueRE.FindStringSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("sign in: got %d %s", r.StatusCode, r.Body)
	}
	for _, bad := range []string{"<script>alert", "<img", "onerror=alert", `"b'c`} {
		if strings.Contains(r.Body, bad) {
			t.Errorf("the page holds %q unescaped: %s", bad, r.Body)
		}
	}
	if got := html.UnescapeString(m[1]); !strings.HasPrefix(got, "https://auth.example.com/") {
		t.Errorf("the link is %q, want the provider's https URL", got)
	}

	for i, scheme := range []string{"javascript://auth.example.com/%0aalert(1)", "data://auth.example.com/text/html,<script>alert(1)</script>",
		"JavaScript://auth.example.com/%0Aalert(1)"} {
		cfg, err := imapconf.Build(delegatedInput("raw_box", "owner@example.com", fake), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Name = "raw_box_" + strconv.Itoa(i)
		cfg.AuthURL = scheme // stored as is, past Build
		if err := st.CreateIMAP(ctx, &cfg); err != nil {
			t.Fatal(err)
		}
		r := h.post(c, "/imap/"+cfg.Name+"/signin", url.Values{})
		low := strings.ToLower(html.UnescapeString(r.Body))
		if strings.Contains(r.Body, "continue-signin") || strings.Contains(low, "javascript:") || strings.Contains(low, "data:") {
			t.Errorf("%s: got %d with a link to follow: %s", scheme, r.StatusCode, r.Body)
		}
	}
}

// TestSignInRequestHeaders: the Sign in button is a state change like any
// other: a cross-origin POST is refused before a sign-in is started. The
// callback's pages (its URL holds the code and state) send no Referer at
// all, and its redirect does not carry them on.
func TestSignInRequestHeaders(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient(signInClient)
	fake.SetSignInUser("owner@example.com")
	if _, err := h.ui.changes.CreateIMAP(ctx, "", delegatedInput("hdr_box", "owner@example.com", fake), nil); err != nil {
		t.Fatal(err)
	}
	for _, header := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Origin": "https://evil.example"},
	} {
		r := h.postWith(c, "/imap/hdr_box/signin", nil, header)
		if r.StatusCode != http.StatusForbidden || strings.Contains(r.Body, "continue-signin") {
			t.Errorf("cross-origin sign-in with %v: got %d, want 403", header, r.StatusCode)
		}
	}
	// A failed callback (an unknown state) and a completed one.
	r := h.get(c, "/oauth/callback?state=unknown-state&code=secret-code-value")
	if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" || r.StatusCode != http.StatusBadRequest {
		t.Errorf("failed callback: got %d, Referrer-Policy %q, want no-referrer", r.StatusCode, got)
	}
	back, err := fake.Consent(ctx, nil, h.startSignIn(c, "hdr_box"), true)
	if err != nil {
		t.Fatal(err)
	}
	r = h.callback(c, back)
	if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" || r.StatusCode != http.StatusSeeOther {
		t.Errorf("callback: got %d, Referrer-Policy %q, want no-referrer", r.StatusCode, got)
	}
	if loc := r.Header.Get("Location"); strings.Contains(loc, back.Query().Get("code")) || strings.Contains(loc, back.Query().Get("state")) {
		t.Errorf("the redirect after the callback carries the code or state: %s", loc)
	}
	for _, secret := range []string{"secret-code-value", back.Query().Get("code"), back.Query().Get("state")} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("the debug log holds a code or state …%s…", secret[:6])
		}
	}
}

// TestSignInCallbackUsesEgress: the code is exchanged (and the account
// looked up) through the client the service gives the UI, which applies the
// egress policy: with MAILTRIGGER_EGRESS=public a loopback token endpoint is
// refused, the provider never sees the code, and nothing is stored.
func TestSignInCallbackUsesEgress(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	c := loggedIn(t, h)
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient(signInClient)
	fake.SetSignInUser("owner@example.com")
	conf, err := h.ui.changes.CreateIMAP(ctx, "", delegatedInput("egress_box", "owner@example.com", fake), nil)
	if err != nil {
		t.Fatal(err)
	}
	fence, err := egress.Parse(egress.ModePublic, "")
	if err != nil {
		t.Fatal(err)
	}
	h.ui.hc = &http.Client{Transport: &http.Transport{DialContext: fence.Dialer()}}
	back, err := fake.Consent(ctx, nil, h.startSignIn(c, "egress_box"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := h.callback(c, back)
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "Nothing was stored") {
		t.Errorf("callback through a refusing egress policy: got %d %s", r.StatusCode, r.Body)
	}
	if n := fake.Counts().CodeGrants; n != 0 {
		t.Errorf("the token endpoint redeemed %d codes past the egress policy", n)
	}
	if _, err := st.GetOAuthGrant(ctx, conf.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("got a grant stored (%v)", err)
	}
}

// TestAlertSecretsStayOffPages: an alert subscription's signing secret is on
// the page that answers the change that set it and on no other page, and
// never in the log; a mailbox's password that reached its alert condition's
// error is not in the banner.
func TestAlertSecretsStayOffPages(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	s := seedData(t, st, h.status)
	c := loggedIn(t, h)
	ctx := context.Background()
	const given = "whsec_UGFnZS1BbGVydC1TZWNyZXQtVGFwaXItNzcxNw=="
	v := alertValues("given", "run.failed")
	v.Set("secret", given)
	if r := h.post(c, "/settings/alerts", v); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, given) {
		t.Fatalf("create: got %d, want the page showing the secret given", r.StatusCode)
	}
	if r := h.post(c, "/settings/alerts", alertValues("generated", "mailbox.auth_failed")); r.StatusCode != http.StatusOK {
		t.Fatalf("create: got %d", r.StatusCode)
	}
	gen, err := st.GetAlert(ctx, "generated")
	if err != nil {
		t.Fatal(err)
	}
	orders, _ := st.GetIMAP(ctx, "orders")
	// An error text that, against the rules, holds the mailbox's password.
	recordCondition(t, st, "mailbox:"+strconv.FormatInt(orders.ID, 10), "auth_failed",
		"login: LOGIN orders@example.com "+orders.Password+": [AUTHENTICATIONFAILED] Invalid credentials", time.Now())

	var pages []string
	for _, path := range []string{"/settings", "/settings/alerts/given", "/settings/alerts/generated", "/settings/alerts/given/delete", "/imap", "/flows"} {
		r := h.get(c, path)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: got %d", path, r.StatusCode)
		}
		pages = append(pages, r.Body)
	}
	for _, r := range []response{
		h.post(c, "/settings/alerts/given", alertValues("given", "runs.backlog")),
		h.post(c, "/settings/alerts/given/test", url.Values{}),
		h.post(c, "/settings/alerts/generated", func() url.Values { v := alertValues("generated", "x.y"); v.Set("secret", "whsec_bad"); return v }()),
		h.get(c, "/settings/alerts/given"),
	} {
		pages = append(pages, r.Body)
	}
	all := html.UnescapeString(strings.Join(pages, "\n"))
	if !strings.Contains(all, "Mailbox orders</a>: authentication failed") || !strings.Contains(all, "[redacted]") || !strings.Contains(all, "alert.test") {
		t.Fatal("the test saw no banner or no delivery")
	}
	logs := h.logs.String()
	for _, sec := range append([]string{given, gen.Secret, orders.Password}, s.Secrets...) {
		if sec == "" {
			continue
		}
		if strings.Contains(all, sec) {
			t.Errorf("a page contains the secret %q", sec)
		}
		if strings.Contains(logs, sec) {
			t.Errorf("the log contains the secret %q", sec)
		}
	}
}
