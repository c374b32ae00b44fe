package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"mailtrigger/internal/api"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestOpenAPIIsServedWithoutAToken: GET /api/v1/openapi.json answers the
// document kept in the repository, as JSON, to a client without a token.
func TestOpenAPIIsServedWithoutAToken(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite))
	req, err := http.NewRequest(http.MethodGet, h.url+api.OpenAPIPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(data, api.OpenAPI()) {
		t.Error("the document served is not the one kept in the repository")
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if _, ok := doc.Paths[api.OpenAPIPath]; !ok {
		t.Errorf("the document does not describe %s", api.OpenAPIPath)
	}
	// Only GET: the other methods are refused like any API route's.
	if status, _ := h.raw(http.MethodPost, api.OpenAPIPath, "{}", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: got %d, want 405", api.OpenAPIPath, status)
	}
}

// TestOpenAPIDocumentIsValid: the document passes the validator's document
// checks (the OpenAPI 3.1 schema) and builds into a model whose every
// reference resolves.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	if v := c.model.Version; !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", v)
	}
	if ok, errs := c.v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("document check: %s: %s", e.Message, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("\t%s", f.Error())
			}
		}
	}
	idx := c.doc.GetRolodex()
	if idx != nil {
		for _, e := range idx.GetCaughtErrors() {
			t.Errorf("reference: %v", e)
		}
	}
}

// TestOpenAPIHasEveryRoute walks the routes the API registers: each must be
// an operation of the document, and each operation of the document a
// registered route, so that neither can be added without the other.
func TestOpenAPIHasEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	registered := map[string]bool{}
	for _, pattern := range api.RoutePatterns() {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			if pattern != "/api/v1/" {
				t.Errorf("route %q has no method: the document cannot describe it", pattern)
			}
			continue // the catch-all: 404 or 405 as JSON errors
		}
		registered[pattern] = true
		if !strings.HasPrefix(path, "/api/v1/") {
			t.Errorf("route %q is outside /api/v1", pattern)
		}
		if !documented[method+" "+path] {
			t.Errorf("route %s %s is not in the OpenAPI document (internal/api/openapi.json)", method, path)
		}
	}
	if len(registered) < 20 {
		t.Errorf("only %d routes registered: the walk is broken", len(registered))
	}
	for op := range documented {
		if !registered[op] {
			t.Errorf("the OpenAPI document describes %s, which the API does not register", op)
		}
	}
}

// TestOpenAPISecretsAreWriteOnly: in the document, every property that
// carries a secret (a password, a client secret, a webhook's secret or
// header values) is writeOnly where a request sends it, and no answer's
// schema has one but the webhook and alert secrets shown once.
func TestOpenAPISecretsAreWriteOnly(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					WriteOnly bool `json:"writeOnly"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"password", "clientSecret", "secret"}
	inputs := map[string][]string{
		"IMAPConfigInput": {"password", "clientSecret"},
		"DuplicateInput":  {"password", "clientSecret"},
		"ActivityInput":   {"secret", "headers"},
		"AlertInput":      {"secret"},
	}
	for name, props := range inputs {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("no schema %s", name)
			continue
		}
		for _, p := range props {
			if prop, ok := s.Properties[p]; !ok || !prop.WriteOnly {
				t.Errorf("%s.%s is not writeOnly", name, p)
			}
		}
	}
	for name, s := range doc.Components.Schemas {
		if _, input := inputs[name]; input {
			continue
		}
		for _, p := range secrets {
			shownOnce := (name == "Activity" || name == "Alert") && p == "secret"
			if _, ok := s.Properties[p]; ok && !shownOnce {
				t.Errorf("answer schema %s has the secret %s", name, p)
			}
		}
	}
}
