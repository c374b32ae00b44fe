package graphsource_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/graphsource"
)

// TestForeignAuthorityNotQuoted: an authorityUrl pointed at something that
// is not an OAuth2 endpoint fails test connection at the token step with
// the answer's status and Content-Type, never its body.
func TestForeignAuthorityNotQuoted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<html>internal admin console: db password hunter2</html>"))
	}))
	defer srv.Close()
	cfg := imapconf.Config{Type: imapconf.TypeMSGraph, Username: "box@example.test", TenantID: "contoso.example",
		ClientID: "app", ClientSecret: "S3cret-value", GraphURL: srv.URL, AuthorityURL: srv.URL, Folder: "INBOX"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := graphsource.Test(ctx, cfg, graphsource.Options{})
	want := "HTTP 404: not an OAuth2 answer (Content-Type text/html)"
	if res.OK || res.Step != graphsource.StepToken || !strings.Contains(res.Error, want) || strings.Contains(res.Error, "hunter2") {
		t.Errorf("got %+v, want step token with %q and nothing of the body", res, want)
	}
}
