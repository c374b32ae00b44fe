package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
