package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// body returns the JSON of a valid generic create request with the changes
// in mod applied (a nil value deletes the key).
func body(mod map[string]any) string {
	m := map[string]any{"name": "new_inbox", "host": "imap.example.com", "port": 993,
		"username": "new@example.com", "password": "New-Secret"}
	for k, v := range mod {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func graphBody(mod map[string]any) string {
	m := map[string]any{"type": "msgraph", "host": nil, "port": nil, "password": nil,
		"tenantId": "contoso.onmicrosoft.com", "clientId": "11111111-2222-3333-4444-555555555555", "clientSecret": "New-Graph-Secret"}
	for k, v := range mod {
		m[k] = v
	}
	return body(m)
}

// TestRejectedRequestsChangeNothing sends every kind of bad input to create,
// edit and duplicate, and checks the status, the error code, the field
// named, and that the configurations are exactly as before.
func TestRejectedRequestsChangeNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		for _, in := range []any{genericInput("existing"), graphInput("graph_one"), genericInput("Taken_Name")} {
			if _, err := h.c.CreateIMAP(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		big := `{"name":"x","description":"` + strings.Repeat("a", 1<<20) + `"}`
		tests := []struct {
			name, method, path, body string
			status                   int
			code, field, message     string
		}{
			// create
			{"create name too long", "POST", "/api/v1/imap", body(map[string]any{"name": strings.Repeat("n", 51)}), 400, "validation_failed", "name", "at most 50"},
			{"create name bad chars", "POST", "/api/v1/imap", body(map[string]any{"name": "a.b"}), 400, "validation_failed", "name", "letters, digits and underscore"},
			{"create name missing", "POST", "/api/v1/imap", body(map[string]any{"name": nil}), 400, "validation_failed", "name", "required"},
			{"create name taken other case", "POST", "/api/v1/imap", body(map[string]any{"name": "EXISTING"}), 409, "conflict", "name", "already taken"},
			{"create description too long", "POST", "/api/v1/imap", body(map[string]any{"description": strings.Repeat("d", 1001)}), 400, "validation_failed", "description", "at most 1000"},
			{"create serverType", "POST", "/api/v1/imap", body(map[string]any{"serverType": "imap4"}), 400, "validation_failed", "serverType", "imaps, pop3s"},
			{"create type", "POST", "/api/v1/imap", body(map[string]any{"type": "ews"}), 400, "validation_failed", "type", "generic, msgraph"},
			{"create host missing", "POST", "/api/v1/imap", body(map[string]any{"host": nil}), 400, "validation_failed", "host", "required"},
			{"create host url", "POST", "/api/v1/imap", body(map[string]any{"host": "https://imap.example.com/"}), 400, "validation_failed", "host", "without scheme"},
			{"create port missing", "POST", "/api/v1/imap", body(map[string]any{"port": nil}), 400, "validation_failed", "port", "required"},
			{"create port range", "POST", "/api/v1/imap", body(map[string]any{"port": 70000}), 400, "validation_failed", "port", "between 1 and 65535"},
			{"create port string", "POST", "/api/v1/imap", body(map[string]any{"port": "993"}), 400, "validation_failed", "port", "whole number"},
			{"create port fraction", "POST", "/api/v1/imap", body(map[string]any{"port": 99.5}), 400, "validation_failed", "port", "whole number"},
			{"create enabled string", "POST", "/api/v1/imap", body(map[string]any{"enabled": "yes"}), 400, "validation_failed", "enabled", "true or false"},
			{"create username missing", "POST", "/api/v1/imap", body(map[string]any{"username": nil}), 400, "validation_failed", "username", "required"},
			{"create username not email", "POST", "/api/v1/imap", body(map[string]any{"username": "support"}), 400, "validation_failed", "username", "e-mail address"},
			{"create password missing", "POST", "/api/v1/imap", body(map[string]any{"password": nil}), 400, "validation_failed", "password", "required"},
			{"create tls none", "POST", "/api/v1/imap", body(map[string]any{"tls": "none"}), 400, "validation_failed", "tls", "plaintext"},
			{"create caCert", "POST", "/api/v1/imap", body(map[string]any{"caCert": "not a cert"}), 400, "validation_failed", "caCert", "PEM"},
			{"create afterProcessing", "POST", "/api/v1/imap", body(map[string]any{"afterProcessing": "expunge"}), 400, "validation_failed", "afterProcessing", "none, seen, delete, move"},
			{"create moveTo", "POST", "/api/v1/imap", body(map[string]any{"afterProcessing": "move"}), 400, "validation_failed", "moveTo", "required"},
			{"create pollInterval", "POST", "/api/v1/imap", body(map[string]any{"pollInterval": 1}), 400, "validation_failed", "pollInterval", "between 5"},
			{"create backlog", "POST", "/api/v1/imap", body(map[string]any{"backlog": "everything"}), 400, "validation_failed", "backlog", "new, unseen, all"},
			{"create graph tenantId", "POST", "/api/v1/imap", graphBody(map[string]any{"tenantId": "not a tenant"}), 400, "validation_failed", "tenantId", "GUID or a verified domain"},
			{"create graph clientId", "POST", "/api/v1/imap", graphBody(map[string]any{"clientId": "abc"}), 400, "validation_failed", "clientId", "GUID"},
			{"create graph clientSecret", "POST", "/api/v1/imap", graphBody(map[string]any{"clientSecret": nil}), 400, "validation_failed", "clientSecret", "required"},
			{"create graph graphUrl", "POST", "/api/v1/imap", graphBody(map[string]any{"graphUrl": "graph"}), 400, "validation_failed", "graphUrl", "https"},
			{"create graph authorityUrl", "POST", "/api/v1/imap", graphBody(map[string]any{"authorityUrl": "http://login.example.com"}), 400, "validation_failed", "authorityUrl", "https"},
			{"create unknown field", "POST", "/api/v1/imap", body(map[string]any{"hostname": "x"}), 400, "validation_failed", "hostname", "unknown field"},
			{"create not json", "POST", "/api/v1/imap", `name=x`, 400, "invalid_json", "", "not valid JSON"},
			{"create empty body", "POST", "/api/v1/imap", ``, 400, "invalid_json", "", "empty"},
			{"create array", "POST", "/api/v1/imap", `[1]`, 400, "invalid_json", "", "JSON object"},
			{"create trailing data", "POST", "/api/v1/imap", body(nil) + `{}`, 400, "invalid_json", "", "after the JSON"},
			{"create truncated", "POST", "/api/v1/imap", `{"name":"x"`, 400, "invalid_json", "", "middle"},
			{"create too large", "POST", "/api/v1/imap", big, 413, "too_large", "", "larger than"},
			{"create bad limit", "GET", "/api/v1/imap?limit=0", ``, 400, "validation_failed", "limit", "from 1 to 500"},
			{"create bad cursor", "GET", "/api/v1/imap?cursor=%25%25", ``, 400, "validation_failed", "cursor", "not a cursor"},
			// edit
			{"edit missing", "PUT", "/api/v1/imap/nope", body(nil), 404, "not_found", "", "nope"},
			{"edit rename onto taken", "PUT", "/api/v1/imap/existing", body(map[string]any{"name": "taken_name", "password": nil, "username": "support@example.com"}), 409, "conflict", "name", "already taken"},
			{"edit new host keeps no password", "PUT", "/api/v1/imap/existing", body(map[string]any{"name": "existing", "password": nil, "username": "support@example.com", "host": "evil.example.net"}), 400, "validation_failed", "password", "required again because host changed"},
			{"edit graph new authority keeps no secret", "PUT", "/api/v1/imap/graph_one", graphBody(map[string]any{"name": "graph_one", "username": "invoices@contoso.com", "clientSecret": "", "authorityUrl": "https://evil.example.net"}), 400, "validation_failed", "clientSecret", "required again because authorityUrl changed"},
			{"edit bad port", "PUT", "/api/v1/imap/existing", body(map[string]any{"name": "existing", "port": 0}), 400, "validation_failed", "port", "between 1 and 65535"},
			{"edit to graph without secret", "PUT", "/api/v1/imap/existing", graphBody(map[string]any{"name": "existing", "clientSecret": nil}), 400, "validation_failed", "clientSecret", "required"},
			{"edit unknown field", "PUT", "/api/v1/imap/existing", body(map[string]any{"name": "existing", "secret": "x"}), 400, "validation_failed", "secret", "unknown field"},
			{"edit too large", "PUT", "/api/v1/imap/existing", big, 413, "too_large", "", "larger than"},
			// duplicate
			{"duplicate without password", "POST", "/api/v1/imap/existing/duplicate", `{}`, 400, "validation_failed", "password", "required"},
			{"duplicate with empty password", "POST", "/api/v1/imap/existing/duplicate", `{"password":""}`, 400, "validation_failed", "password", "required"},
			{"duplicate graph without secret", "POST", "/api/v1/imap/graph_one/duplicate", `{"password":"x"}`, 400, "validation_failed", "clientSecret", "required"},
			{"duplicate bad name", "POST", "/api/v1/imap/existing/duplicate", `{"password":"x","name":"bad name"}`, 400, "validation_failed", "name", "letters, digits and underscore"},
			{"duplicate taken name", "POST", "/api/v1/imap/existing/duplicate", `{"password":"x","name":"TAKEN_NAME"}`, 409, "conflict", "name", "already taken"},
			{"duplicate unknown field", "POST", "/api/v1/imap/existing/duplicate", `{"password":"x","enabled":true}`, 400, "validation_failed", "enabled", "unknown field"},
			{"duplicate missing", "POST", "/api/v1/imap/nope/duplicate", `{"password":"x"}`, 404, "not_found", "", "nope"},
			// delete and view
			{"delete missing", "DELETE", "/api/v1/imap/nope", ``, 404, "not_found", "", "nope"},
			{"view missing", "GET", "/api/v1/imap/nope", ``, 404, "not_found", "", "nope"},
			{"unknown route", "GET", "/api/v1/nothing", ``, 404, "not_found", "", "no such API route"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := h.snapshot()
				status, resp := h.raw(tt.method, tt.path, tt.body, nil)
				if status != tt.status {
					t.Fatalf("got status %d (%s), want %d", status, resp, tt.status)
				}
				var eb struct {
					Error struct {
						Code    string            `json:"code"`
						Message string            `json:"message"`
						Fields  map[string]string `json:"fields"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(resp), &eb); err != nil {
					t.Fatalf("error body %q is not JSON: %v", resp, err)
				}
				if eb.Error.Code != tt.code {
					t.Errorf("got code %q, want %q", eb.Error.Code, tt.code)
				}
				if tt.field != "" {
					if len(eb.Error.Fields) != 1 {
						t.Errorf("got fields %v, want only %s", eb.Error.Fields, tt.field)
					}
					if msg, ok := eb.Error.Fields[tt.field]; !ok || !strings.Contains(msg, tt.message) {
						t.Errorf("got fields %v, want %s: …%s…", eb.Error.Fields, tt.field, tt.message)
					}
				} else if !strings.Contains(eb.Error.Message, tt.message) {
					t.Errorf("got message %q, want it to contain %q", eb.Error.Message, tt.message)
				}
				if after := h.snapshot(); after != before {
					t.Errorf("a rejected request changed the configurations:\nbefore %s\nafter  %s", before, after)
				}
			})
		}
		if status, _ := h.raw("PATCH", "/api/v1/imap/existing", "{}", nil); status != http.StatusMethodNotAllowed {
			t.Errorf("PATCH: got %d, want 405", status)
		}
	})
}

// TestControlCharactersRefused sends NUL (and other control characters) in
// every text field of every input, in paths and in query parameters, on
// SQLite and PostgreSQL: each is answered 400 naming the field (404 for a
// path), never 500, and changes nothing.
func TestControlCharactersRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		for _, in := range []any{genericInput("existing"), graphInput("graph_one")} {
			if _, err := h.c.CreateIMAP(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(map[string]any{"name": "flow_one", "start": map[string]any{
			"emailTrigger": map[string]any{"imap": "existing", "subject": "Invoice"}}}), nil); err != nil {
			t.Fatal(err)
		}
		type tcase struct {
			name, method, path, body string
			status                   int
			field, message           string
		}
		var tests []tcase
		// Every string field of the IMAP input, on create and on edit.
		it := reflect.TypeFor[imapconf.Input]()
		for i := range it.NumField() {
			f := it.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Type != reflect.TypeFor[*string]() || f.Tag.Get("valid") == "-" {
				continue
			}
			tests = append(tests,
				tcase{"create " + name, "POST", "/api/v1/imap", body(map[string]any{name: "a\x00b"}), 400, name, "NUL"},
				tcase{"edit " + name, "PUT", "/api/v1/imap/existing", body(map[string]any{"name": "existing", name: "a\x00b"}), 400, name, "NUL"})
		}
		flowStr := func(path, value string) string {
			m := flowBody(map[string]any{"name": "new_flow", "start": map[string]any{"emailTrigger": map[string]any{"imap": "existing", "subject": "Invoice"}}})
			set := map[string]func(){
				"name":        func() { m["name"] = value },
				"description": func() { m["description"] = value },
				"start.emailTrigger.imap": func() {
					m["start"] = map[string]any{"emailTrigger": map[string]any{"imap": value, "subject": "Invoice"}}
				},
				"start.emailTrigger.subject": func() {
					m["start"] = map[string]any{"emailTrigger": map[string]any{"imap": "existing", "subject": value}}
				},
				"start.emailTrigger.match": func() {
					m["start"] = map[string]any{"emailTrigger": map[string]any{"imap": "existing", "subject": "Invoice", "match": value}}
				},
				"start.emailTrigger.from": func() {
					m["start"] = map[string]any{"emailTrigger": map[string]any{"imap": "existing", "subject": "Invoice", "from": value}}
				},
				"activities[0].type":    func() { m["activities"] = []any{map[string]any{"url": "https://h.example.com/", "type": value}} },
				"activities[0].url":     func() { m["activities"] = []any{map[string]any{"url": value}} },
				"activities[0].secret":  func() { m["activities"] = []any{map[string]any{"url": "https://h.example.com/", "secret": value}} },
				"activities[0].timeout": func() { m["activities"] = []any{map[string]any{"url": "https://h.example.com/", "timeout": value}} },
				"activities[0].headers.X-Key": func() {
					m["activities"] = []any{map[string]any{"url": "https://h.example.com/", "headers": map[string]string{"X-Key": value}}}
				},
			}
			set[path]()
			b, _ := json.Marshal(m)
			return string(b)
		}
		for _, f := range []string{"name", "description", "start.emailTrigger.imap", "start.emailTrigger.subject", "start.emailTrigger.match",
			"start.emailTrigger.from", "activities[0].type", "activities[0].url", "activities[0].secret", "activities[0].timeout", "activities[0].headers.X-Key"} {
			tests = append(tests, tcase{"flow create " + f, "POST", "/api/v1/flows", flowStr(f, "a\x00b"), 400, f, "NUL"},
				tcase{"flow edit " + f, "PUT", "/api/v1/flows/flow_one", strings.Replace(flowStr(f, "a\x00b"), `"new_flow"`, `"flow_one"`, 1), 400, f, "NUL"})
		}
		tests = append(tests,
			tcase{"flow header name", "POST", "/api/v1/flows", `{"name":"new_flow","start":{"emailTrigger":{"imap":"existing","subject":"x"}},` +
				`"activities":[{"url":"https://h.example.com/","headers":{"X\u0000Key":"v"}}]}`, 400, "activities[0].headers.X\x00Key", "NUL"},
			// Other control characters: refused in single-line fields,
			// tab and line breaks allowed in descriptions and certificates.
			tcase{"host with a line break", "POST", "/api/v1/imap", body(map[string]any{"host": "imap.example.com\n"}), 400, "host", "control characters"},
			tcase{"subject with a tab", "POST", "/api/v1/flows", flowStr("start.emailTrigger.subject", "In\tvoice"), 400, "start.emailTrigger.subject", "control characters"},
			tcase{"description with a bell", "POST", "/api/v1/imap", body(map[string]any{"description": "ding\adong"}), 400, "description", "other than tab and line breaks"},
			tcase{"description with DEL", "POST", "/api/v1/imap", body(map[string]any{"description": "a\x7fb"}), 400, "description", "other than tab and line breaks"},
			tcase{"description with C1", "POST", "/api/v1/imap", body(map[string]any{"description": "a\u0085b"}), 400, "description", "other than tab and line breaks"},
			tcase{"duplicate name", "POST", "/api/v1/imap/existing/duplicate", `{"password":"x","name":"a\u0000b"}`, 400, "name", "NUL"},
			tcase{"duplicate password", "POST", "/api/v1/imap/existing/duplicate", `{"password":"a\u0000b"}`, 400, "password", "NUL"},
			tcase{"duplicate clientSecret", "POST", "/api/v1/imap/graph_one/duplicate", `{"clientSecret":"a\u0000b"}`, 400, "clientSecret", "NUL"},
			tcase{"test unsaved", "POST", "/api/v1/imap/test", body(map[string]any{"name": "existing", "host": "a\x00b"}), 400, "host", "NUL"},
			// Paths and query parameters.
			tcase{"view path", "GET", "/api/v1/imap/a%00b", ``, 404, "", "control character"},
			tcase{"edit path", "PUT", "/api/v1/imap/a%00b", body(nil), 404, "", "control character"},
			tcase{"delete path", "DELETE", "/api/v1/imap/a%00b", ``, 404, "", "control character"},
			tcase{"duplicate path", "POST", "/api/v1/imap/a%00b/duplicate", `{"password":"x"}`, 404, "", "control character"},
			tcase{"test path", "POST", "/api/v1/imap/a%00b/test", ``, 404, "", "control character"},
			tcase{"path not UTF-8", "GET", "/api/v1/imap/a%ffb", ``, 404, "", "UTF-8"},
			tcase{"flow path", "GET", "/api/v1/flows/a%00b", ``, 404, "", "control character"},
			tcase{"flow delete path", "DELETE", "/api/v1/flows/a%00b", ``, 404, "", "control character"},
			tcase{"run path", "GET", "/api/v1/runs/a%00b", ``, 404, "", "control character"},
			tcase{"run retry path", "POST", "/api/v1/runs/a%00b/retry", ``, 404, "", "control character"},
			tcase{"messages imap", "GET", "/api/v1/messages?imap=a%00b", ``, 400, "imap", "NUL"},
			tcase{"runs imap", "GET", "/api/v1/runs?imap=a%00b", ``, 400, "imap", "NUL"},
			tcase{"runs flow", "GET", "/api/v1/runs?flow=a%00b", ``, 400, "flow", "NUL"},
			tcase{"runs flow not UTF-8", "GET", "/api/v1/runs?flow=a%ffb", ``, 400, "flow", "UTF-8"},
			tcase{"imap cursor NUL", "GET", "/api/v1/imap?cursor=AA", ``, 400, "cursor", "not a cursor"},
			tcase{"imap cursor not UTF-8", "GET", "/api/v1/imap?cursor=_w", ``, 400, "cursor", "not a cursor"},
			tcase{"flows cursor NUL", "GET", "/api/v1/flows?cursor=AA", ``, 400, "cursor", "not a cursor"},
			tcase{"messages cursor", "GET", "/api/v1/messages?cursor=AA", ``, 400, "cursor", "not a cursor"},
			tcase{"runs cursor", "GET", "/api/v1/runs?cursor=AA", ``, 400, "cursor", "not a cursor"},
		)
		flows := func() string {
			var v any
			if err := h.c.Do(ctx, "GET", "/api/v1/flows", nil, &v); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(v)
			return string(b)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before, beforeFlows := h.snapshot(), flows()
				status, resp := h.raw(tt.method, tt.path, tt.body, nil)
				if status != tt.status {
					t.Fatalf("got status %d (%s), want %d", status, resp, tt.status)
				}
				var eb struct {
					Error struct {
						Message string            `json:"message"`
						Fields  map[string]string `json:"fields"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(resp), &eb); err != nil {
					t.Fatalf("error body %q is not JSON: %v", resp, err)
				}
				if tt.field != "" {
					if msg, ok := eb.Error.Fields[tt.field]; !ok || !strings.Contains(msg, tt.message) || len(eb.Error.Fields) != 1 {
						t.Errorf("got fields %v, want only %s: …%s…", eb.Error.Fields, tt.field, tt.message)
					}
				} else if !strings.Contains(eb.Error.Message, tt.message) {
					t.Errorf("got message %q, want it to contain %q", eb.Error.Message, tt.message)
				}
				if h.snapshot() != before || flows() != beforeFlows {
					t.Error("a rejected request changed the configurations or flows")
				}
			})
		}
		// Tab and line breaks are text in a description and a certificate.
		if _, err := h.c.CreateIMAP(ctx, map[string]any{"name": "multi_line", "host": "imap.example.com", "port": 993,
			"username": "m@example.com", "password": "p", "description": "line one\r\nline two\tend"}); err != nil {
			t.Errorf("a description with tab and line breaks: %v", err)
		}
		if strings.Contains(h.logs.String(), "api request failed") {
			t.Errorf("a request failed with 500:\n%s", h.logs.String())
		}
	})
}
