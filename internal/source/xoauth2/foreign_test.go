package xoauth2_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/xoauth2"
)

// TestForeignAnswerNotQuoted: a tokenUrl pointed at something that is not
// an OAuth2 endpoint gets a token step error that says what answered (its
// status and Content-Type) but never what it said, so that test connection
// cannot be used to read out services the service can reach.
func TestForeignAnswerNotQuoted(t *testing.T) {
	const page = "<html>internal admin console: db password hunter2</html>"
	for _, tt := range []struct {
		name   string
		status int
		ctype  string
		want   string
	}{
		{"html 404", http.StatusNotFound, "text/html; charset=utf-8", "token endpoint answered HTTP 404: not an OAuth2 answer (Content-Type text/html; charset=utf-8)"},
		{"plain 500", http.StatusInternalServerError, "text/plain", "token endpoint answered HTTP 500: not an OAuth2 answer (Content-Type text/plain)"},
		{"json without error", http.StatusForbidden, "application/json", "token endpoint answered HTTP 403: not an OAuth2 answer (Content-Type application/json)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				body := page
				if tt.ctype == "application/json" {
					body = `{"message":"` + page + `"}`
				}
				w.Write([]byte(body))
			}))
			defer srv.Close()
			cfg := imapconf.Config{TokenURL: srv.URL + "/token", ClientID: "app", ClientSecret: "S3cret-value", Username: "box@example.test"}
			ts, err := xoauth2.NewTokenSource(cfg, xoauth2.Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ts.Token(context.Background())
			var se *source.StepError
			if !errors.As(err, &se) || se.Step != xoauth2.StepToken {
				t.Fatalf("got %v, want a token step error", err)
			}
			if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "admin console") || !strings.Contains(msg, tt.want) {
				t.Errorf("got %q, want %q and nothing of the answer's body", msg, tt.want)
			}
		})
	}
}
