package web

import (
	"context"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// polish is the browser of TestBrowserPolish: one server with the seed data,
// a desktop tab and a phone tab (390×844, touch), both logged in.
type polish struct {
	h           *harness
	st          *store.Store
	s           seed
	bctx        context.Context
	desk, phone context.Context
}

func newPolish(t *testing.T) *polish {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	s := seedData(t, st, h.status)
	bctx := startBrowser(t)
	desk := tab(t, bctx)
	h.browserLogin(t, desk)
	phone := tab(t, bctx)
	h.browserLogin(t, phone)
	do(t, phone, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	return &polish{h: h, st: st, s: s, bctx: bctx, desk: desk, phone: phone}
}

// expireSessions ends every session: the admin's password hash changes (the
// same password, another salt), so that each session's fingerprint no
// longer matches, as after an expiry.
func (p *polish) expireSessions(t *testing.T) {
	t.Helper()
	hash, err := auth.HashPassword(adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.st.SetUserPassword(context.Background(), adminName, hash); err != nil {
		t.Fatal(err)
	}
}

// openCreate opens the Create IMAP panel from the cards page.
func openCreate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(url+"/imap"))
	waitFor(t, ctx, "document.querySelector('.page-head a.btn.primary')")
	do(t, ctx, chromedp.Click(chromedp.CSS(".page-head a.btn.primary")))
	waitFor(t, ctx, "document.querySelector('dialog.panel[open]') && document.activeElement.id === 'f-name'")
}

// key presses keys (chromedp's key names: "\t", "\r", "\u001b" …) one at a
// time, as a keyboard does.
func key(t *testing.T, ctx context.Context, keys ...string) {
	t.Helper()
	for _, k := range keys {
		do(t, ctx, chromedp.KeyEvent(k))
	}
}

// TestBrowserPolish drives the fixes of the UI polish issue (16), one
// subtest per numbered point, on the desktop and on a phone, with the
// keyboard where it applies.
func TestBrowserPolish(t *testing.T) {
	p := newPolish(t)
	h := p.h

	t.Run("1 discard changes only when typed", func(t *testing.T) {
		ctx := p.desk
		// Nothing typed: Escape closes at once.
		openCreate(t, ctx, h.url)
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "location.pathname === '/imap' && !document.querySelector('dialog[open]')")
		// Typed, keyboard only: Escape asks; Enter on "Keep editing" keeps the panel and the text.
		openCreate(t, ctx, h.url)
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "half_typed"))
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "document.querySelector('#discard-dialog[open]') && document.activeElement.matches('#discard-dialog [data-keep]')")
		if got := textOf(t, ctx, "#discard-dialog h2"); got != "Discard changes?" {
			t.Errorf("got dialog %q", got)
		}
		key(t, ctx, "\r")
		waitFor(t, ctx, "!document.querySelector('#discard-dialog') && document.querySelector('dialog.panel[open]')")
		if got := eval[string](t, ctx, "document.querySelector('#f-name').value"); got != "half_typed" {
			t.Errorf("got name %q after Keep editing", got)
		}
		// The backdrop and × ask too.
		do(t, ctx, chromedp.MouseClickXY(20, 400))
		waitFor(t, ctx, "document.querySelector('#discard-dialog[open]')")
		do(t, ctx, chromedp.Click(chromedp.CSS("#discard-dialog [data-keep]")))
		waitFor(t, ctx, "!document.querySelector('#discard-dialog')")
		do(t, ctx, chromedp.Click(chromedp.CSS(".panel-head a[data-cancel]")))
		waitFor(t, ctx, "document.querySelector('#discard-dialog[open]')")
		// Tab to Discard, Enter: the panel closes.
		key(t, ctx, "\t", "\r")
		waitFor(t, ctx, "location.pathname === '/imap' && !document.querySelector('dialog[open]')")

		// On a phone, × with something typed asks as well.
		openCreate(t, p.phone, h.url)
		do(t, p.phone, chromedp.SendKeys(chromedp.ID("f-host"), "imap.example.org"))
		do(t, p.phone, chromedp.Click(chromedp.CSS(".panel-head a[data-cancel]")))
		waitFor(t, p.phone, "document.querySelector('#discard-dialog[open]')")
		if w := eval[float64](t, p.phone, "document.querySelector('#discard-dialog').getBoundingClientRect().right"); w > 390 {
			t.Errorf("the discard dialog reaches %v px on a 390 px screen", w)
		}
		do(t, p.phone, chromedp.Click(chromedp.CSS("#discard-dialog [data-discard]")))
		waitFor(t, p.phone, "location.pathname === '/imap' && !document.querySelector('dialog[open]')")
	})

	t.Run("1 session expired keeps what was typed", func(t *testing.T) {
		ctx := p.desk
		openCreate(t, ctx, h.url)
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "after_expiry"),
			chromedp.SendKeys(chromedp.ID("f-description"), "typed before the session expired"),
			chromedp.SendKeys(chromedp.ID("f-host"), "imap.example.org"),
			chromedp.SendKeys(chromedp.ID("f-username"), "late@example.org"),
			chromedp.SendKeys(chromedp.ID("f-password"), "typed-password"))
		// The phone's tab waits on a blank page: its polling would meet the
		// expired session.
		do(t, p.phone, chromedp.Navigate("about:blank"))
		p.expireSessions(t)
		// Create; or the cards' status polling behind the panel met the
		// expired session first: either way the login keeps what was typed.
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("(()=>{const b=document.querySelector('.panel-foot button[type=submit]');if(b)b.click()})()"))
		waitFor(t, ctx, "location.pathname === '/login' && document.body.innerText.includes('Your session expired')")
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-username"), adminName),
			chromedp.SendKeys(chromedp.ID("f-password"), adminPassword),
			chromedp.Click(chromedp.CSS("button[type=submit]")))
		waitFor(t, ctx, "location.pathname === '/imap/new' && document.querySelector('#restored-note')")
		for id, want := range map[string]string{"f-name": "after_expiry", "f-description": "typed before the session expired",
			"f-host": "imap.example.org", "f-username": "late@example.org", "f-password": ""} {
			if got := eval[string](t, ctx, "document.getElementById('"+id+"').value"); got != want {
				t.Errorf("%s: got %q after the login, want %q", id, got, want)
			}
		}
		if got := textOf(t, ctx, "#restored-note"); !strings.Contains(got, "session had expired") || !strings.Contains(got, "password") {
			t.Errorf("got note %q", got)
		}
		if eval[string](t, ctx, "location.hash") != "" {
			t.Error("the #restore-draft mark stays in the address")
		}
		// What was restored counts as typed: Escape asks.
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "document.querySelector('#discard-dialog[open]')")
		do(t, ctx, chromedp.Click(chromedp.CSS("#discard-dialog [data-discard]")))
		waitFor(t, ctx, "location.pathname === '/imap'")
		if _, err := p.st.GetIMAP(context.Background(), "after_expiry"); err == nil {
			t.Error("the form sent with an expired session was saved")
		}
		// The phone tab's session expired too: log it in again.
		h.browserLogin(t, p.phone)
	})

	t.Run("2 test connection result by the button", func(t *testing.T) {
		closed := closedPort(t)
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			openCreate(t, ctx, h.url)
			do(t, ctx, chromedp.SendKeys(chromedp.ID("f-host"), "127.0.0.1"), setValue("#f-port", closed),
				chromedp.SendKeys(chromedp.ID("f-username"), "nobody@example.org"),
				chromedp.SendKeys(chromedp.ID("f-password"), "some-password"),
				chromedp.Evaluate[chromedp.Void]("document.querySelector('.panel-body').scrollTop = 0"))
			// Keyboard: focus the button, Enter.
			do(t, ctx, chromedp.Focus(chromedp.CSS("[data-test-connection]")))
			key(t, ctx, "\r")
			waitFor(t, ctx, "document.querySelector('#test-result').classList.contains('bad')")
			if got := eval[string](t, ctx, "document.querySelector('#test-result').getAttribute('aria-live')"); got != "polite" {
				t.Errorf("%s: got aria-live %q", c.name, got)
			}
			// In sight with the panel scrolled to its top, right by the button.
			r := eval[[]float64](t, ctx, `(()=>{const o=document.querySelector('#test-result').getBoundingClientRect(),
				b=document.querySelector('[data-test-connection]').getBoundingClientRect();
				return [o.top, o.bottom, b.top, b.bottom, innerHeight]})()`)
			if r[0] < 0 || r[1] > r[4] {
				t.Errorf("%s: the result is at %v..%v, outside the window (height %v)", c.name, r[0], r[1], r[4])
			}
			if gap := r[2] - r[1]; gap < 0 || gap > 24 {
				t.Errorf("%s: the result ends %v px above the button, want right above it", c.name, gap)
			}
			if !eval[bool](t, ctx, "document.activeElement.matches('[data-test-connection]')") {
				t.Errorf("%s: the button lost the focus while testing", c.name)
			}
			if c.name == "phone" {
				screenshot(t, ctx, "imap-test-result-phone")
			} else {
				screenshot(t, ctx, "imap-test-result")
			}
			do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		}
	})

	t.Run("3 flow errors in the labels' words, every field outlined", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			do(t, ctx, chromedp.Navigate(h.url+"/flows/new"))
			waitFor(t, ctx, "document.querySelector('#f-name')")
			do(t, ctx, chromedp.Click(chromedp.CSS(".form-actions button[type=submit]")))
			waitFor(t, ctx, "document.querySelector('.error-summary')")
			got := eval[[]string](t, ctx, "Array.from(document.querySelectorAll('.error-summary li a')).map(a=>a.innerText)")
			want := []string{"Name", "IMAP", "Subject", "Webhook 1: URL"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%s: got summary %q, want %q", c.name, got, want)
			}
			if s := textOf(t, ctx, ".error-summary"); strings.Contains(s, "act-0") || strings.Contains(s, "Activities") ||
				strings.Contains(s, "imap:") || strings.Contains(s, "subject:") {
				t.Errorf("%s: the summary names internal fields: %q", c.name, s)
			}
			// Every field the summary names is outlined in red.
			bad := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('.error-summary li a')).map(a=>{
				const f=document.getElementById(a.getAttribute('href').slice(1));
				if(!f) return a.innerText+': no field';
				if(f.getAttribute('aria-invalid')!=='true') return a.innerText+': not aria-invalid';
				if(getComputedStyle(f).borderTopColor!=='rgb(220, 38, 38)') return a.innerText+': border '+getComputedStyle(f).borderTopColor;
				return ''}).filter(x=>x)`)
			if len(bad) > 0 {
				t.Errorf("%s: fields not outlined: %q", c.name, bad)
			}
			// The summary's link goes to the URL box.
			do(t, ctx, chromedp.Click(chromedp.CSS(".error-summary a[href='#f-act-0-url']")))
			waitFor(t, ctx, "document.activeElement.id === 'f-act-0-url'")
			if c.name == "phone" {
				screenshot(t, ctx, "flow-errors-phone")
			} else {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("window.scrollTo(0,0)"))
				screenshot(t, ctx, "flow-errors")
			}
		}
	})

	t.Run("4 typed password listed, stale required messages cleared", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			openCreate(t, ctx, h.url)
			// Keyboard only: Name left empty, the rest typed.
			do(t, ctx, chromedp.SendKeys(chromedp.ID("f-host"), "imap.example.org"),
				chromedp.SendKeys(chromedp.ID("f-username"), "someone@example.org"),
				chromedp.SendKeys(chromedp.ID("f-password"), "typed-password-1"),
				chromedp.Focus(chromedp.CSS(".panel-foot button[type=submit]")))
			key(t, ctx, "\r")
			waitFor(t, ctx, "document.querySelector('.error-summary') && document.querySelector('#e-name')")
			sum := textOf(t, ctx, ".error-summary")
			if !strings.Contains(sum, "Name: required") || !strings.Contains(sum, "Password: type it again") {
				t.Errorf("%s: got summary %q, want Name and the password to type again", c.name, sum)
			}
			if !eval[bool](t, ctx, "document.querySelector('#f-password').getAttribute('aria-invalid') === 'true'") {
				t.Errorf("%s: the password box is not marked", c.name)
			}
			if c.name == "desktop" {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur(); document.querySelector('.panel-body').scrollTop = 0"))
				screenshot(t, ctx, "imap-create-errors-password")
			}
			// Filled: the marks go, field by field.
			do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "filled_now"))
			if visible(t, ctx, "#e-name") || eval[bool](t, ctx, "document.querySelector('#f-name').hasAttribute('aria-invalid')") {
				t.Errorf("%s: the name's required message stays once it is filled", c.name)
			}
			if got := textOf(t, ctx, ".error-summary"); strings.Contains(got, "Name") || !strings.Contains(got, "1 field needs attention") {
				t.Errorf("%s: got summary %q after filling the name", c.name, got)
			}
			do(t, ctx, chromedp.SendKeys(chromedp.ID("f-password"), "typed-password-1"))
			if visible(t, ctx, ".error-summary") || visible(t, ctx, "#e-password") {
				t.Errorf("%s: the summary or the password's message stays once it is typed again", c.name)
			}
			do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		}
	})

	t.Run("5 status texts current, once, in the UI's words", func(t *testing.T) {
		now := time.Now().UTC()
		errAt, retry, authRetry := now.Add(-time.Minute), now.Add(3*time.Minute+30*time.Second), now.Add(10*time.Minute+30*time.Second)
		h.status.set("orders", imapconf.Status{State: imapconf.StateIdle, Since: now, LastErrorAt: &errAt,
			LastError: "login: authentication failed: [AUTHENTICATIONFAILED] Invalid credentials"})
		h.status.set("support_inbox", imapconf.Status{State: imapconf.StateError, Since: now, LastErrorAt: &errAt, RetryAt: &retry,
			LastError: "tls: tls: failed to verify certificate: x509: certificate signed by unknown authority " +
				"(the server's certificate is not signed by a trusted authority; to trust a private CA, set caCert)"})
		h.status.set("oauth_gmail", imapconf.Status{State: imapconf.StateAuthFailed, Since: now, LastErrorAt: &errAt, RetryAt: &authRetry,
			LastError: "token: token endpoint answered HTTP 401: invalid_client"})
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			// Connected again: no old error.
			do(t, ctx, chromedp.Navigate(h.url+"/imap/orders"))
			waitFor(t, ctx, "document.querySelector('.status-box')")
			if got := textOf(t, ctx, ".status-box"); strings.Contains(got, "Last error") || strings.Contains(got, "Invalid credentials") {
				t.Errorf("%s: connected, but the status box shows the old error: %q", c.name, got)
			}
			// Failing: the error once, without the doubled prefix, in the form's words, with the real next try.
			do(t, ctx, chromedp.Navigate(h.url+"/imap/support_inbox"))
			waitFor(t, ctx, "document.querySelector('.status-box')")
			box := textOf(t, ctx, ".status-box")
			if n := strings.Count(box, "failed to verify certificate"); n != 1 {
				t.Errorf("%s: the error shows %d times in the status box: %q", c.name, n, box)
			}
			if strings.Contains(box, "tls: tls:") || strings.Contains(box, "caCert") || !strings.Contains(box, "Trusted CA certificates") {
				t.Errorf("%s: got %q, want one tls: and the field's label", c.name, box)
			}
			if !regexp.MustCompile(`Next try in [23] min`).MatchString(box) {
				t.Errorf("%s: got %q, want the next try from the backoff (in 3 min)", c.name, box)
			}
			if c.name == "desktop" {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur()"))
				screenshot(t, ctx, "imap-edit-status-error")
			}
			do(t, ctx, chromedp.Navigate(h.url+"/imap/oauth_gmail"))
			waitFor(t, ctx, "document.querySelector('.status-box')")
			box = textOf(t, ctx, ".status-box")
			if strings.Contains(box, "5 minutes") || !regexp.MustCompile(`Next try in 1[01] min`).MatchString(box) ||
				!strings.Contains(box, "Client Id and Client Secret") {
				t.Errorf("%s: got %q, want the next try in 10 min and the OAuth2 fields named", c.name, box)
			}
		}
	})

	t.Run("6 phone menu, footer, tables", func(t *testing.T) {
		ctx := p.phone
		do(t, ctx, chromedp.Navigate(h.url+"/flows"))
		waitFor(t, ctx, "document.querySelector('[data-nav-toggle]')")
		// The flows table fits the screen (a card per flow): the page does
		// not scroll sideways, so the menu opened over it fits too.
		if w := eval[float64](t, ctx, "document.documentElement.scrollWidth"); w > 390 {
			t.Errorf("the flows page is %v px wide on a 390 px phone", w)
		}
		// The nav takes no room until opened: the page starts right below the top bar.
		if top := eval[float64](t, ctx, "document.querySelector('main').getBoundingClientRect().top"); top > 60 {
			t.Errorf("the page starts %v px down on a phone, want right below the top bar", top)
		}
		if visible(t, ctx, "#sidebar") {
			t.Error("the navigation shows before the menu is opened")
		}
		// Keyboard: the menu button opens every section, in the screen; Escape closes it.
		do(t, ctx, chromedp.Focus(chromedp.CSS("[data-nav-toggle]")))
		key(t, ctx, "\r")
		waitFor(t, ctx, "document.querySelector('[data-nav-toggle]').getAttribute('aria-expanded') === 'true'")
		off := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#sidebar .nav-link')).filter(a=>{const r=a.getBoundingClientRect();
			return !a.checkVisibility() || r.left<0 || r.right>innerWidth || r.bottom>innerHeight}).map(a=>a.innerText)`)
		if n := eval[int](t, ctx, "document.querySelectorAll('#sidebar .nav-link').length"); n != 5 || len(off) > 0 {
			t.Errorf("got %d sections, these out of sight: %q", n, off)
		}
		screenshot(t, ctx, "nav-menu-phone")
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "!document.querySelector('#sidebar').checkVisibility() && document.activeElement.matches('[data-nav-toggle]')")
		// A tap on a section goes there.
		do(t, ctx, chromedp.Click(chromedp.CSS("[data-nav-toggle]")), chromedp.Click(chromedp.CSS("#sidebar a[href='/messages']")))
		waitFor(t, ctx, "location.pathname === '/messages'")

		// The panel's footer: Save never alone on its row.
		for _, path := range []string{"/imap/new", "/imap/support_inbox"} {
			do(t, ctx, chromedp.Navigate(h.url+path))
			waitFor(t, ctx, "document.querySelector('dialog.panel[open]') && document.querySelector('dialog.panel').getAnimations().length === 0")
			r := eval[[]float64](t, ctx, `(()=>{const s=document.querySelector('.panel-foot button[type=submit]').getBoundingClientRect(),
				c=document.querySelector('.panel-foot a[data-cancel]').getBoundingClientRect(); return [s.top, c.top, s.right]})()`)
			tc := eval[float64](t, ctx, "document.querySelector('[data-test-connection]').getBoundingClientRect().top")
			if r[0] != r[1] || r[2] > 390 || tc >= r[0] {
				t.Errorf("%s: Test connection at top %v, Save at %v, Cancel at %v (Save's right %v): want Save and Cancel on one row in the screen, Test connection above", path, tc, r[0], r[1], r[2])
			}
			if path == "/imap/support_inbox" {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur()"))
				screenshot(t, ctx, "imap-edit-phone")
			}
		}

		// Runs and messages: cards, with Status and Subject in the screen.
		for _, c := range []struct{ path, sel, shot string }{
			{"/runs", "tbody tr:first-child .badge", "runs-phone"},
			{"/messages", "tbody tr:first-child td[data-label=Subject] a", "messages-phone"},
		} {
			do(t, ctx, chromedp.Navigate(h.url+c.path))
			waitFor(t, ctx, "document.querySelector('tbody tr')")
			if w := eval[[]float64](t, ctx, "(()=>{const w=document.querySelector('.table-wrap');return [w.scrollWidth,w.clientWidth]})()"); w[0] > w[1] {
				t.Errorf("%s: the table is %v px wide in %v px: it scrolls sideways", c.path, w[0], w[1])
			}
			if r := eval[[]float64](t, ctx, "(()=>{const r=document.querySelector("+strconv.Quote(c.sel)+").getBoundingClientRect();return [r.left,r.right]})()"); r[0] < 0 || r[1] > 390 {
				t.Errorf("%s: %s is at %v..%v px, out of the 390 px screen", c.path, c.sel, r[0], r[1])
			}
			screenshot(t, ctx, c.shot)
		}
	})

	t.Run("7 focus back on the opener, kept on the switch", func(t *testing.T) {
		ctx := p.desk
		do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		waitFor(t, ctx, "document.querySelector('#more-orders')")
		// Keyboard: the three dots, Enter, Duplicate, Enter; Escape closes the dialog.
		do(t, ctx, chromedp.Focus(chromedp.ID("more-orders")))
		key(t, ctx, "\r")
		waitFor(t, ctx, "document.activeElement.innerText === 'Duplicate'")
		key(t, ctx, "\r")
		waitFor(t, ctx, "location.pathname === '/imap/orders/duplicate' && document.querySelector('dialog.confirm[open]')")
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "location.pathname === '/imap' && document.activeElement.id === 'more-orders'")
		// The card's name opens the Edit panel; × goes back to it.
		do(t, ctx, chromedp.Focus(chromedp.ID("open-orders")))
		key(t, ctx, "\r")
		waitFor(t, ctx, "location.pathname === '/imap/orders' && document.querySelector('dialog.panel[open]')")
		key(t, ctx, "\u001b")
		waitFor(t, ctx, "location.pathname === '/imap' && document.activeElement.id === 'open-orders'")
		// Create New, by a click on a phone; × goes back to it.
		do(t, p.phone, chromedp.Navigate(h.url+"/imap"))
		waitFor(t, p.phone, "document.querySelector('#create-imap')")
		do(t, p.phone, chromedp.Click(chromedp.ID("create-imap")))
		waitFor(t, p.phone, "document.querySelector('dialog.panel[open]')")
		do(t, p.phone, chromedp.Click(chromedp.CSS(".panel-head a[data-cancel]")))
		waitFor(t, p.phone, "location.pathname === '/imap' && document.activeElement.id === 'create-imap'")

		// The switch: Space toggles it in place; the focus stays, the page is not reloaded.
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("window.__same = 1"), chromedp.Focus(chromedp.ID("switch-legacy_pop")))
		key(t, ctx, " ")
		waitFor(t, ctx, "document.querySelector('#switch-legacy_pop').getAttribute('aria-checked') === 'true'")
		if c, _ := p.st.GetIMAP(context.Background(), "legacy_pop"); !c.Enabled {
			t.Error("the switch did not enable the configuration")
		}
		if !eval[bool](t, ctx, "window.__same === 1 && document.activeElement.id === 'switch-legacy_pop'") {
			t.Error("the page reloaded or the switch lost the focus")
		}
		waitFor(t, ctx, "document.querySelector('#live').innerText.includes('legacy_pop enabled')")
		if eval[bool](t, ctx, "document.querySelector('#imap-legacy_pop').classList.contains('is-disabled')") {
			t.Error("the card still looks disabled")
		}
		key(t, ctx, " ")
		waitFor(t, ctx, "document.querySelector('#switch-legacy_pop').getAttribute('aria-checked') === 'false' && document.activeElement.id === 'switch-legacy_pop'")
		if c, _ := p.st.GetIMAP(context.Background(), "legacy_pop"); c.Enabled {
			t.Error("the switch did not disable the configuration")
		}
	})

	t.Run("8 fields only where they apply", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			do(t, ctx, chromedp.Navigate(h.url+"/imap"))
			waitFor(t, ctx, "document.querySelector('#imap-invoices_m365')")
			if got := textOf(t, ctx, "#imap-invoices_m365 .card-facts"); strings.Contains(got, "Server type") || strings.Contains(got, "IMAPS") {
				t.Errorf("%s: the Graph card says %q", c.name, got)
			}
			if got := textOf(t, ctx, "#imap-legacy_pop .card-facts"); !strings.Contains(got, "POP3S") {
				t.Errorf("%s: the POP3 card says %q, want its server type", c.name, got)
			}
			openCreate(t, ctx, h.url)
			do(t, ctx, setValue("#f-type", "msgraph"))
			if visible(t, ctx, "#f-serverType") {
				t.Errorf("%s: MS Graph API shows the Server Type choice", c.name)
			}
			do(t, ctx, setValue("#f-type", "generic"), chromedp.Click(chromedp.CSS("details.advanced > summary")),
				setValue("#f-afterProcessing", "move"))
			if !visible(t, ctx, "#f-moveTo") {
				t.Fatalf("%s: Move shows no folder box", c.name)
			}
			// Keyboard: from Imaps, the right arrow chooses Pop3s.
			do(t, ctx, chromedp.Focus(chromedp.CSS("input[name=serverType][value=imaps]")))
			key(t, ctx, kb.ArrowRight)
			waitFor(t, ctx, "document.querySelector('input[name=serverType][value=pop3s]').checked")
			offered := eval[[]string](t, ctx, "Array.from(document.querySelectorAll('#f-afterProcessing option')).filter(o=>!o.hidden&&!o.disabled).map(o=>o.value)")
			if strings.Join(offered, ",") != "none,delete" {
				t.Errorf("%s: POP3 offers %q after processing, want none and delete", c.name, offered)
			}
			if got := eval[string](t, ctx, "document.querySelector('#f-afterProcessing').value"); got != "none" || visible(t, ctx, "#f-moveTo") {
				t.Errorf("%s: got %q with the folder box shown %v, want none and no folder box", c.name, got, visible(t, ctx, "#f-moveTo"))
			}
			if c.name == "desktop" {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur(); document.querySelector('#f-afterProcessing').scrollIntoView({block:'center'})"))
				screenshot(t, ctx, "imap-create-pop3")
			}
			// Back to Imaps: both are offered again.
			do(t, ctx, chromedp.Click(chromedp.CSS("input[name=serverType][value=imaps]")))
			if n := eval[int](t, ctx, "Array.from(document.querySelectorAll('#f-afterProcessing option')).filter(o=>!o.hidden&&!o.disabled).length"); n != 4 {
				t.Errorf("%s: IMAPS offers %d choices after processing, want 4", c.name, n)
			}
			do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		}
	})

	t.Run("9 status reason on the card", func(t *testing.T) {
		now := time.Now().UTC()
		h.status.set("support_inbox", mustStatus(imapconf.StateIdle))
		h.status.set("orders", imapconf.Status{State: imapconf.StateAuthFailed, Since: now, LastErrorAt: &now,
			LastError: "login: authentication failed: [AUTHENTICATIONFAILED] Invalid credentials"})
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.MouseEvent(chromedp.MouseMoved, 1, 1))
			waitFor(t, ctx, "document.querySelector('#imap-orders')")
			if !visible(t, ctx, "#imap-orders .card-reason") {
				t.Fatalf("%s: the reason is not on the card", c.name)
			}
			if got := textOf(t, ctx, "#imap-orders .card-reason"); !strings.Contains(got, "refused the login") || !strings.Contains(got, "Invalid credentials") {
				t.Errorf("%s: got reason %q", c.name, got)
			}
			if visible(t, ctx, "#imap-support_inbox .card-reason") {
				t.Errorf("%s: a connected card shows a reason", c.name)
			}
			if c.name == "phone" {
				do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.querySelector('#imap-orders').scrollIntoView()"))
				screenshot(t, ctx, "imap-cards-reason-phone")
			}
		}
		// Connected again: the reason goes without a reload.
		h.status.set("orders", mustStatus(imapconf.StateIdle))
		waitFor(t, p.desk, "!document.querySelector('#imap-orders .card-reason').checkVisibility()")
	})

	t.Run("10 runs with subject, times to the second", func(t *testing.T) {
		seconds := regexp.MustCompile(`\d:\d\d:\d\d`)
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			ctx := c.ctx
			do(t, ctx, chromedp.Navigate(h.url+"/runs"))
			waitFor(t, ctx, "document.querySelector('tbody tr')")
			row := "document.querySelector('a[href=\"/runs/" + p.s.RunID + "\"]').closest('tr')"
			if got := eval[string](t, ctx, row+".innerText"); !strings.Contains(got, "Invoice 2024-113 from Acme GmbH") {
				t.Errorf("%s: the run's row has no subject: %q", c.name, got)
			}
			when := eval[[]string](t, ctx, "(()=>{const t="+row+".querySelector('time');return [t.innerText, t.title]})()")
			if !regexp.MustCompile(`^(just now|\d+ s ago|\d+ min ago)$`).MatchString(when[0]) || !seconds.MatchString(when[1]) {
				t.Errorf("%s: got created %q (hover %q), want it relative with the exact time to the second on hover", c.name, when[0], when[1])
			}
			if c.name == "desktop" {
				screenshot(t, ctx, "runs")
			}
			// The run's attempts: to the second, so two in one minute differ.
			do(t, ctx, chromedp.Navigate(h.url+"/runs/"+p.s.RunID))
			waitFor(t, ctx, "document.querySelectorAll('tbody time').length === 2")
			ts := eval[[]string](t, ctx, "Array.from(document.querySelectorAll('tbody time')).map(t=>t.innerText)")
			if !seconds.MatchString(ts[0]) || !seconds.MatchString(ts[1]) || ts[0] == ts[1] {
				t.Errorf("%s: got attempt times %q, want them to the second", c.name, ts)
			}
		}
	})

	t.Run("11 post/redirect/get", func(t *testing.T) {
		ctx := p.desk
		bg := context.Background()
		reload := func() {
			t.Helper()
			do(t, ctx, markPage(), chromedp.Reload())
			waitFor(t, ctx, "newPage && document.readyState === 'complete'")
		}
		// A new flow: its editor at its own address; a reload does not send it again.
		do(t, ctx, chromedp.Navigate(h.url+"/flows/new"),
			chromedp.SendKeys(chromedp.ID("f-name"), "prg_flow"), setValue("#f-imap", "orders"),
			chromedp.SendKeys(chromedp.ID("f-subject"), "Order"),
			chromedp.SendKeys(chromedp.ID("f-act-0-url"), "https://hooks.example.com/orders"),
			chromedp.Click(chromedp.CSS(".form-actions button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('.secret-box input') && location.pathname === '/flows/prg_flow'")
		reload()
		if visible(t, ctx, ".secret-box") || visible(t, ctx, ".error-summary") || !strings.Contains(textOf(t, ctx, "h1"), "prg_flow") {
			t.Errorf("reloading the new flow: got %q", textOf(t, ctx, "main"))
		}
		// A refused create: at /imap/new; a reload shows the empty form, nothing sent.
		openCreate(t, ctx, h.url)
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "bad-name"), chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('.error-summary') && location.pathname === '/imap/new'")
		reload()
		if visible(t, ctx, ".error-summary") || !visible(t, ctx, "dialog.panel") {
			t.Error("reloading a refused create sent it again")
		}
		// A new token: /settings; a reload neither shows it again nor sends the form.
		do(t, ctx, chromedp.Navigate(h.url+"/settings"), chromedp.SendKeys(chromedp.ID("f-token-name"), "prg_token"),
			chromedp.Click(chromedp.CSS(".inline-form button")))
		waitFor(t, ctx, "document.querySelector('#new-token') && location.pathname === '/settings'")
		reload()
		if visible(t, ctx, "#new-token") || visible(t, ctx, "#e-token-name") {
			t.Error("reloading after creating a token shows it again or sent the form again")
		}
		if toks, _ := p.st.ListTokens(bg); len(toks) != 1 {
			t.Errorf("got %d tokens, want 1", len(toks))
		}
	})

	t.Run("12 contrast of every page, desktop and phone", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			for _, pg := range contrastPages(p) {
				if pg.path == "" {
					lt := tab(t, p.bctx)
					do(t, lt, chromedp.Navigate(h.url+"/login"))
					waitFor(t, lt, "document.querySelector('#f-username')")
					checkContrast(t, lt, c.name+" "+pg.name)
					continue
				}
				do(t, c.ctx, chromedp.Navigate(h.url+pg.path))
				waitFor(t, c.ctx, "document.readyState === 'complete'")
				if len(pg.steps) > 0 {
					do(t, c.ctx, pg.steps...)
				}
				waitFor(t, c.ctx, pg.ready)
				// The panel's slide-in (its opacity) over.
				do(t, c.ctx, chromedp.Sleep(300*time.Millisecond))
				waitFor(t, c.ctx, "!Array.from(document.querySelectorAll('dialog')).some(d=>d.getAnimations().length)")
				checkContrast(t, c.ctx, c.name+" "+pg.name)
			}
		}
	})

	t.Run("12 names, copies, chart, reasons, breadcrumbs, same mailbox", func(t *testing.T) {
		ctx := p.desk
		bg := context.Background()
		mk := func(in imapconf.Input) {
			t.Helper()
			c, err := imapconf.Build(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.st.CreateIMAP(bg, &c); err != nil {
				t.Fatal(err)
			}
		}
		long := "mailbox_of_the_accounts_payable_team_in_hamburg_de"
		mk(imapconf.Input{Name: ptr(long), Enabled: ptr(false), Host: ptr("imap.example.de"), Port: ptr(993),
			Username: ptr("ap@example.de"), Password: ptr("Long-Name-Pass-1")})
		mk(imapconf.Input{Name: ptr("orders_copied"), Enabled: ptr(false), Host: ptr("imap.example.net"), Port: ptr(993),
			Username: ptr("other@example.net"), Password: ptr("Copied-Pass-2")})
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"desktop", p.desk}, {"phone", p.phone}} {
			do(t, c.ctx, chromedp.Navigate(h.url+"/imap"))
			waitFor(t, c.ctx, "document.querySelector('#imap-"+long+"')")
			// A long name wraps inside its card, whole, on three lines at most; the card is as wide as the others.
			r := eval[[]float64](t, c.ctx, `(()=>{const a=document.querySelector('#imap-`+long+` .card-title a'),lh=parseFloat(getComputedStyle(a).lineHeight)||20;
				return [a.scrollWidth-a.clientWidth, a.getBoundingClientRect().height/lh, document.querySelector('#imap-`+long+`').getBoundingClientRect().width,
				document.querySelector('#imap-orders').getBoundingClientRect().width]})()`)
			if r[0] > 0 || r[1] > 3.1 || math.Abs(r[2]-r[3]) > 1 {
				t.Errorf("%s: long name: overflows by %v px, %v lines, card %v px wide against %v", c.name, r[0], r[1], r[2], r[3])
			}
			if c.name == "desktop" {
				screenshot(t, c.ctx, "imap-cards")
			} else {
				screenshot(t, c.ctx, "imap-cards-phone")
			}
		}

		// The Duplicate dialog names the copy's real name.
		do(t, ctx, chromedp.Navigate(h.url+"/imap/orders/duplicate"))
		waitFor(t, ctx, "document.querySelector('dialog.confirm[open]')")
		if got := textOf(t, ctx, "dialog.confirm"); !strings.Contains(got, "named orders_copied_2.") {
			t.Errorf("got dialog %q, want the copy named orders_copied_2", got)
		}
		screenshot(t, ctx, "imap-duplicate-dialog")
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-dup-password"), "Seed-Orders-App-Pass-1d4e"),
			chromedp.Click(chromedp.CSS("dialog.confirm [data-ok]")))
		waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('#imap-orders_copied_2')")

		// Enabled next to orders, the copy reads the same mailbox: both cards say so.
		do(t, ctx, chromedp.Focus(chromedp.ID("switch-orders_copied_2")))
		key(t, ctx, " ")
		waitFor(t, ctx, "document.querySelector('#imap-orders_copied_2 .card-warn')")
		if got := textOf(t, ctx, "#imap-orders_copied_2 .card-warn"); !strings.Contains(got, "same mailbox as orders") {
			t.Errorf("got warning %q", got)
		}
		if got := textOf(t, ctx, "#live"); !strings.Contains(got, "same mailbox") {
			t.Errorf("the change was announced as %q, without the warning", got)
		}
		do(t, ctx, chromedp.Reload())
		waitFor(t, ctx, "document.querySelector('#imap-orders .card-warn')")
		if got := textOf(t, ctx, "#imap-orders .card-warn"); !strings.Contains(got, "orders_copied_2") {
			t.Errorf("got warning on orders %q", got)
		}
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.querySelector('#imap-orders_copied_2').scrollIntoView({block:'center'})"))
		screenshot(t, ctx, "imap-same-mailbox")
		do(t, ctx, chromedp.Click(chromedp.ID("switch-orders_copied_2")))
		waitFor(t, ctx, "!document.querySelector('#imap-orders_copied_2 .card-warn')")
		do(t, ctx, chromedp.Reload())
		waitFor(t, ctx, "document.querySelector('#imap-orders')")
		if visible(t, ctx, ".card-warn") {
			t.Error("a warning stays with the copy disabled")
		}

		// An empty chart says so; a disabled mailbox has no "since —".
		do(t, ctx, chromedp.Navigate(h.url+"/imap/legacy_pop"))
		waitFor(t, ctx, "document.querySelector('.status-box')")
		if got := textOf(t, ctx, ".status-box"); !strings.Contains(got, "No messages in the last 24 hours") || strings.Contains(got, "since —") {
			t.Errorf("got status box %q", got)
		}
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur()"))
		screenshot(t, ctx, "imap-edit-empty-chart")

		// Match reasons without Go's escapes.
		do(t, ctx, chromedp.Navigate(h.url+"/flows/invoice_to_erp"))
		waitFor(t, ctx, "document.querySelector('#f-testSubject')")
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-testSubject"), `Re: "Quoted" offer`))
		waitFor(t, ctx, "document.querySelector('#match-result').classList.contains('no')")
		if got := textOf(t, ctx, "#match-result"); strings.Contains(got, `\"`) || !strings.Contains(got, `“Re: "Quoted" offer”`) {
			t.Errorf("got reason %q", got)
		}

		// Breadcrumbs: the navigation's path to the section, the same on its list and detail pages.
		for path, want := range map[string]string{
			"/imap": "Management/Configuration Management/IMAP", "/imap/orders": "Management/Configuration Management/IMAP",
			"/flows": "Automation/Process Flows", "/flows/invoice_to_erp": "Automation/Process Flows", "/flows/new": "Automation/Process Flows",
			"/runs": "Automation/Runs", "/runs/" + p.s.RunID: "Automation/Runs",
			"/messages": "Automation/Messages", "/messages/" + itoa(p.s.Message): "Automation/Messages",
			"/settings": "Administration/Settings",
		} {
			do(t, ctx, chromedp.Navigate(h.url+path))
			waitFor(t, ctx, "document.readyState === 'complete'")
			if got := eval[string](t, ctx, "Array.from(document.querySelectorAll('.crumbs li')).map(l=>l.innerText).join('/')"); got != want {
				t.Errorf("%s: got breadcrumbs %q, want %q", path, got, want)
			}
		}
		// One wording for the buttons that start something new.
		do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		waitFor(t, ctx, "document.querySelector('.page-head a.btn.primary')")
		imapNew := textOf(t, ctx, ".page-head a.btn.primary")
		do(t, ctx, chromedp.Navigate(h.url+"/flows"))
		waitFor(t, ctx, "document.querySelector('.page-head a.btn.primary')")
		flowNew := textOf(t, ctx, ".page-head a.btn.primary")
		if !strings.HasPrefix(imapNew, "New ") || !strings.HasPrefix(flowNew, "New ") {
			t.Errorf("got %q and %q, want both to start with New", imapNew, flowNew)
		}
	})
}

// closedPort returns a local port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return strconv.Itoa(port)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ptr[T any](v T) *T { return &v }
