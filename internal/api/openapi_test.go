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
