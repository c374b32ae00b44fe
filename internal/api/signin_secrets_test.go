package api_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"mailtrigger/internal/control"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/server"
	"mailtrigger/internal/source/sources"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// spyGrants is the store's grants, counting the reads of each
// configuration's grant (a read is what hands its tokens to a source).
type spyGrants struct {
	*store.Store
	mu    sync.Mutex
	reads map[int64]int
}

func (s *spyGrants) GetOAuthGrant(ctx context.Context, id int64) (store.OAuthGrant, error) {
	s.mu.Lock()
	s.reads[id]++
	s.mu.Unlock()
	return s.Store.GetOAuthGrant(ctx, id)
}

func (s *spyGrants) RenewOAuthGrant(ctx context.Context, id int64, renew func(store.OAuthGrant) (store.OAuthGrant, error)) (store.OAuthGrant, error) {
	s.mu.Lock()
	s.reads[id]++
	s.mu.Unlock()
	return s.Store.RenewOAuthGrant(ctx, id, renew)
}

func (s *spyGrants) readsOf(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[id]
}

// TestSignInStaysWithItsDestination is the exfiltration attempt of issue
// 12 against a signed-in configuration, with an API token only: POST
// /api/v1/imap/test naming the configuration with one destination field
// changed (and the client secret left out, empty, or one of the attacker's
// choosing) must not use the configuration's grant (its refresh token would
// go to a new token URL, its access token to a new server or Graph URL); an
// edit of that field forgets the grant; a copy has none. With the
// destination unchanged the test does use the grant (so that the spy is
// known to see it).
func TestSignInStaysWithItsDestination(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	spy := &spyGrants{Store: st, reads: map[int64]int{}}
	logs := &testenv.Buffer{}
	tlog := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarness(t, st, func(d *server.Deps) {
		d.BaseURL = "https://mailtrigger.example.com"
		d.Runtime = &controlfake.Runtime{TestWith: func(ctx context.Context, c imapconf.Config) any {
			return sources.Test(ctx, c, sources.Options{Logger: tlog, Grants: spy})
		}}
	})
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient("pub-client")
	fake.SetSignInUser("owner@example.com")
	rec := testenv.StartHTTPRecorder(t)

	custom := imapconf.Input{Name: p("custom_box"), Host: p("127.0.0.1"), Port: p(1), Username: p("owner@example.com"),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderCustom), ClientID: p("pub-client"),
		AuthURL: p(fake.AuthorizeURL()), TokenURL: p(fake.TokenURL()), Scope: p("openid email offline_access")}
	graph := imapconf.Input{Name: p("graph_box"), Type: p(imapconf.TypeMSGraph), Username: p("owner@example.com"),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderMicrosoft), ClientID: p("pub-client"),
		AuthorityURL: p(fake.URL), GraphURL: p("http://127.0.0.1:1"), Scope: p("openid email offline_access")}
	for _, in := range []imapconf.Input{custom, graph} {
		if _, err := h.c.CreateIMAP(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	signIn := func(t *testing.T, name string) int64 {
		t.Helper()
		var start struct {
			URL         string `json:"url"`
			RedirectURI string `json:"redirectUri"`
			ExpiresAt   string `json:"expiresAt"`
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/imap/"+name+"/oauth/start", nil, &start); err != nil {
			t.Fatal(err)
		}
		back, err := fake.Consent(ctx, nil, start.URL, true)
		if err != nil {
			t.Fatal(err)
		}
		cb := control.Callback{State: back.Query().Get("state"), Code: back.Query().Get("code")}
		if _, _, err := control.New(st, nil, nil).CompleteSignIn(ctx, "admin", 1, cb, nil); err != nil {
			t.Fatalf("signing in to %s: %v", name, err)
		}
		return mustID(t, st, name)
	}

	tests := []struct {
		field  string
		stored imapconf.Input
		change func(in *imapconf.Input)
	}{
		{"tokenUrl", custom, func(in *imapconf.Input) { in.TokenURL = p(rec.URL + "/token") }},
		{"authUrl", custom, func(in *imapconf.Input) { in.AuthURL = p(rec.URL + "/authorize") }},
		{"host", custom, func(in *imapconf.Input) { in.Host = p("127.0.0.2") }},
		{"port", custom, func(in *imapconf.Input) { in.Port = p(2) }},
		{"username", custom, func(in *imapconf.Input) { in.Username = p("attacker@example.com") }},
		{"clientId", custom, func(in *imapconf.Input) { in.ClientID = p("attacker-client") }},
		{"scope", custom, func(in *imapconf.Input) { in.Scope = p("openid email offline_access extra") }},
		{"serverType", custom, func(in *imapconf.Input) { in.ServerType = p(imapconf.ServerPOP3S) }},
		{"tls", custom, func(in *imapconf.Input) { in.TLS = p(imapconf.TLSStartTLS) }},
		{"provider", custom, func(in *imapconf.Input) {
			in.Provider, in.AuthorityURL = p(imapconf.ProviderMicrosoft), p(rec.URL)
		}},
		{"type", custom, func(in *imapconf.Input) { in.Type, in.GraphURL = p(imapconf.TypeMSGraph), p(rec.URL) }},
		{"graphUrl", graph, func(in *imapconf.Input) { in.GraphURL = p(rec.URL) }},
		{"authorityUrl", graph, func(in *imapconf.Input) { in.AuthorityURL = p(rec.URL) }},
		{"tenantId", graph, func(in *imapconf.Input) { in.TenantID = p("consumers") }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			name := *tt.stored.Name
			id := signIn(t, name)
			// The attack: the stored name, one destination field changed.
			for _, secret := range []*string{nil, p(""), p("attacker-chosen-secret")} {
				in := tt.stored
				in.ClientSecret = secret
				tt.change(&in)
				before := spy.readsOf(id)
				var res testResult
				if err := h.c.Do(ctx, "POST", "/api/v1/imap/test", in, &res); err != nil {
					t.Fatalf("test: %v", err)
				}
				if n := spy.readsOf(id) - before; n != 0 {
					t.Errorf("test with %s changed (client secret %v) read the stored sign-in %d times: %+v", tt.field, secret, n, res)
				}
				if res["step"] != "token" || res["error"] != "nobody signed in yet: sign in first" {
					t.Errorf("test with %s changed: got %+v, want the token step: nobody signed in yet", tt.field, res)
				}
			}
			// With the destination unchanged the stored sign-in is used.
			before := spy.readsOf(id)
			var res testResult
			if err := h.c.Do(ctx, "POST", "/api/v1/imap/test", tt.stored, &res); err != nil {
				t.Fatal(err)
			}
			if spy.readsOf(id) == before {
				t.Errorf("the unchanged test did not read the sign-in (%+v): the test above proves nothing", res)
			}
			// An edit of the field forgets the sign-in.
			in := tt.stored
			tt.change(&in)
			if v, err := h.c.EditIMAP(ctx, name, in); err != nil || v.SignIn != nil {
				t.Fatalf("edit of %s: got %+v, %v; want no sign-in", tt.field, v.SignIn, err)
			}
			if _, err := h.c.EditIMAP(ctx, name, tt.stored); err != nil {
				t.Fatal(err)
			}
			if v, err := h.c.GetIMAP(ctx, name); err != nil || v.SignIn != nil {
				t.Fatalf("edited back: got %+v, %v; want no sign-in", v.SignIn, err)
			}
		})
	}

	// A copy is not signed in, and its test does not read the original's
	// sign-in.
	id := signIn(t, "custom_box")
	cp, err := h.c.DuplicateIMAP(ctx, "custom_box", map[string]any{"name": "copy_box"})
	if err != nil || cp.SignIn != nil {
		t.Fatalf("duplicate: got %+v, %v", cp, err)
	}
	in := custom
	in.Name, in.TokenURL = p("copy_box"), p(rec.URL+"/token")
	before := spy.readsOf(id)
	var res testResult
	if err := h.c.Do(ctx, "POST", "/api/v1/imap/test", in, &res); err != nil {
		t.Fatal(err)
	}
	if spy.readsOf(id) != before || res["error"] != "nobody signed in yet: sign in first" {
		t.Errorf("test of the copy: got %+v (reads of the original's sign-in %d → %d)", res, before, spy.readsOf(id))
	}

	var secrets []string
	for _, tok := range fake.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	for _, rt := range fake.RefreshTokens("") {
		secrets = append(secrets, rt.Value)
	}
	for _, s := range secrets {
		if rec.Saw(s) {
			t.Errorf("the recorder received a token …%s…", s[:6])
		}
		if strings.Contains(logs.String(), s) || strings.Contains(h.logs.String(), s) {
			t.Errorf("a log line holds a token …%s…", s[:6])
		}
	}
}
