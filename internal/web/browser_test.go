package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// screenshotDir is where the browser tests write the README's screenshots:
// docs/screenshots when MAILTRIGGER_SCREENSHOTS=1 (make screenshots), else
// the test's temporary directory, so that a test run leaves the tree as it
// was; MAILTRIGGER_SHOTDIR names another directory (to look at a test's
// screenshots without changing docs/).
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("MAILTRIGGER_SHOTDIR"); d != "" {
		return d
	}
	if os.Getenv("MAILTRIGGER_SCREENSHOTS") == "1" {
		return "../../docs/screenshots"
	}
	return t.TempDir()
}

// chromium returns the path of Debian's chromium, failing the test when it
// is missing: the UI is always tested, never skipped.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the browser tests need Debian's headless Chromium; install it with: apt-get install chromium")
	return ""
}

// startBrowser starts a private headless Chromium (fresh profile, no
// network but loopback use) for the test's duration.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("force-device-scale-factor", "1"),
		// Headless Chromium has no mouse: CSS would see (hover: none). Tell
		// it there is one, as on a desktop.
		chromedp.Flag("blink-settings", "primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// tab opens a tab in a browser context of its own: its own cookies, so a
// fresh visitor.
func tab(t *testing.T, bctx context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v", js, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is true. It evaluates the
// expression again and again, so that a navigation in between (a form
// submitted, a redirect) is waited out.
func waitFor(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	const within = 20 * time.Second
	errFalse := errors.New("false")
	err := testwait.UntilErr(within, func() error {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool]("(()=>{try{const newPage=!window.__oldPage;return !!("+js+")}catch(e){return false}})()"))
		if err == nil && !ok {
			err = errFalse
		}
		return err
	})
	if err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("location.href + '\\n' + document.body.innerText"))
		t.Fatalf("browser: waiting for %s: not true within %v (last: %v)\npage: %s", js, within, err, body)
	}
}

// markPage marks the page, so that waitFor can tell the next one from it
// with the condition newPage.
func markPage() chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void]("window.__oldPage = true")
}

// setValue sets a field's value as typing would: with input and change events.
func setValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void]("(()=>{const e=document.querySelector(" + strconv.Quote(sel) + ");e.value=" +
		strconv.Quote(value) + ";e.dispatchEvent(new Event('input',{bubbles:true}));e.dispatchEvent(new Event('change',{bubbles:true}))})()")
}

func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return eval[string](t, ctx, "(document.querySelector("+strconv.Quote(sel)+")||{innerText:''}).innerText")
}

func visible(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	return eval[bool](t, ctx, "(()=>{const e=document.querySelector("+strconv.Quote(sel)+");return !!e && e.checkVisibility()})()")
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	// Let fonts, the panel's slide-in and the badges settle.
	do(t, ctx, chromedp.Sleep(300*time.Millisecond))
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := screenshotDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// panelShot takes a screenshot of the open panel scrolled to its Type
// field, so that it shows the type and the fields that follow from it.
func panelShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	do(t, ctx, chromedp.Evaluate[chromedp.Void](`(()=>{document.activeElement.blur(); const b=document.querySelector('.panel-body');
		b.scrollTop += document.querySelector('#f-type').closest('.field').getBoundingClientRect().top - b.getBoundingClientRect().top - 16})()`))
	screenshot(t, ctx, name)
}

func (h *harness) browserLogin(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(h.url+"/login"),
		chromedp.SendKeys(chromedp.ID("f-username"), adminName),
		chromedp.SendKeys(chromedp.ID("f-password"), adminPassword),
		chromedp.Click(chromedp.CSS("button[type=submit]")))
	waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('h1').innerText === 'IMAP'")
}

func cardSel(name string) string { return "#imap-" + name }

// TestBrowser drives the UI in headless Chromium through the acceptance
// points of the UI issue, on one server and one browser, and writes the
// screenshots under docs/screenshots.
func TestBrowser(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	s := seedData(t, st, h.status)
	dc := testenv.StartDovecot(t)
	mailbox := dc.AddUser(t, "helpdesk", "Dovecot-App-Pass-42")
	bctx := startBrowser(t)
	ctx := tab(t, bctx)
	h.browserLogin(t, ctx)
	bg := context.Background()

	t.Run("login and logout", func(t *testing.T) {
		c := tab(t, bctx)
		do(t, c, chromedp.Navigate(h.url+"/flows"))
		waitFor(t, c, "location.pathname === '/login'")
		do(t, c, chromedp.SendKeys(chromedp.ID("f-username"), adminName),
			chromedp.SendKeys(chromedp.ID("f-password"), "not-the-password"),
			chromedp.Click(chromedp.CSS("button[type=submit]")))
		waitFor(t, c, "document.body.innerText.includes('Wrong user name or password.')")
		do(t, c, chromedp.SendKeys(chromedp.ID("f-password"), adminPassword),
			chromedp.Click(chromedp.CSS("button[type=submit]")))
		// Back where the visitor wanted to go.
		waitFor(t, c, "location.pathname === '/flows'")
		do(t, c, chromedp.Click(chromedp.CSS(".topbar button[type=submit]")))
		waitFor(t, c, "location.pathname === '/login' && document.body.innerText.includes('You have logged out.')")
		do(t, c, chromedp.Navigate(h.url+"/imap"))
		waitFor(t, c, "location.pathname === '/login'")
	})

	t.Run("cards and live status", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"))
		waitFor(t, ctx, "document.querySelectorAll('.card').length === 5")
		for name, want := range map[string]string{"support_inbox": "Connected", "invoices_m365": "Syncing 40 / 120",
			"orders": "Auth failed", "legacy_pop": "Disabled"} {
			if got := textOf(t, ctx, cardSel(name)+" .badge-label"); got != want {
				t.Errorf("%s: got badge %q, want %q", name, got, want)
			}
		}
		if got := textOf(t, ctx, cardSel("invoices_m365")+" .card-facts"); !strings.Contains(got, "MS Graph API") {
			t.Errorf("got %q, want the type MS Graph API", got)
		}
		screenshot(t, ctx, "imap-cards")
		// The badge follows the watcher without a reload.
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("window.__same = 1"))
		h.status.set("orders", mustStatus("idle"))
		waitFor(t, ctx, "document.querySelector('#imap-orders .badge-label').innerText === 'Connected'")
		if !eval[bool](t, ctx, "window.__same === 1") {
			t.Error("the page reloaded to update the badge")
		}
	})

	t.Run("create with validation errors, type switch, test connection", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(".page-head a.btn.primary")))
		waitFor(t, ctx, "document.querySelector('dialog.panel[open]') && document.activeElement.id === 'f-name'")
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "support_gmail"),
			chromedp.SendKeys(chromedp.ID("f-description"), "Support mailbox on Google Workspace"),
			chromedp.SendKeys(chromedp.ID("f-host"), "imap.gmail.com"),
			chromedp.SendKeys(chromedp.ID("f-username"), "support@example.com"),
			chromedp.SendKeys(chromedp.ID("f-password"), "abcd efgh ijkl mnop"))
		if got := textOf(t, ctx, "#c-name"); got != "13 / 50" {
			t.Errorf("got counter %q, want 13 / 50", got)
		}
		// The type switch changes the fields.
		if !visible(t, ctx, "#f-host") || !visible(t, ctx, "#f-port") || !visible(t, ctx, "#f-password") || visible(t, ctx, "#f-tenantId") {
			t.Fatal("Generic: want Host Name, Port Number and Password shown and Tenant Id hidden")
		}
		panelShot(t, ctx, "imap-create-generic")
		do(t, ctx, setValue("#f-type", "msgraph"))
		if visible(t, ctx, "#f-host") || visible(t, ctx, "#f-password") || !visible(t, ctx, "#f-tenantId") ||
			!visible(t, ctx, "#f-clientId") || !visible(t, ctx, "#f-clientSecret") || !visible(t, ctx, "#f-g-username") {
			t.Fatal("MS Graph API: want User Name, Tenant Id, Client Id and Client Secret, and no Host Name or Password")
		}
		do(t, ctx, setValue("#f-name", "invoices_graph"), setValue("#f-description", "Vendor invoices in Microsoft 365"),
			chromedp.SendKeys(chromedp.ID("f-g-username"), "invoices@contoso.com"),
			chromedp.SendKeys(chromedp.ID("f-tenantId"), "contoso.onmicrosoft.com"),
			chromedp.SendKeys(chromedp.ID("f-clientId"), "11111111-2222-3333-4444-555555555555"),
			chromedp.SendKeys(chromedp.ID("f-clientSecret"), "client-secret-value"))
		panelShot(t, ctx, "imap-create-msgraph")
		do(t, ctx, setValue("#f-type", "generic"))

		long := strings.Repeat("a", 51)
		do(t, ctx, setValue("#f-name", ""), chromedp.SendKeys(chromedp.ID("f-name"), long))
		if got := textOf(t, ctx, "#c-name"); got != "51 / 50" || !eval[bool](t, ctx, "document.querySelector('#c-name').classList.contains('over')") {
			t.Errorf("got counter %q, want 51 / 50 marked over", got)
		}
		// A 51-character name: refused by the server's rules, shown at the field.
		do(t, ctx, chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('#e-name')")
		if got := textOf(t, ctx, "#e-name"); !strings.Contains(got, "at most 50 characters") {
			t.Errorf("got name error %q, want at most 50 characters", got)
		}
		if !eval[bool](t, ctx, "document.querySelector('#f-name').getAttribute('aria-invalid') === 'true'") {
			t.Error("the name field is not marked invalid")
		}
		// The typed password is not sent back; the rest of the form is.
		if got := eval[string](t, ctx, "document.querySelector('#f-password').value"); got != "" {
			t.Errorf("got the password %q back in the form", got)
		}
		if got := eval[string](t, ctx, "document.querySelector('#f-host').value"); got != "imap.gmail.com" {
			t.Errorf("got host %q kept, want imap.gmail.com", got)
		}
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur(); document.querySelector('.panel-body').scrollTop = 0"))
		screenshot(t, ctx, "imap-create-errors")
		// A name with a dash.
		do(t, ctx, setValue("#f-name", ""), chromedp.SendKeys(chromedp.ID("f-name"), "help-desk"),
			chromedp.SendKeys(chromedp.ID("f-password"), "abcd efgh ijkl mnop"), markPage(),
			chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]")))
		waitFor(t, ctx, "newPage && document.querySelector('#e-name') && document.querySelector('#f-name').value === 'help-desk'")
		if got := textOf(t, ctx, "#e-name"); !strings.Contains(got, "only letters, digits and underscore") {
			t.Errorf("got name error %q, want only letters, digits and underscore", got)
		}
		if n, _ := st.ListIMAP(bg, "", 100); len(n) != 5 {
			t.Fatalf("got %d configurations after refused creates, want 5", len(n))
		}

		// Test connection against the private Dovecot, then create.
		do(t, ctx, setValue("#f-name", "helpdesk"),
			setValue("#f-host", dc.Host),
			setValue("#f-port", strconv.Itoa(dc.IMAPSPort)),
			setValue("#f-username", mailbox),
			chromedp.SendKeys(chromedp.ID("f-password"), "wrong-password"),
			chromedp.Click(chromedp.CSS("details.advanced > summary")),
			setValue("#f-caCert", string(dc.CACertPEM)),
			chromedp.Click(chromedp.CSS("[data-test-connection]")))
		waitFor(t, ctx, "document.querySelector('#test-result').classList.contains('bad')")
		if got := textOf(t, ctx, "#test-result"); !strings.Contains(got, "login") {
			t.Errorf("wrong password: got %q, want a failure at the login step", got)
		}
		do(t, ctx, setValue("#f-password", "Dovecot-App-Pass-42"),
			chromedp.Click(chromedp.CSS("[data-test-connection]")))
		waitFor(t, ctx, "document.querySelector('#test-result').classList.contains('ok')")
		if got := textOf(t, ctx, "#test-result"); !strings.Contains(got, "Connected") || !strings.Contains(got, "IMAP4rev1") {
			t.Errorf("got %q, want Connected with the capabilities", got)
		}
		do(t, ctx, chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]")))
		waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('#imap-helpdesk')")
		if got := textOf(t, ctx, ".flash.ok"); !strings.Contains(got, "helpdesk created") {
			t.Errorf("got flash %q", got)
		}
		c, err := st.GetIMAP(bg, "helpdesk")
		if err != nil || c.Password != "Dovecot-App-Pass-42" || c.Port != dc.IMAPSPort || c.CACert == "" {
			t.Fatalf("got %+v, %v", c, err)
		}
	})

	t.Run("edit and save", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(cardSel("helpdesk")+" .card-title a")))
		waitFor(t, ctx, "document.querySelector('dialog.panel[open] #panel-title')")
		h.status.set("helpdesk", mustStatus("idle"))
		do(t, ctx, chromedp.Navigate(h.url+"/imap/support_inbox"))
		waitFor(t, ctx, "document.querySelector('dialog.panel[open] .chart')")
		screenshot(t, ctx, "imap-edit")
		do(t, ctx, chromedp.Navigate(h.url+"/imap/helpdesk"))
		waitFor(t, ctx, "document.querySelector('dialog.panel[open] #panel-title')")
		if got := textOf(t, ctx, "#h-password"); !strings.Contains(got, "A password is stored; leave empty to keep it while the server settings stay the same") {
			t.Errorf("got password hint %q", got)
		}
		if got := eval[string](t, ctx, "document.querySelector('#f-password').value"); got != "" {
			t.Errorf("got the stored password %q in the form", got)
		}
		// The saved configuration tests with its stored password.
		do(t, ctx, chromedp.Click(chromedp.CSS("[data-test-connection]")))
		waitFor(t, ctx, "document.querySelector('#test-result').classList.contains('ok')")
		// Another host: the stored password is not sent there; the
		// answer says why.
		do(t, ctx, setValue("#f-host", "localhost"), chromedp.Click(chromedp.CSS("[data-test-connection]")))
		waitFor(t, ctx, "document.querySelector('#test-result').innerText.includes('required again because host changed')")
		do(t, ctx, setValue("#f-host", dc.Host))
		do(t, ctx, setValue("#f-description", "Help desk, edited"),
			chromedp.Click(chromedp.CSS(".panel-foot button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('.flash.ok') && document.querySelector('.flash.ok').innerText.includes('helpdesk saved')")
		c, err := st.GetIMAP(bg, "helpdesk")
		if err != nil || c.Description != "Help desk, edited" || c.Password != "Dovecot-App-Pass-42" {
			t.Fatalf("got description %q, password kept %v, %v", c.Description, c.Password == "Dovecot-App-Pass-42", err)
		}
	})

	t.Run("three-dots menu", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.MouseEvent(chromedp.MouseMoved, 2, 790))
		sum := cardSel("helpdesk") + " details.more summary"
		if op := eval[string](t, ctx, "getComputedStyle(document.querySelector('"+sum+"')).opacity"); op != "0" {
			t.Errorf("got three dots opacity %s before hovering, want hidden", op)
		}
		// Hovering the card shows them.
		box := eval[[]float64](t, ctx, "(()=>{const r=document.querySelector('"+cardSel("helpdesk")+"').getBoundingClientRect();return [r.x+r.width/2,r.y+r.height/2]})()")
		do(t, ctx, chromedp.MouseEvent(chromedp.MouseMoved, box[0], box[1]))
		waitFor(t, ctx, "getComputedStyle(document.querySelector('"+sum+"')).opacity === '1'")
		// Keyboard: focus, Enter opens, the first item gets the focus, Escape closes.
		do(t, ctx, chromedp.Focus(chromedp.CSS(sum)), chromedp.KeyEvent("\r"))
		waitFor(t, ctx, "document.querySelector('"+cardSel("helpdesk")+" details.more').open")
		if got := textOf(t, ctx, cardSel("helpdesk")+" .menu"); !strings.Contains(got, "Duplicate") || !strings.Contains(got, "Delete") {
			t.Errorf("got menu %q, want Duplicate and Delete", got)
		}
		waitFor(t, ctx, "document.activeElement.innerText === 'Duplicate'")
		do(t, ctx, chromedp.KeyEvent("\u001b"))
		waitFor(t, ctx, "!document.querySelector('"+cardSel("helpdesk")+" details.more').open")
	})

	t.Run("duplicate", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(cardSel("helpdesk")+" details.more summary")),
			chromedp.Click(chromedp.CSS(cardSel("helpdesk")+" .menu a[href$='/duplicate']")))
		waitFor(t, ctx, "document.querySelector('dialog.confirm[open]') && document.activeElement.id === 'f-dup-password'")
		if !eval[bool](t, ctx, "document.querySelector('dialog.confirm [data-ok]').disabled") {
			t.Fatal("Ok is enabled with the password box empty")
		}
		screenshot(t, ctx, "imap-duplicate-dialog")
		// Ok refused: clicking it does nothing.
		do(t, ctx, chromedp.Click(chromedp.CSS("dialog.confirm [data-ok]")), chromedp.Sleep(200*time.Millisecond))
		if loc := eval[string](t, ctx, "location.pathname"); loc != "/imap/helpdesk/duplicate" {
			t.Fatalf("Ok without a password went to %s", loc)
		}
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-dup-password"), "Dovecot-App-Pass-42"))
		if eval[bool](t, ctx, "document.querySelector('dialog.confirm [data-ok]').disabled") {
			t.Fatal("Ok stays disabled with the password filled")
		}
		do(t, ctx, chromedp.Click(chromedp.CSS("dialog.confirm [data-ok]")))
		waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('#imap-helpdesk_copied')")
		if got := textOf(t, ctx, ".flash.ok"); !strings.Contains(got, "Duplicated helpdesk as helpdesk_copied") {
			t.Errorf("got flash %q", got)
		}
		if got := eval[string](t, ctx, "document.querySelector('#imap-helpdesk_copied .switch').getAttribute('aria-checked')"); got != "false" {
			t.Errorf("got the copy's switch %s, want false (disabled)", got)
		}
		if got := textOf(t, ctx, cardSel("helpdesk_copied")+" .badge-label"); got != "Disabled" {
			t.Errorf("got the copy's badge %q, want Disabled", got)
		}
		c, err := st.GetIMAP(bg, "helpdesk_copied")
		if err != nil || c.Enabled || c.Password != "Dovecot-App-Pass-42" {
			t.Fatalf("got copy enabled %v, %v", c.Enabled, err)
		}
		// The server refuses an empty password too (a browser without the script).
		resp := h.post(loggedIn(t, h), "/imap/helpdesk/duplicate", nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "a copy does not take the original&#39;s password") {
			t.Errorf("POST without a password: got %d", resp.StatusCode)
		}
	})

	t.Run("enable toggle", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(cardSel("helpdesk_copied")+" .switch")))
		waitFor(t, ctx, "document.querySelector('#imap-helpdesk_copied .switch').getAttribute('aria-checked') === 'true'")
		if c, _ := st.GetIMAP(bg, "helpdesk_copied"); !c.Enabled {
			t.Error("the switch did not enable the configuration")
		}
		do(t, ctx, chromedp.Click(chromedp.CSS(cardSel("helpdesk_copied")+" .switch")))
		waitFor(t, ctx, "document.querySelector('#imap-helpdesk_copied .switch').getAttribute('aria-checked') === 'false'")
	})

	t.Run("delete with cancel then ok", func(t *testing.T) {
		openDelete := func() {
			do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(cardSel("helpdesk_copied")+" details.more summary")),
				chromedp.Click(chromedp.CSS(cardSel("helpdesk_copied")+" .menu a.danger")))
			waitFor(t, ctx, "document.querySelector('dialog.confirm[open]')")
		}
		openDelete()
		if got := textOf(t, ctx, "dialog.confirm h2"); got != "Delete helpdesk_copied?" {
			t.Errorf("got %q", got)
		}
		do(t, ctx, chromedp.Click(chromedp.CSS("dialog.confirm [data-cancel]")))
		waitFor(t, ctx, "location.pathname === '/imap' && !document.querySelector('dialog[open]')")
		if _, err := st.GetIMAP(bg, "helpdesk_copied"); err != nil {
			t.Fatalf("Cancel deleted it: %v", err)
		}
		// Escape cancels too.
		openDelete()
		do(t, ctx, chromedp.KeyEvent("\u001b"))
		waitFor(t, ctx, "location.pathname === '/imap' && !document.querySelector('dialog[open]')")
		openDelete()
		do(t, ctx, chromedp.Click(chromedp.CSS("dialog.confirm [data-ok]")))
		waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('.flash.ok') && !document.querySelector('#imap-helpdesk_copied')")
		if _, err := st.GetIMAP(bg, "helpdesk_copied"); err == nil {
			t.Fatal("Ok did not delete it")
		}
	})

	t.Run("delete refused while a flow uses it", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/imap"), chromedp.Click(chromedp.CSS(cardSel("support_inbox")+" details.more summary")),
			chromedp.Click(chromedp.CSS(cardSel("support_inbox")+" .menu a.danger")))
		waitFor(t, ctx, "document.querySelector('dialog.confirm[open]')")
		if got := textOf(t, ctx, "dialog.confirm"); !strings.Contains(got, "cannot be deleted") ||
			!strings.Contains(got, "invoice_to_erp") || !strings.Contains(got, "support_tickets") {
			t.Errorf("got dialog %q, want the flows listed", got)
		}
		if eval[bool](t, ctx, "!!document.querySelector('dialog.confirm [data-ok]')") {
			t.Error("the dialog offers Ok although flows use the configuration")
		}
		// The server refuses as well.
		resp := h.post(loggedIn(t, h), "/imap/support_inbox/delete", nil)
		if resp.StatusCode != http.StatusConflict || !strings.Contains(resp.Body, "invoice_to_erp") {
			t.Errorf("POST delete: got %d, want 409 listing the flows", resp.StatusCode)
		}
		if _, err := st.GetIMAP(bg, "support_inbox"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("flow editor", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/flows"), chromedp.Click(chromedp.CSS("a[href='/flows/invoice_to_erp']")))
		waitFor(t, ctx, "document.querySelector('#f-testSubject')")
		do(t, ctx, chromedp.SendKeys(chromedp.ID("f-testSubject"), "RE: invoice 2024-117 from Initech"))
		waitFor(t, ctx, "document.querySelector('#match-result').classList.contains('yes')")
		if got := textOf(t, ctx, "#match-result"); !strings.Contains(got, "Would start this flow") {
			t.Errorf("got %q", got)
		}
		if got := eval[string](t, ctx, "document.querySelector('#f-act-0-secret').value"); got != "" {
			t.Errorf("got the webhook secret %q in the form", got)
		}
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.activeElement.blur(); window.scrollTo(0, 0)"))
		screenshot(t, ctx, "flow-editor")
		do(t, ctx, setValue("#f-match", "exact"))
		waitFor(t, ctx, "document.querySelector('#match-result').classList.contains('no')")
		do(t, ctx, setValue("#f-match", "regex"), setValue("#f-subject", "(unclosed"))
		waitFor(t, ctx, "document.querySelector('#match-result').classList.contains('bad')")

		// A new flow gets a generated secret, shown once.
		do(t, ctx, chromedp.Navigate(h.url+"/flows/new"),
			chromedp.SendKeys(chromedp.ID("f-name"), "ticket_flow"),
			setValue("#f-imap", "helpdesk"),
			chromedp.SendKeys(chromedp.ID("f-subject"), "Ticket"),
			chromedp.SendKeys(chromedp.ID("f-act-0-url"), "https://hooks.example.com/tickets"),
			chromedp.Click(chromedp.CSS(".form-actions button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('.secret-box input')")
		secret := eval[string](t, ctx, "document.querySelector('.secret-box input').value")
		fr, err := st.GetFlow(bg, "ticket_flow")
		if err != nil || len(fr.Secrets) != 1 || fr.Secrets[0] != secret || !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("got secret %q shown, stored %v, %v", secret, fr.Secrets, err)
		}
		do(t, ctx, chromedp.Navigate(h.url+"/flows/ticket_flow"))
		waitFor(t, ctx, "document.querySelector('#f-name')")
		if eval[bool](t, ctx, "document.documentElement.outerHTML.includes("+strconv.Quote(secret)+")") {
			t.Error("the flow page shows the secret again")
		}
	})

	t.Run("runs and messages", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/runs"))
		waitFor(t, ctx, "document.querySelector('table')")
		screenshot(t, ctx, "runs")
		do(t, ctx, chromedp.Navigate(h.url+"/messages?imap=support_inbox"))
		waitFor(t, ctx, "document.querySelector('table')")
		screenshot(t, ctx, "messages")
		do(t, ctx, chromedp.Navigate(h.url+"/runs?status=retrying"))
		waitFor(t, ctx, "document.querySelector('table')")
		if got := textOf(t, ctx, "tbody"); !strings.Contains(got, s.RunID) || strings.Contains(got, "delivered") {
			t.Errorf("retrying filter: got %q", got)
		}
		do(t, ctx, chromedp.Click(chromedp.CSS("a[href='/runs/"+s.RunID+"']")))
		waitFor(t, ctx, "location.pathname === '/runs/"+s.RunID+"' && document.readyState === 'complete' && document.querySelector('main h1')")
		if got := textOf(t, ctx, "main"); !strings.Contains(got, "HTTP 503") || !strings.Contains(got, "context deadline exceeded") {
			t.Errorf("run detail: got %q, want both attempts", got)
		}
		screenshot(t, ctx, "run-detail")
		do(t, ctx, chromedp.Click(chromedp.CSS(".page-head button[type=submit]")))
		waitFor(t, ctx, "document.querySelector('.flash.ok') && document.querySelector('.flash.ok').innerText.includes('queued')")

		do(t, ctx, chromedp.Navigate(h.url+fmt.Sprintf("/messages/%d", s.Message)))
		waitFor(t, ctx, "document.querySelector('.verdicts')")
		if got := textOf(t, ctx, ".verdicts"); !strings.Contains(got, "invoice_to_erp") || !strings.Contains(got, "does not contain") {
			t.Errorf("got verdicts %q, want a match and a reason for the other flow", got)
		}
		screenshot(t, ctx, "message-detail")
		do(t, ctx, chromedp.Click(chromedp.CSS(".retrigger input[name=force]")), chromedp.Click(chromedp.CSS(".retrigger button")))
		waitFor(t, ctx, "document.querySelector('.flash.ok') && document.querySelector('.flash.ok').innerText.includes('1 run started')")
		raw := eval[string](t, ctx, "document.querySelector('a[href$=\"/raw\"]').getAttribute('href')")
		resp := h.get(loggedIn(t, h), raw)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, "Subject: Invoice 2024-113") {
			t.Errorf("raw download: got %d", resp.StatusCode)
		}
	})

	t.Run("settings", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(h.url+"/settings"), chromedp.SendKeys(chromedp.ID("f-token-name"), "deploy_bot"),
			chromedp.Click(chromedp.CSS(".inline-form button")))
		waitFor(t, ctx, "document.querySelector('#new-token')")
		tok := eval[string](t, ctx, "document.querySelector('#new-token').value")
		if !strings.HasPrefix(tok, "mt_") {
			t.Fatalf("got token %q", tok)
		}
		do(t, ctx, chromedp.Navigate(h.url+"/settings"), chromedp.Click(chromedp.CSS("a[href='/settings/tokens/deploy_bot/revoke']")))
		waitFor(t, ctx, "document.querySelector('dialog.confirm[open]')")
		do(t, ctx, chromedp.Click(chromedp.CSS("dialog.confirm [data-ok]")))
		waitFor(t, ctx, "document.querySelector('.flash.ok') && document.querySelector('.flash.ok').innerText.includes('revoked')")
		// The replicas serving the database, the one answering marked.
		do(t, ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('#replicas').scrollIntoView()`))
		if !visible(t, ctx, "#replicas table") || !strings.Contains(eval[string](t, ctx, "document.querySelector('#replicas').innerText"), "(this one)") {
			t.Error("the settings page does not show the replicas")
		}
		screenshot(t, ctx, "settings-replicas")
	})

	t.Run("cross-origin post refused", func(t *testing.T) {
		// A page on another origin (another port: same site, other origin)
		// posts a form to the UI while the user is logged in there.
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<form id="f" method="post" action="%s/imap/orders/delete"></form><script>document.getElementById('f').submit()</script>`, h.url)
		}))
		defer evil.Close()
		do(t, ctx, chromedp.Navigate(evil.URL))
		waitFor(t, ctx, "location.pathname === '/imap/orders/delete' && document.body.innerText.includes('cross-origin request refused')")
		if _, err := st.GetIMAP(bg, "orders"); err != nil {
			t.Fatalf("the cross-origin post deleted the configuration: %v", err)
		}
	})

	t.Run("phone width", func(t *testing.T) {
		c := tab(t, bctx)
		h.browserLogin(t, c)
		do(t, c, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch), chromedp.Navigate(h.url+"/imap"))
		waitFor(t, c, "document.querySelector('.card')")
		if w := eval[float64](t, c, "document.documentElement.scrollWidth"); w > 390 {
			wide := eval[string](t, c, "Array.from(document.querySelectorAll('body *')).filter(e=>e.getBoundingClientRect().right>390).map(e=>e.tagName+'.'+e.className+':'+e.getBoundingClientRect().right).join('\\n')")
			t.Errorf("the cards page is %v px wide at 390 px: it scrolls sideways:\n%s", w, wide)
		}
		// The three dots show without hovering, and the panel fills the screen.
		if op := eval[string](t, c, "getComputedStyle(document.querySelector('.card details.more summary')).opacity"); op != "1" {
			t.Errorf("got the three dots' opacity %s on a touch screen, want 1", op)
		}
		screenshot(t, c, "imap-cards-phone")
		do(t, c, chromedp.Navigate(h.url+"/imap/new"))
		waitFor(t, c, "document.querySelector('dialog.panel[open]')")
		if w := eval[float64](t, c, "document.querySelector('dialog.panel').getBoundingClientRect().width"); w > 390 {
			t.Errorf("got a panel %v px wide on a 390 px screen", w)
		}
		screenshot(t, c, "imap-create-phone")
	})
}

// loggedIn returns an HTTP client logged in as admin.
func loggedIn(t *testing.T, h *harness) *http.Client {
	t.Helper()
	c := h.client()
	h.login(c)
	return c
}
