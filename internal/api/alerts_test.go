package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

const alertSecret = "whsec_QWxlcnQtU2VjcmV0LUtpd2ktNDQ3MS0wMDA="

func webhookAlert(name string) map[string]any {
	return map[string]any{"name": name, "url": "https://hooks.example.com/alerts", "events": []string{"mailbox.auth_failed", "run.failed"}}
}

// alertSnapshot is everything the API and the store hold of the alert
// subscriptions, to prove that a rejected request changed nothing.
func alertSnapshot(t *testing.T, h *harness) string {
	t.Helper()
	ctx := context.Background()
	var list api.List[api.AlertView]
	if err := h.c.Do(ctx, "GET", "/api/v1/alerts", nil, &list); err != nil {
		t.Fatal(err)
	}
	all := []any{list}
	for _, v := range list.Items {
		a, err := h.st.GetAlert(ctx, v.Name)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, a)
	}
	data, _ := json.Marshal(all)
	return string(data)
}

func TestAlertLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()

		// Created without a secret: one is generated and shown in this
		// answer only.
		status, body := h.raw("POST", "/api/v1/alerts", `{"name":"ops","url":"https://hooks.example.com/alerts","events":["mailbox.auth_failed","run.failed"]}`,
			map[string]string{"Content-Type": "application/json"})
		var v api.AlertView
		if err := json.Unmarshal([]byte(body), &v); err != nil || status != http.StatusCreated {
			t.Fatalf("create: got %d %s", status, body)
		}
		if v.Kind != "webhook" || !v.Enabled || !v.HasSecret || !strings.HasPrefix(v.Secret, "whsec_") ||
			!slices.Equal(v.Events, []string{"mailbox.auth_failed", "run.failed"}) {
			t.Errorf("create: got %+v", v)
		}
		generated := v.Secret
		if stored, err := st.GetAlert(ctx, "ops"); err != nil || stored.Secret != generated {
			t.Fatalf("the generated secret was not stored (%v)", err)
		}
		// Never again: get (any case), list.
		v = api.AlertView{}
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/OPS", nil, &v); err != nil || v.Secret != "" || !v.HasSecret || v.Name != "ops" {
			t.Errorf("get: got %+v, %v", v, err)
		}
		v = api.AlertView{}
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts", map[string]any{"name": "mail_ops", "kind": "email",
			"to": []string{"ops@example.com"}, "events": []string{"runs.backlog"}, "enabled": false}, &v); err != nil {
			t.Fatal(err)
		}
		if v.HasSecret || v.Secret != "" || !slices.Equal(v.To, []string{"ops@example.com"}) || v.URL != "" || v.Enabled {
			t.Errorf("email create: got %+v", v)
		}
		var list api.List[api.AlertView]
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts", nil, &list); err != nil || len(list.Items) != 2 || list.Items[0].Name != "mail_ops" ||
			list.Items[1].Secret != "" || !list.Items[1].HasSecret || list.NextCursor != "" {
			t.Fatalf("list: got %+v, %v", list, err)
		}
		var page1, page2 api.List[api.AlertView]
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts?limit=1", nil, &page1); err != nil || len(page1.Items) != 1 || page1.NextCursor == "" {
			t.Fatalf("page 1: got %+v, %v", page1, err)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts?limit=1&cursor="+page1.NextCursor, nil, &page2); err != nil ||
			len(page2.Items) != 1 || page2.Items[0].Name != "ops" || page2.NextCursor != "" {
			t.Fatalf("page 2: got %+v, %v", page2, err)
		}

		// An edit without a secret keeps it and does not show it; what was
		// read can be sent back.
		var got api.AlertView
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops", nil, &got); err != nil {
			t.Fatal(err)
		}
		got.Events = []string{"mailbox.failing"}
		v = api.AlertView{}
		if err := h.c.Do(ctx, "PUT", "/api/v1/alerts/ops", got, &v); err != nil {
			t.Fatal(err)
		}
		if v.Secret != "" || !v.HasSecret || !slices.Equal(v.Events, []string{"mailbox.failing"}) {
			t.Errorf("edit without secret: got %+v", v)
		}
		if stored, _ := st.GetAlert(ctx, "ops"); stored.Secret != generated {
			t.Error("an edit without a secret did not keep the stored one")
		}
		// Rotated: a new one, shown in this answer.
		edit := webhookAlert("ops")
		edit["rotateSecret"] = true
		if err := h.c.Do(ctx, "PUT", "/api/v1/alerts/ops", edit, &v); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(v.Secret, "whsec_") || v.Secret == generated {
			t.Errorf("rotate: got secret %q", v.Secret)
		}
		if stored, _ := st.GetAlert(ctx, "ops"); stored.Secret != v.Secret {
			t.Error("the rotated secret was not stored")
		}
		// Set, and renamed.
		edit = webhookAlert("ops_renamed")
		edit["secret"] = alertSecret
		if err := h.c.Do(ctx, "PUT", "/api/v1/alerts/ops", edit, &v); err != nil {
			t.Fatal(err)
		}
		if v.Name != "ops_renamed" || v.Secret != alertSecret {
			t.Errorf("set and rename: got %+v", v)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops", nil, nil); apiErr(t, err).Status != http.StatusNotFound {
			t.Errorf("old name after rename: got %v, want 404", err)
		}

		// Delete.
		if err := h.c.Do(ctx, "DELETE", "/api/v1/alerts/ops_renamed", nil, nil); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"GET", "DELETE", "PUT"} {
			var body any
			if m == "PUT" {
				body = webhookAlert("x")
			}
			if err := h.c.Do(ctx, m, "/api/v1/alerts/ops_renamed", body, nil); apiErr(t, err).Status != http.StatusNotFound {
				t.Errorf("%s after delete: got %v, want 404", m, err)
			}
		}
		if !strings.Contains(h.logs.String(), "alert subscription created") || !strings.Contains(h.logs.String(), "alert subscription deleted") {
			t.Error("the changes were not logged")
		}
	})
}

func TestAlertValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts", webhookAlert("ops"), nil); err != nil {
			t.Fatal(err)
		}
		before := alertSnapshot(t, h)
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			field, word              string
		}{
			{"unknown event", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example","events":["run.failed","mailbox.exploded"]}`, 400, "events[1]", "unknown event type"},
			{"no events", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example","events":[]}`, 400, "events", "required"},
			{"bad url", "POST", "/api/v1/alerts", `{"name":"a","url":"ftp://x.example","events":["run.failed"]}`, 400, "url", "http"},
			{"userinfo", "POST", "/api/v1/alerts", `{"name":"a","url":"https://u:p@x.example","events":["run.failed"]}`, 400, "url", "password"},
			{"fragment", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example/#x","events":["run.failed"]}`, 400, "url", "fragment"},
			{"bad secret", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example","secret":"s3cret","events":["run.failed"]}`, 400, "secret", "whsec_"},
			{"kind", "POST", "/api/v1/alerts", `{"name":"a","kind":"pager","events":["run.failed"]}`, 400, "kind", "webhook, email"},
			{"email to", "POST", "/api/v1/alerts", `{"name":"a","kind":"email","to":["not an address"],"events":["run.failed"]}`, 400, "to[0]", "e-mail address"},
			{"email no to", "POST", "/api/v1/alerts", `{"name":"a","kind":"email","events":["run.failed"]}`, 400, "to", "required"},
			{"name", "POST", "/api/v1/alerts", `{"name":"a-b","url":"https://x.example","events":["run.failed"]}`, 400, "name", "letters"},
			{"unknown field", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example","events":["run.failed"],"colour":"red"}`, 400, "colour", "unknown field"},
			{"type", "POST", "/api/v1/alerts", `{"name":"a","url":"https://x.example","events":"run.failed"}`, 400, "events", "array"},
			{"taken name", "POST", "/api/v1/alerts", `{"name":"OPS","url":"https://x.example","events":["run.failed"]}`, 409, "name", "taken"},
			{"edit bad url", "PUT", "/api/v1/alerts/ops", `{"name":"ops","url":"mailto:x@example.com","events":["run.failed"]}`, 400, "url", "http"},
			{"edit unknown event", "PUT", "/api/v1/alerts/ops", `{"name":"ops","url":"https://x.example","events":["alert.test"]}`, 400, "events[0]", "unknown event type"},
			{"edit both secrets", "PUT", "/api/v1/alerts/ops", `{"name":"ops","url":"https://x.example","events":["run.failed"],"secret":"` + alertSecret + `","rotateSecret":true}`, 400, "rotateSecret", "not both"},
		} {
			status, body := h.raw(tc.method, tc.path, tc.body, map[string]string{"Content-Type": "application/json"})
			var e struct {
				Error struct {
					Fields map[string]string `json:"fields"`
				} `json:"error"`
			}
			json.Unmarshal([]byte(body), &e)
			if status != tc.status || !strings.Contains(e.Error.Fields[tc.field], tc.word) {
				t.Errorf("%s: got %d %s, want %d naming %s (%q)", tc.name, status, body, tc.status, tc.field, tc.word)
			}
		}
		if after := alertSnapshot(t, h); after != before {
			t.Errorf("a rejected request changed the subscriptions:\n%s\n%s", before, after)
		}
		if _, err := st.GetAlert(ctx, "a"); err == nil {
			t.Error("a rejected subscription was stored")
		}
	})
}

func TestAlertSendTest(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		in := webhookAlert("ops")
		in["enabled"] = false // a test goes to it all the same
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts", in, nil); err != nil {
			t.Fatal(err)
		}
		var d api.AlertDeliveryView
		status, body := h.raw("POST", "/api/v1/alerts/ops/test", "", nil)
		if err := json.Unmarshal([]byte(body), &d); err != nil || status != http.StatusAccepted {
			t.Fatalf("test: got %d %s", status, body)
		}
		if !strings.HasPrefix(d.ID, "alrt_") || d.Event != "alert.test" || !d.Test || d.Subscription != "ops" || d.Status != store.RunPending {
			t.Errorf("test: got %+v", d)
		}
		var list api.List[api.AlertDeliveryView]
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops/deliveries", nil, &list); err != nil || len(list.Items) != 1 || list.Items[0].ID != d.ID ||
			list.Items[0].AttemptCount != 0 || list.NextCursor != "" {
			t.Fatalf("deliveries: got %+v, %v", list, err)
		}
		// Newest first, paged.
		var d2 api.AlertDeliveryView
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts/ops/test", nil, &d2); err != nil {
			t.Fatal(err)
		}
		var page1, page2 api.List[api.AlertDeliveryView]
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops/deliveries?limit=1", nil, &page1); err != nil || len(page1.Items) != 1 ||
			page1.Items[0].ID != d2.ID || page1.NextCursor == "" {
			t.Fatalf("page 1: got %+v, %v", page1, err)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops/deliveries?limit=1&cursor="+page1.NextCursor, nil, &page2); err != nil ||
			len(page2.Items) != 1 || page2.Items[0].ID != d.ID || page2.NextCursor != "" {
			t.Fatalf("page 2: got %+v, %v", page2, err)
		}
		for _, path := range []string{"/api/v1/alerts/nope/test", "/api/v1/alerts/nope/deliveries"} {
			method := "POST"
			if strings.HasSuffix(path, "deliveries") {
				method = "GET"
			}
			if err := h.c.Do(ctx, method, path, nil, nil); apiErr(t, err).Status != http.StatusNotFound {
				t.Errorf("%s %s: got %v, want 404", method, path, err)
			}
		}
		err := h.c.Do(ctx, "GET", "/api/v1/alerts/ops/deliveries?cursor=bm9wZQ", nil, nil)
		if ce, ok := err.(*client.Error); !ok || ce.Fields["cursor"] == "" {
			t.Errorf("bad cursor: got %v, want 400 naming cursor", err)
		}
	})
}
