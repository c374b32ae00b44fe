package api_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"mailtrigger/internal/api"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func flowBody(mod map[string]any) map[string]any {
	m := map[string]any{
		"name": "invoices", "description": "Invoices to accounting", "enabled": true,
		"start": map[string]any{"emailTrigger": map[string]any{"imap": "support", "subject": "Invoice", "match": "exact"}},
		"activities": []any{map[string]any{"type": "webhook", "url": "https://hooks.example.com/invoices",
			"headers": map[string]string{"X-Team": "accounting"}, "timeout": "10s"}},
	}
	for k, v := range mod {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func TestFlowLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
			t.Fatal(err)
		}
		var created api.FlowView
		if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(nil), &created); err != nil {
			t.Fatal(err)
		}
		secret := created.Activities[0].Secret
		if !strings.HasPrefix(secret, "whsec_") || !created.Activities[0].HasSecret || created.Start.EmailTrigger.Match != "exact" {
			t.Fatalf("create: got %+v, want a generated secret shown once", created)
		}
		var got api.FlowView
		if err := h.c.Do(ctx, "GET", "/api/v1/flows/INVOICES", nil, &got); err != nil {
			t.Fatal(err)
		}
		if got.Activities[0].Secret != "" || !got.Activities[0].HasSecret || len(got.Activities[0].Headers) != 1 || got.Activities[0].Headers["X-Team"] != "" {
			t.Errorf("view: got %+v, want no secret and the header's name without its value", got.Activities[0])
		}
		// The IMAP configuration cannot be deleted while the flow names it.
		err := h.c.DeleteIMAP(ctx, "support")
		if ce := apiErr(t, err); ce.Status != http.StatusConflict || len(ce.Flows) != 1 || ce.Flows[0] != "invoices" {
			t.Errorf("delete imap: got %+v", ce)
		}
		// A rename of the configuration is followed.
		in := genericInput("support_renamed")
		in.Password = nil
		if _, err := h.c.EditIMAP(ctx, "support", in); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/flows/invoices", nil, &got); err != nil || got.Start.EmailTrigger.IMAP != "support_renamed" {
			t.Errorf("after rename: got %q, %v", got.Start.EmailTrigger.IMAP, err)
		}
		// Edit without the secret keeps it; rename the flow.
		edit := flowBody(map[string]any{"name": "Invoices_v2",
			"start": map[string]any{"emailTrigger": map[string]any{"imap": "support_renamed", "subject": `^Invoice \d+`, "match": "regex"}}})
		var edited api.FlowView
		if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", edit, &edited); err != nil {
			t.Fatal(err)
		}
		if edited.Activities[0].Secret != "" || edited.Name != "Invoices_v2" {
			t.Errorf("edit: got %+v", edited)
		}
		fr, _ := st.GetFlow(ctx, "invoices_v2")
		if len(fr.Secrets) != 1 || fr.Secrets[0] != secret {
			t.Error("edit without a secret did not keep it")
		}
		var list struct {
			Items []api.FlowView `json:"items"`
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/flows", nil, &list); err != nil || len(list.Items) != 1 {
			t.Fatalf("list: got %+v, %v", list, err)
		}
		if err := h.c.Do(ctx, "DELETE", "/api/v1/flows/invoices_v2", nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := h.c.DeleteIMAP(ctx, "support_renamed"); err != nil {
			t.Errorf("delete imap after the flow went: %v", err)
		}
	})
}

func TestFlowValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(map[string]any{"name": "taken"}), nil); err != nil {
			t.Fatal(err)
		}
		trig := func(m map[string]any) map[string]any {
			base := map[string]any{"imap": "support", "subject": "Invoice", "match": "exact"}
			for k, v := range m {
				base[k] = v
			}
			return map[string]any{"start": map[string]any{"emailTrigger": base}}
		}
		tests := []struct {
			name   string
			body   map[string]any
			status int
			field  string
		}{
			{"bad name", flowBody(map[string]any{"name": "bad-name"}), 400, "name"},
			{"taken name", flowBody(map[string]any{"name": "TAKEN"}), 409, "name"},
			{"unknown imap", flowBody(trig(map[string]any{"imap": "nope"})), 400, "start.emailTrigger.imap"},
			{"bad regex", flowBody(trig(map[string]any{"match": "regex", "subject": "Order (#"})), 400, "start.emailTrigger.subject"},
			{"bad match", flowBody(trig(map[string]any{"match": "fuzzy"})), 400, "start.emailTrigger.match"},
			{"no activities", flowBody(map[string]any{"activities": []any{}}), 400, "activities"},
			{"bad url", flowBody(map[string]any{"activities": []any{map[string]any{"url": "hooks.example.com"}}}), 400, "activities[0].url"},
			{"maxConcurrency 0", flowBody(map[string]any{"activities": []any{map[string]any{"url": "https://hooks.example.com/x", "maxConcurrency": 0}}}), 400, "activities[0].maxConcurrency"},
			{"maxConcurrency fraction", flowBody(map[string]any{"activities": []any{map[string]any{"url": "https://hooks.example.com/x", "maxConcurrency": 2.5}}}), 400, "activities.maxConcurrency"}, // a JSON type error names the field without its index
			{"ratePerSecond text", flowBody(map[string]any{"activities": []any{map[string]any{"url": "https://hooks.example.com/x", "ratePerSecond": "fast"}}}), 400, "activities.ratePerSecond"},
			{"ratePerSecond too high", flowBody(map[string]any{"activities": []any{map[string]any{"url": "https://hooks.example.com/x", "ratePerSecond": 1e6}}}), 400, "activities[0].ratePerSecond"},
			{"unknown field", flowBody(map[string]any{"trigger": "x"}), 400, "trigger"},
			{"unknown nested field", flowBody(trig(map[string]any{"subjet": "x"})), 400, "start.emailTrigger.subjet"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var before, after any
				h.c.Do(ctx, "GET", "/api/v1/flows", nil, &before)
				err := h.c.Do(ctx, "POST", "/api/v1/flows", tt.body, nil)
				ce := apiErr(t, err)
				if ce.Status != tt.status || ce.Fields[tt.field] == "" {
					t.Errorf("got %+v, want %d on %s", ce, tt.status, tt.field)
				}
				h.c.Do(ctx, "GET", "/api/v1/flows", nil, &after)
				if len(before.(map[string]any)["items"].([]any)) != len(after.(map[string]any)["items"].([]any)) {
					t.Error("a rejected request changed the flows")
				}
			})
		}
	})
}

func TestFlowSecretNeverShownAgain(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	ctx := context.Background()
	if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
		t.Fatal(err)
	}
	const given = "whsec_R2l2ZW5TZWNyZXRPZlRoZU9wZXJhdG9yMTIz"
	body := flowBody(map[string]any{"activities": []any{map[string]any{"url": "https://hooks.example.com/x", "secret": given}}})
	var created api.FlowView
	if err := h.c.Do(ctx, "POST", "/api/v1/flows", body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Activities[0].Secret != "" {
		t.Error("a secret the caller gave was echoed")
	}
	h.c.Do(ctx, "GET", "/api/v1/flows", nil, nil)
	h.c.Do(ctx, "GET", "/api/v1/flows/invoices", nil, nil)
	h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(nil), nil)
	h.c.Do(ctx, "POST", "/api/v1/flows", body, nil) // a conflict
	h.mu.Lock()
	all := strings.Join(h.bodies, "\n")
	h.mu.Unlock()
	if strings.Contains(all, given) || strings.Contains(h.logs.String(), given) {
		t.Error("the webhook secret left the service")
	}
	fr, _ := st.GetFlow(ctx, "invoices")
	if len(fr.Secrets) != 1 || fr.Secrets[0] != given {
		t.Errorf("got secrets %v", fr.Secrets)
	}
	var raw []byte
	for _, suffix := range []string{"", "-wal"} {
		b, _ := os.ReadFile(st.SQLitePath() + suffix)
		raw = append(raw, b...)
	}
	if !strings.Contains(string(raw), "hooks.example.com") {
		t.Fatal("read too little of the database")
	}
	if strings.Contains(string(raw), given) || strings.Contains(string(raw), "R2l2ZW5TZWNyZXRPZlRoZU9wZXJhdG9y") {
		t.Error("the flows table holds the secret in plaintext")
	}
}

// A stored flow that breaks a rule of today's (a numeric timeout, taken by
// an older worker) is still listed and shown, so that it can be fixed; the
// worker refuses to deliver it and says why.
func TestFlowBreakingARuleIsStillShown(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	ctx := context.Background()
	if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
		t.Fatal(err)
	}
	c, _ := st.GetIMAP(ctx, "support")
	def := `{"start":{"emailTrigger":{"imap":"support","subject":"Invoice","match":"contains"}},` +
		`"activities":[{"type":"webhook","url":"https://hooks.example.com/x","timeout":15}]}`
	if err := st.CreateFlow(ctx, &store.FlowRecord{Name: "old", IMAPID: c.ID, Enabled: true, Definition: def}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/flows", "/api/v1/flows/old"} {
		if code, body := h.raw("GET", path, "", nil); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
}
