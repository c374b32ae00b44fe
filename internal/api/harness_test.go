package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is a running server on a real listener, with a client holding a
// valid token. Every response body it sees is kept in bodies, and every
// exchange with the API is validated against the OpenAPI document.
type harness struct {
	t      *testing.T
	st     *store.Store
	url    string
	token  string
	c      *client.Client
	logs   *testenv.Buffer
	mu     sync.Mutex
	bodies []string
}

func newHarness(t *testing.T, st *store.Store, opts ...func(d *server.Deps)) *harness {
	t.Helper()
	h := &harness{t: t, st: st, logs: &testenv.Buffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	deps := server.Deps{Store: st, Logger: log}
	for _, o := range opts {
		o(&deps)
	}
	srv := httptest.NewServer(server.Handler(deps))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	tok, hash := auth.NewToken()
	if err := st.CreateToken(context.Background(), "test", hash); err != nil {
		t.Fatal(err)
	}
	h.token = tok
	// Every exchange with /api/v1, through the client or raw, is held to
	// the OpenAPI document (contract_test.go).
	h.c = &client.Client{BaseURL: srv.URL, Token: tok,
		HTTP: &http.Client{Transport: &recorder{h: h, next: &contractCheck{t: t, next: http.DefaultTransport}}}}
	return h
}

// recorder keeps a copy of every response body.
type recorder struct {
	h    *harness
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.h.mu.Lock()
	r.h.bodies = append(r.h.bodies, string(data))
	r.h.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp, nil
}

// raw sends a request with a raw body and returns the status and body.
func (h *harness) raw(method, path, body string, header map[string]string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if _, ok := header["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	for k, v := range header {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := h.c.HTTP.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// snapshot is everything the API shows of the IMAP configurations, to prove
// that a rejected request changed nothing.
func (h *harness) snapshot() string {
	h.t.Helper()
	ctx := context.Background()
	list, err := h.c.ListIMAP(ctx, 500, "")
	if err != nil {
		h.t.Fatal(err)
	}
	var all []any
	for _, v := range list.Items {
		full, err := h.c.GetIMAP(ctx, v.Name)
		if err != nil {
			h.t.Fatal(err)
		}
		all = append(all, full)
	}
	// The secrets are part of the state too: read them from the store.
	for _, v := range list.Items {
		c, err := h.st.GetIMAP(ctx, v.Name)
		if err != nil {
			h.t.Fatal(err)
		}
		all = append(all, c.Password, c.ClientSecret)
	}
	data, _ := json.Marshal(all)
	return string(data)
}

func p[T any](v T) *T { return &v }

func genericInput(name string) imapconf.Input {
	return imapconf.Input{Name: p(name), Host: p("imap.example.com"), Port: p(993),
		Username: p("support@example.com"), Password: p("Gen-Secret-" + name)}
}

func graphInput(name string) imapconf.Input {
	return imapconf.Input{Name: p(name), Type: p("msgraph"), Username: p("invoices@contoso.com"),
		TenantID: p("contoso.onmicrosoft.com"), ClientID: p("11111111-2222-3333-4444-555555555555"),
		ClientSecret: p("Graph-Secret-" + name)}
}

func apiErr(t *testing.T, err error) *client.Error {
	t.Helper()
	ce, ok := err.(*client.Error)
	if !ok {
		t.Fatalf("got %v, want an API error", err)
	}
	return ce
}
