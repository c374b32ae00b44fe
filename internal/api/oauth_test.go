package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestSignInStartRefused: the sign-in routes answer 404 for an unknown
// configuration and 400 naming auth for one that does not sign in, and
// change nothing.
func TestSignInStartRefused(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	ctx := context.Background()
	if _, err := h.c.CreateIMAP(ctx, genericInput("password_box")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.CreateIMAP(ctx, graphInput("graph_box")); err != nil {
		t.Fatal(err)
	}
	before := h.snapshot()
	for _, tt := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"POST", "/api/v1/imap/nobody/oauth/start", http.StatusNotFound, `"not_found"`},
		{"DELETE", "/api/v1/imap/nobody/oauth", http.StatusNotFound, `"not_found"`},
		{"POST", "/api/v1/imap/password_box/oauth/start", http.StatusBadRequest, `"auth":"must be oauth2-delegated to sign in (it is password)"`},
		{"POST", "/api/v1/imap/graph_box/oauth/start", http.StatusBadRequest, `"auth":"must be oauth2-delegated to sign in (it is app-only client credentials)"`},
		{"DELETE", "/api/v1/imap/password_box/oauth", http.StatusBadRequest, `"auth"`},
		{"GET", "/api/v1/imap/password_box/oauth/start", http.StatusMethodNotAllowed, `"method_not_allowed"`},
	} {
		status, body := h.raw(tt.method, tt.path, "", nil)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s: got %d %s, want %d with %s", tt.method, tt.path, status, body, tt.status, tt.want)
		}
	}
	if status, _ := h.raw("POST", "/api/v1/imap/password_box/oauth/start", "", map[string]string{"Authorization": "Bearer nope"}); status != http.StatusUnauthorized {
		t.Errorf("a bad token: got %d, want 401", status)
	}
	if after := h.snapshot(); after != before {
		t.Errorf("a refused sign-in changed the configurations:\n%s\n%s", before, after)
	}
	v, err := h.c.GetIMAP(ctx, "password_box")
	if err != nil || v.SignIn != nil {
		t.Errorf("got %+v, %v; want no signIn", v.SignIn, err)
	}
}
