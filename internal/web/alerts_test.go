package web

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// alertValues is the alert form as a browser submits it.
func alertValues(name string, events ...string) url.Values {
	return url.Values{"name": {name}, "kind": {"webhook"}, "url": {"https://hooks.example.com/alerts"}, "to": {""},
		"secret": {""}, "enabled": {"on"}, "events": events}
}

// recordCondition records key's condition as the alert monitor does.
func recordCondition(t *testing.T, st *store.Store, key, cond, errText string, since time.Time) {
	t.Helper()
	_, _, err := st.SwapAlertCondition(context.Background(), key, cond, errText, func(prev string) (store.AlertEvent, bool) {
		return store.AlertEvent{Type: "mailbox." + cond, ObjectKind: "mailbox", ObjectName: key, Previous: prev, Current: cond,
			Error: errText, Since: since, OccurredAt: since}, cond != "ok"
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAlertPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, false)
		c := loggedIn(t, h)
		ctx := context.Background()

		if r := h.get(c, "/settings"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `id="alerts"`) ||
			!strings.Contains(r.Body, "No alert subscription yet") || !strings.Contains(r.Body, `href="/settings/alerts/new"`) {
			t.Fatalf("settings: got %d without the alerts section", r.StatusCode)
		}
		if r := h.get(c, "/settings/alerts"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/settings#alerts" {
			t.Errorf("GET /settings/alerts: got %d to %q, want the settings' alerts", r.StatusCode, r.Header.Get("Location"))
		}
		if r := h.get(c, "/settings/alerts/new"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `value="mailbox.auth_failed" id="ev-mailbox.auth_failed" checked`) {
			t.Fatalf("new: got %d %s", r.StatusCode, r.Body)
		}

		// Refused: every field named by the form, nothing stored.
		bad := alertValues("ops")
		bad.Set("url", "ftp://hooks.example.com/")
		r := h.post(c, "/settings/alerts", bad)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, `id="e-url"`) || !strings.Contains(r.Body, `id="e-events"`) ||
			!strings.Contains(r.Body, `value="ftp://hooks.example.com/"`) {
			t.Errorf("bad form: got %d %s", r.StatusCode, r.Body)
		}
		bad = alertValues("ops", "mailbox.auth_failed", "nope.nope")
		if r := h.post(c, "/settings/alerts", bad); r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "event 2: unknown event type") {
			t.Errorf("unknown event: got %d", r.StatusCode)
		}
		if _, err := st.GetAlert(ctx, "ops"); err == nil {
			t.Fatal("a refused form was stored")
		}

		// Created: the generated secret is shown once, in this answer.
		r = h.post(c, "/settings/alerts", alertValues("ops", "mailbox.auth_failed", "run.failed"))
		a, err := st.GetAlert(ctx, "ops")
		if err != nil {
			t.Fatalf("create: got %d, %v", r.StatusCode, err)
		}
		if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `id="new-secret"`) || strings.Count(html.UnescapeString(r.Body), a.Secret) != 1 ||
			!strings.Contains(r.Body, `data-canonical="/settings/alerts/ops"`) {
			t.Errorf("create: got %d, want the page with the secret once", r.StatusCode)
		}
		for _, path := range []string{"/settings", "/settings/alerts/ops", "/imap"} {
			if r := h.get(c, path); r.StatusCode != http.StatusOK || strings.Contains(html.UnescapeString(r.Body), a.Secret) {
				t.Errorf("%s: got %d, secret shown", path, r.StatusCode)
			}
		}
		if r := h.get(c, "/settings"); !strings.Contains(r.Body, `href="/settings/alerts/ops"`) || !strings.Contains(r.Body, "https://hooks.example.com/alerts") {
			t.Error("settings does not list the subscription")
		}

		// Edited without a secret: kept, not shown, redirected.
		edit := alertValues("ops", "run.failed")
		edit.Del("enabled")
		if r := h.post(c, "/settings/alerts/ops", edit); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/settings/alerts/ops" {
			t.Errorf("edit: got %d to %q", r.StatusCode, r.Header.Get("Location"))
		}
		if b, _ := st.GetAlert(ctx, "ops"); b.Secret != a.Secret || b.Enabled || len(b.Events) != 1 {
			t.Errorf("edit: got %+v", b)
		}
		// Rotated: a new one shown once.
		edit.Set("rotate", "on")
		r = h.post(c, "/settings/alerts/ops", edit)
		b, _ := st.GetAlert(ctx, "ops")
		if r.StatusCode != http.StatusOK || b.Secret == a.Secret || !strings.Contains(html.UnescapeString(r.Body), b.Secret) {
			t.Errorf("rotate: got %d", r.StatusCode)
		}
		// Another path on the same host: kept, redirected. Another host:
		// the stored secret is not carried there; a new one, shown once.
		edit.Del("rotate")
		edit.Set("url", "https://hooks.example.com/other")
		if r := h.post(c, "/settings/alerts/ops", edit); r.StatusCode != http.StatusSeeOther {
			t.Errorf("same host: got %d, want a redirect", r.StatusCode)
		}
		if c, _ := st.GetAlert(ctx, "ops"); c.Secret != b.Secret {
			t.Error("same host: the stored secret was not kept")
		}
		edit.Set("url", "https://elsewhere.example.net/alerts")
		r = h.post(c, "/settings/alerts/ops", edit)
		moved, _ := st.GetAlert(ctx, "ops")
		if r.StatusCode != http.StatusOK || moved.Secret == b.Secret || !strings.Contains(r.Body, `id="new-secret"`) ||
			!strings.Contains(html.UnescapeString(r.Body), moved.Secret) {
			t.Errorf("another host: got %d, stored secret kept %v; want a new secret shown", r.StatusCode, moved.Secret == b.Secret)
		}

		// E-mail, recipients one a line.
		mail := url.Values{"name": {"mail_ops"}, "kind": {"email"}, "url": {"https://ignored.example"}, "to": {"ops@example.com\r\noncall@example.com"},
			"events": {"runs.backlog"}, "enabled": {"on"}}
		if r := h.post(c, "/settings/alerts", mail); r.StatusCode != http.StatusSeeOther {
			t.Errorf("email: got %d %s", r.StatusCode, r.Body)
		}
		if m, err := st.GetAlert(ctx, "mail_ops"); err != nil || len(m.To) != 2 || m.URL != "" || m.Secret != "" {
			t.Errorf("email: got %+v, %v", m, err)
		}
		mail.Set("name", "mail_bad")
		mail.Set("to", "ops@example.com, not-an-address")
		if r := h.post(c, "/settings/alerts", mail); r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "address 2: must be an e-mail address") {
			t.Errorf("email with a bad address: got %d", r.StatusCode)
		}

		// Send test: queued, listed with its status and attempts.
		r = h.post(c, "/settings/alerts/ops/test", url.Values{})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/settings/alerts/ops#deliveries" {
			t.Fatalf("test: got %d to %q", r.StatusCode, r.Header.Get("Location"))
		}
		ds, err := st.ListAlertDeliveries(ctx, "ops", 0, 10)
		if err != nil || len(ds) != 1 || ds[0].Event.Type != "alert.test" {
			t.Fatalf("test: deliveries %+v, %v", ds, err)
		}
		r = h.get(c, "/settings/alerts/ops")
		if !strings.Contains(r.Body, `data-delivery="`+ds[0].PublicID+`"`) || !strings.Contains(r.Body, "queued as "+ds[0].PublicID) {
			t.Errorf("the page does not list the delivery %s", ds[0].PublicID)
		}

		// Delete, confirmed.
		if r := h.get(c, "/settings/alerts/ops/delete"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "Delete alert subscription ops?") {
			t.Errorf("delete dialog: got %d", r.StatusCode)
		}
		if r := h.post(c, "/settings/alerts/ops/delete", url.Values{}); r.StatusCode != http.StatusSeeOther {
			t.Errorf("delete: got %d", r.StatusCode)
		}
		if r := h.get(c, "/settings/alerts/ops"); r.StatusCode != http.StatusNotFound {
			t.Errorf("after delete: got %d", r.StatusCode)
		}
		if !strings.Contains(h.logs.String(), "alert subscription created") || !strings.Contains(h.logs.String(), "user=admin") {
			t.Error("the changes were not logged with the user")
		}
	})
}

func TestAlertBanner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, false)
		seedData(t, st, h.status)
		c := loggedIn(t, h)
		ctx := context.Background()
		if r := h.get(c, "/flows"); strings.Contains(r.Body, "alert-banner") {
			t.Fatal("a banner with every mailbox well")
		}
		orders, _ := st.GetIMAP(ctx, "orders")
		support, _ := st.GetIMAP(ctx, "support_inbox")
		legacy, _ := st.GetIMAP(ctx, "legacy_pop") // disabled: never in the banner
		since := time.Now()                        // the store records the time of the change
		recordCondition(t, st, fmt.Sprintf("mailbox:%d", orders.ID), "auth_failed", "login: [AUTHENTICATIONFAILED] Invalid credentials", since)
		recordCondition(t, st, fmt.Sprintf("mailbox:%d", support.ID), "failing", "dial tcp: connection refused", since.Add(time.Hour))
		recordCondition(t, st, fmt.Sprintf("mailbox:%d", legacy.ID), "failing", "x", since)
		for _, path := range []string{"/imap", "/flows", "/runs", "/messages", "/settings", "/settings/alerts/new"} {
			r := h.get(c, path)
			if !strings.Contains(r.Body, `<a href="/imap/orders">Mailbox orders</a>: authentication failed since <time datetime="`) ||
				!strings.Contains(r.Body, `<a href="/imap/support_inbox">Mailbox support_inbox</a>: failing since`) ||
				!strings.Contains(r.Body, "connection refused") || strings.Contains(r.Body, "Mailbox legacy_pop") {
				t.Errorf("%s: no banner naming orders and support_inbox alone", path)
			}
		}
		// Back to ok: gone.
		recordCondition(t, st, fmt.Sprintf("mailbox:%d", orders.ID), "ok", "", since)
		recordCondition(t, st, fmt.Sprintf("mailbox:%d", support.ID), "ok", "", since)
		if r := h.get(c, "/imap"); strings.Contains(r.Body, "alert-banner") {
			t.Error("the banner stays after the mailboxes recovered")
		}
		// The card says since when its state holds.
		if r := h.get(c, "/imap"); !strings.Contains(r.Body, `data-since-for="orders">since <time datetime="`) {
			t.Error("the cards do not say since when")
		}
	})
}
