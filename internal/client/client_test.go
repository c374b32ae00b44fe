package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A server that redirects (the plain HTTP listener sending every request to
// HTTPS with a 301) turns a PUT or DELETE into a GET when the redirect is
// followed: the GET succeeds and the change was never made. The client
// follows no redirect: it fails, naming where the server points, and the
// token goes nowhere else.
func TestRedirectIsAnErrorNotASilentGET(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"support"}`))
	}))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	defer redirect.Close()

	for _, hc := range []*http.Client{nil, {}} {
		c := &Client{BaseURL: redirect.URL, Token: "mt_secret-token", HTTP: hc}
		err := c.DeleteIMAP(context.Background(), "support")
		var ae *Error
		if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), target.URL) {
			t.Errorf("DELETE through a redirect: got %v, want an error naming %s", err, target.URL)
		}
		if _, err := c.EditIMAP(context.Background(), "support", map[string]any{"host": "imap.example.com"}); err == nil {
			t.Error("PUT through a redirect: no error")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 0 {
		t.Errorf("the redirect was followed: %v", seen)
	}
}
