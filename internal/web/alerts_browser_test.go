package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// alertReceiver is a webhook endpoint for alerts: it answers the first
// request 204 and every other one 503, and keeps what it got.
type alertReceiver struct {
	url string
	mu  sync.Mutex
	in  []receivedAlert
}

type receivedAlert struct{ id, sig, body string }

func startAlertReceiver(t *testing.T) *alertReceiver {
	t.Helper()
	r := &alertReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.in = append(r.in, receivedAlert{id: req.Header.Get("webhook-id"), sig: req.Header.Get("webhook-signature"), body: string(body)})
		n := len(r.in)
		r.mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *alertReceiver) got() []receivedAlert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedAlert(nil), r.in...)
}

// TestBrowserAlerts drives Settings › Alerts in headless Chromium: a
// subscription created through the form (the kind switching its fields),
// its secret shown once, "Send test" queueing a delivery that the page
// lists with its status, attempts and error, and the banner that a failing
// mailbox puts on every page. It writes settings-alerts.png and
// alert-banner.png.
func TestBrowserAlerts(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	seedData(t, st, h.status)
	rec := startAlertReceiver(t)
	sctx, stop := context.WithCancel(context.Background())
	sender := alert.NewSender(alert.SenderDeps{Store: st, Options: alert.SenderOptions{PollInterval: 50 * time.Millisecond}})
	done := make(chan struct{})
	go func() { defer close(done); sender.Run(sctx) }()
	t.Cleanup(func() { stop(); <-done })
	ctx := tab(t, startBrowser(t))
	h.browserLogin(t, ctx)
	bg := context.Background()

	// Create, from the settings page.
	do(t, ctx, chromedp.Navigate(h.url+"/settings"))
	waitFor(t, ctx, "document.querySelector('#alerts') && document.querySelector('#alerts').innerText.includes('No alert subscription yet')")
	do(t, ctx, markPage(), chromedp.Click(chromedp.ID("create-alert")))
	// The kind shows its own fields (CSS alone, once the page has loaded).
	const vis = "(s => document.querySelector(s).checkVisibility())"
	waitFor(t, ctx, "newPage && location.pathname === '/settings/alerts/new' && document.readyState === 'complete'")
	waitFor(t, ctx, vis+"('#f-url') && !"+vis+"('#f-to')")
	do(t, ctx, chromedp.Click(chromedp.CSS("input[name=kind][value=email]")))
	waitFor(t, ctx, "!"+vis+"('#f-url') && !"+vis+"('#f-secret') && "+vis+"('#f-to')")
	do(t, ctx, chromedp.Click(chromedp.CSS("input[name=kind][value=webhook]")),
		chromedp.SendKeys(chromedp.ID("f-name"), "ops_pager"),
		chromedp.SendKeys(chromedp.ID("f-description"), "Pages the on-call engineer"),
		chromedp.SendKeys(chromedp.ID("f-url"), "ftp://hooks.example.com/mailtrigger"),
		chromedp.Click(chromedp.CSS("#ev-run\\.failed")),
		markPage(), chromedp.Click(chromedp.ID("save-alert")))
	waitFor(t, ctx, "newPage && document.querySelector('#e-url')")
	if got := textOf(t, ctx, ".error-summary"); !strings.Contains(got, "URL") {
		t.Errorf("error summary: got %q, want the URL named", got)
	}
	do(t, ctx, setValue("#f-url", rec.url+"/mailtrigger-alerts"), markPage(), chromedp.Click(chromedp.ID("save-alert")))
	waitFor(t, ctx, "newPage && document.querySelector('#new-secret')")
	secret := eval[string](t, ctx, "document.querySelector('#new-secret').value")
	a, err := st.GetAlert(bg, "ops_pager")
	if err != nil || a.Secret != secret || !strings.HasPrefix(secret, "whsec_") || len(a.Events) != 4 {
		t.Fatalf("created: got %+v (%v), page secret %q", a, err, secret)
	}
	if got := eval[string](t, ctx, "location.pathname"); got != "/settings/alerts/ops_pager" {
		t.Errorf("after create the address is %q, want the subscription's", got)
	}
	checkContrast(t, ctx, "alert created")

	// Send test: queued and listed.
	do(t, ctx, markPage(), chromedp.Click(chromedp.ID("send-test")))
	waitFor(t, ctx, "newPage && document.querySelector('tr[data-delivery]')")
	if eval[bool](t, ctx, "document.body.innerHTML.includes("+strconv.Quote(secret)+")") {
		t.Error("the page after the test shows the secret again")
	}
	if got := textOf(t, ctx, "tr[data-delivery]"); !strings.Contains(got, "alert.test") {
		t.Errorf("delivery row: got %q", got)
	}
	// The real sender delivers it to the receiver: the first test
	// answered 204 (delivered), the second 503 (retrying).
	waitDelivery := func(n int, status string) {
		t.Helper()
		testwait.Until(t, 20*time.Second, func() error {
			ds, err := st.ListAlertDeliveries(bg, "ops_pager", 0, 10)
			if err != nil {
				return err
			}
			if len(ds) != n || ds[0].Status != status {
				return fmt.Errorf("deliveries: %d, newest %+v", len(ds), ds[0])
			}
			return nil
		})
	}
	waitDelivery(1, store.RunDelivered)
	do(t, ctx, markPage(), chromedp.Click(chromedp.ID("send-test")))
	waitFor(t, ctx, "newPage && document.querySelectorAll('tr[data-delivery]').length === 2")
	waitDelivery(2, store.RunRetrying)
	if got := rec.got(); len(got) != 2 || !strings.HasPrefix(got[0].id, "alrt_") || !strings.HasPrefix(got[0].sig, "v1,") ||
		!strings.Contains(got[0].body, `"type":"alert.test"`) || !strings.Contains(got[0].body, `"test":true`) {
		t.Errorf("the receiver got %+v", got)
	}
	do(t, ctx, markPage(), chromedp.Reload())
	waitFor(t, ctx, "newPage && document.querySelectorAll('tr[data-delivery]').length === 2")
	rows := eval[[]string](t, ctx, "Array.from(document.querySelectorAll('tr[data-delivery]')).map(r => r.innerText)")
	if !strings.Contains(rows[0], "retrying") || !strings.Contains(rows[0], "HTTP 503") || !strings.Contains(rows[1], "delivered") {
		t.Errorf("deliveries, newest first: got %q", rows)
	}
	// The whole page, form and deliveries, in one picture.
	do(t, ctx, chromedp.EmulateViewport(1280, 1300), chromedp.Evaluate[chromedp.Void]("window.scrollTo(0, 0)"))
	screenshot(t, ctx, "settings-alerts")
	checkContrast(t, ctx, "alert deliveries")
	do(t, ctx, chromedp.EmulateViewport(1280, 800))

	// Listed on the settings page.
	do(t, ctx, chromedp.Navigate(h.url+"/settings"))
	waitFor(t, ctx, "document.querySelector('#alert-ops_pager')")

	// A mailbox's login refused: a banner on every page, linking to it.
	orders, _ := st.GetIMAP(bg, "orders")
	recordCondition(t, st, "mailbox:"+strconv.FormatInt(orders.ID, 10), "auth_failed",
		"login: authentication failed: [AUTHENTICATIONFAILED] Invalid credentials", time.Now().Add(-10*time.Minute))
	for _, path := range []string{"/flows", "/settings"} {
		do(t, ctx, chromedp.Navigate(h.url+path))
		waitFor(t, ctx, "document.querySelector('#alert-banner')")
		if got := textOf(t, ctx, "#alert-banner"); !strings.Contains(got, "Mailbox orders: authentication failed since") {
			t.Errorf("%s: banner %q", path, got)
		}
	}
	do(t, ctx, markPage(), chromedp.Click(chromedp.CSS("#alert-banner a")))
	waitFor(t, ctx, "newPage && location.pathname === '/imap/orders'")
	do(t, ctx, chromedp.Navigate(h.url+"/imap"))
	waitFor(t, ctx, "document.querySelector('#alert-banner') && document.querySelector('#imap-orders .card-since')")
	if got := textOf(t, ctx, "#imap-orders .card-since"); !strings.HasPrefix(got, "since ") {
		t.Errorf("the orders card: got %q, want since when", got)
	}
	screenshot(t, ctx, "alert-banner")
	checkContrast(t, ctx, "banner")

	// Recovered: the banner goes.
	recordCondition(t, st, "mailbox:"+strconv.FormatInt(orders.ID, 10), "ok", "", time.Now())
	do(t, ctx, chromedp.Navigate(h.url+"/imap"))
	waitFor(t, ctx, "document.querySelector('#imap-orders')")
	if visible(t, ctx, "#alert-banner") {
		t.Error("the banner stays after the mailbox recovered")
	}
}
