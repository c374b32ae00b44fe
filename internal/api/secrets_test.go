package api_test

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/server"
	"mailtrigger/internal/source/graphsource/graphfake"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/watch"
)

// TestSecretsNeverLeave creates configurations with distinctive secrets,
// calls every route (successes and failures), and finds none of the secrets
// in any response body or log line.
func TestSecretsNeverLeave(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		secrets := []string{"Aardvark-PW-93751", "Bonobo-CS-11873", "Cassowary-OA-55120", "Dingo-PW-edit-7301",
			"Echidna-dup-PW-4410", "Fossa-dup-CS-8823", "Gharial-bad-PW-0042",
			"Hyena-OA-edit-6620", "Impala-OA-dup-3371", "Jackal-OA-bad-9054", "Kudu-OA-pop-1288"}

		gen := genericInput("gen")
		gen.Password = p(secrets[0])
		graph := graphInput("graph")
		graph.ClientSecret = p(secrets[1])
		oauth := genericInput("oauth")
		oauth.Password = nil
		oauth.Auth = p("oauth2")
		oauth.TokenURL = p("https://login.example.com/token")
		oauth.ClientID = p("client")
		oauth.ClientSecret = p(secrets[2])
		// OAuth2 on POP3 too.
		oauthPOP := genericInput("oauth_pop")
		oauthPOP.Password = nil
		oauthPOP.ServerType, oauthPOP.Port = p("pop3s"), p(995)
		oauthPOP.Auth, oauthPOP.TokenURL, oauthPOP.ClientID, oauthPOP.ClientSecret = p("oauth2"), p("https://login.example.com/token"), p("client"), p(secrets[10])
		for _, in := range []imapconf.Input{gen, graph, oauth, oauthPOP} {
			if _, err := h.c.CreateIMAP(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		// Delegated OAuth2 (issue 17): a client secret, a signed-in grant's
		// tokens and a sign-in under way's PKCE verifier.
		signIn := []string{"Lemur-DS-2291", "Mongoose-RT-5512", "Narwhal-AT-7734", "Ocelot-PKCE-verifier-0193", "Pangolin-DS-dup-4470"}
		secrets = append(secrets, signIn...)
		deleg := genericInput("deleg")
		deleg.Password, deleg.Auth, deleg.Provider, deleg.ClientID, deleg.ClientSecret = nil, p("oauth2-delegated"), p("google"), p("client"), p(signIn[0])
		dv, err := h.c.CreateIMAP(ctx, deleg)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := st.GetIMAP(ctx, dv.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SaveOAuthGrant(ctx, store.OAuthGrant{IMAPID: dc.ID, Account: "support@example.com", RefreshToken: signIn[1],
			AccessToken: signIn[2], AccessExpiry: time.Now().Add(time.Hour), SignedInAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateOAuthState(ctx, store.OAuthState{State: "state-of-the-test", IMAPID: dc.ID, Verifier: signIn[3],
			RedirectURI: "https://mailtrigger.example.com/oauth/callback", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		h.raw("GET", "/api/v1/imap/deleg", "", nil)
		h.raw("POST", "/api/v1/imap/deleg/oauth/start", "", nil)
		h.raw("POST", "/api/v1/imap/deleg/test", "", nil)
		h.raw("POST", "/api/v1/imap/deleg/duplicate", `{"clientSecret":"`+signIn[4]+`"}`, nil)
		h.raw("GET", "/api/v1/imap", "", nil)
		h.raw("DELETE", "/api/v1/imap/deleg/oauth", "", nil)

		edit := genericInput("gen")
		edit.Password = p(secrets[3])
		calls := []func() error{
			func() error { _, err := h.c.ListIMAP(ctx, 0, ""); return err },
			func() error { _, err := h.c.GetIMAP(ctx, "gen"); return err },
			func() error { _, err := h.c.GetIMAP(ctx, "graph"); return err },
			func() error { _, err := h.c.GetIMAP(ctx, "oauth"); return err },
			func() error { _, err := h.c.EditIMAP(ctx, "gen", edit); return err },
			func() error {
				_, err := h.c.DuplicateIMAP(ctx, "gen", map[string]string{"password": secrets[4]})
				return err
			},
			func() error {
				_, err := h.c.DuplicateIMAP(ctx, "graph", map[string]string{"clientSecret": secrets[5]})
				return err
			},
			func() error { return h.c.DeleteIMAP(ctx, "gen_copied") },
			func() error { _, err := h.c.GetIMAP(ctx, "oauth_pop"); return err },
			func() error {
				in := oauth
				in.ClientSecret = p(secrets[7])
				_, err := h.c.EditIMAP(ctx, "oauth", in)
				return err
			},
			func() error {
				_, err := h.c.DuplicateIMAP(ctx, "oauth", map[string]string{"clientSecret": secrets[8]})
				return err
			},
			func() error { _, err := h.c.ListIMAP(ctx, 0, ""); return err },
		}
		for i, call := range calls {
			if err := call(); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		// Failures that carry a secret in the request.
		bad := genericInput("bad name")
		bad.Password = p(secrets[6])
		if _, err := h.c.CreateIMAP(ctx, bad); err == nil {
			t.Fatal("bad name accepted")
		}
		h.raw("POST", "/api/v1/imap", `{"name":"x","password":"`+secrets[6]+`","port":"`+secrets[6]+`"}`, nil)
		h.raw("POST", "/api/v1/imap", `{"name":"x","password":`+secrets[6]+`}`, nil)
		h.raw("POST", "/api/v1/imap/gen/duplicate", `{"password":"`+secrets[6]+`","name":"gen"}`, nil)
		h.raw("GET", "/api/v1/imap", "", map[string]string{"Authorization": "Bearer " + secrets[6]})
		h.raw("POST", "/api/v1/imap/gen/test", "", nil)
		h.raw("POST", "/api/v1/imap/oauth/test", "", nil)
		h.raw("POST", "/api/v1/imap", `{"name":"oauth_bad","host":"imap.example.com","port":993,"username":"a@b.example","auth":"oauth2",`+
			`"tokenUrl":"ftp://`+secrets[9]+`","clientId":"x","clientSecret":"`+secrets[9]+`"}`, nil)
		h.raw("POST", "/api/v1/imap/test", `{"host":"127.0.0.1","port":1,"username":"a@b.example","auth":"oauth2",`+
			`"tokenUrl":"http://127.0.0.1:1/token","clientId":"x","clientSecret":"`+secrets[9]+`"}`, nil)
		h.raw("POST", "/api/v1/imap/oauth/duplicate", `{"clientSecret":"`+secrets[9]+`","name":"oauth"}`, nil)
		h.raw("POST", "/api/v1/imap/test", `{"host":"127.0.0.1","port":1,"username":"a@b.example","password":"`+secrets[6]+`"}`, nil)
		h.raw("POST", "/api/v1/flows", `{"name":"f","start":{"emailTrigger":{"imap":"gen","subject":"x"}},"activities":[{"url":"http://127.0.0.1:1/"}]}`, nil)
		for _, path := range []string{"/api/v1/flows", "/api/v1/flows/f", "/api/v1/runs", "/api/v1/messages", "/healthz", "/readyz", "/metrics"} {
			h.raw("GET", path, "", nil)
		}

		h.mu.Lock()
		all := strings.Join(h.bodies, "\n")
		h.mu.Unlock()
		logs := h.logs.String()
		if !strings.Contains(all, `"signIn":{"account":"support@example.com"`) || !strings.Contains(all, `"url":"https://accounts.google.com/`) {
			t.Errorf("the test saw no sign-in: %s", all)
		}
		if !strings.Contains(all, `"hasPassword":true`) || !strings.Contains(all, `"auth":"oauth2"`) ||
			!strings.Contains(all, `"name":"oauth_copied"`) || !strings.Contains(logs, "imap configuration created") {
			t.Fatalf("the test saw too little: %d bytes of bodies, logs %q", len(all), logs)
		}
		for _, s := range secrets {
			if strings.Contains(all, s) {
				t.Errorf("a response body contains the secret %q", s)
			}
			if strings.Contains(logs, s) {
				t.Errorf("the log contains the secret %q", s)
			}
		}
		// The oauth2 secrets were stored (sealed: see the store's
		// TestNoPlaintextSecretsAtRest) and the copy has its own.
		if c, err := st.GetIMAP(ctx, "oauth"); err != nil || c.ClientSecret != secrets[7] {
			t.Errorf("oauth: the edited client secret was not stored (%v)", err)
		}
		if c, err := st.GetIMAP(ctx, "oauth_copied"); err != nil || c.ClientSecret != secrets[8] || c.Enabled {
			t.Errorf("oauth_copied: got enabled %v and not the copy's client secret (%v)", c.Enabled, err)
		}
		if strings.Contains(logs, h.token) {
			t.Error("the log contains the API token")
		}
	})
}

func TestEveryRouteNeedsAToken(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/imap"}, {"POST", "/api/v1/imap"}, {"GET", "/api/v1/imap/x"}, {"PUT", "/api/v1/imap/x"},
		{"DELETE", "/api/v1/imap/x"}, {"POST", "/api/v1/imap/x/duplicate"}, {"GET", "/api/v1/anything"},
	}
	headers := map[string]string{
		"missing":    "",
		"basic":      "Basic YWRtaW46YWRtaW4=",
		"no token":   "Bearer ",
		"wrong":      "Bearer mt_WRONGTOKENVALUE123",
		"raw token":  h.token,
		"lower case": "bearer mt_WRONGTOKENVALUE123",
	}
	for _, r := range routes {
		for name, auth := range headers {
			req, _ := http.NewRequest(r.method, h.url+r.path, strings.NewReader("{}"))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := h.c.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: got %d, want 401", r.method, r.path, name, resp.StatusCode)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: no WWW-Authenticate", r.method, r.path, name)
			}
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "api authentication failed") {
		t.Error("failed authentication was not logged")
	}
	if strings.Contains(logs, "WRONGTOKENVALUE") || strings.Contains(logs, h.token) || strings.Contains(logs, "YWRtaW46YWRtaW4") {
		t.Error("the log contains a token")
	}
	// A revoked token stops working.
	if err := st.RevokeToken(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if status, _ := h.raw("GET", "/api/v1/imap", "", nil); status != http.StatusUnauthorized {
		t.Errorf("revoked token: got %d, want 401", status)
	}
	// Probes and metrics need no token.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := h.c.HTTP.Get(h.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: got %d, want 200", path, resp.StatusCode)
		}
	}
}

// testResult is a connection test's answer; "ok" says it worked.
type testResult map[string]any

// TestStoredSecretsStayWithTheirServer is the exfiltration attempt of issue
// 12: a saved configuration's name with a new destination (host, port, CA,
// token URL, authority URL) and no secret, through test and edit. The new
// destination is a listener that records what it receives; it must never
// receive the stored secret, the request is refused naming the secret's
// field, and an edit changes nothing. With the destination unchanged the
// stored secret still works, and with the secret given again the listener
// does receive it (so that the recorder is known to see a login).
func TestStoredSecretsStayWithTheirServer(t *testing.T) {
	d := testenv.StartDovecot(t)
	oa := oauthfake.New(t)
	gf := graphfake.New(t)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		logs := &testenv.Buffer{}
		tlog := slog.New(slog.NewTextHandler(logs, nil))
		h := newHarness(t, st, func(deps *server.Deps) {
			deps.Runtime = &controlfake.Runtime{TestWith: func(ctx context.Context, c imapconf.Config) any { return watch.TestConnection(ctx, c, tlog) }}
		})
		ctx := context.Background()
		user := d.AddUser(t, "exfil"+strings.ToLower(string(st.Dialect())), "Stored-PW-Okapi-5521")
		pw := d.Password(t, user)
		ca := string(d.CACertPEM)
		const oauthSecret, oauthClient = "Stored-OA-Quokka-7710", "exfil-client"
		oa.AddClient(oauthClient, oauthSecret, user)

		mail := func(name, serverType string, port int) imapconf.Input {
			return imapconf.Input{Name: p(name), ServerType: p(serverType), Host: p(d.Host), Port: p(port),
				Username: p(user), Password: p(pw), CACert: p(ca)}
		}
		oauthIn := mail("oauth", "imaps", d.IMAPSPort)
		oauthIn.Password, oauthIn.Auth = nil, p("oauth2")
		oauthIn.TokenURL, oauthIn.ClientID, oauthIn.ClientSecret = p(oa.TokenURL()), p(oauthClient), p(oauthSecret)
		graphIn := imapconf.Input{Name: p("graph"), Type: p("msgraph"), Username: p("exfil@contoso.com"),
			TenantID: p(graphfake.TenantID), ClientID: p(graphfake.ClientID), ClientSecret: p(graphfake.ClientSecret),
			GraphURL: p(gf.URL), AuthorityURL: p(gf.URL), CACert: p(gf.CACert)}
		gf.AddUser("exfil@contoso.com")

		imapRec := testenv.StartTLSRecorder(t, d.Addr(d.IMAPSPort), d.TLSConfig())
		pop3Rec := testenv.StartTLSRecorder(t, d.Addr(d.POP3SPort), d.TLSConfig())
		tokenRec := testenv.StartHTTPRecorder(t)
		authorityRec := testenv.StartHTTPRecorder(t)

		tests := []struct {
			name        string
			stored      imapconf.Input
			secretField string
			secret      string
			rec         *testenv.Recorder
			redirect    func(in *imapconf.Input) // points in at the recorder
			why         string
		}{
			{"imap password", mail("imap", "imaps", d.IMAPSPort), "password", pw, imapRec, func(in *imapconf.Input) {
				in.Host, in.Port, in.CACert = p(imapRec.Host), p(imapRec.Port), p(string(imapRec.CACertPEM))
			}, "host, port and caCert changed"},
			{"pop3 password", mail("pop3", "pop3s", d.POP3SPort), "password", pw, pop3Rec, func(in *imapconf.Input) {
				in.Host, in.Port, in.CACert = p(pop3Rec.Host), p(pop3Rec.Port), p(string(pop3Rec.CACertPEM))
			}, "host, port and caCert changed"},
			{"oauth2 client secret", oauthIn, "clientSecret", oauthSecret, tokenRec, func(in *imapconf.Input) {
				in.TokenURL = p(tokenRec.URL + "/token")
			}, "tokenUrl changed"},
			{"graph client secret", graphIn, "clientSecret", graphfake.ClientSecret, authorityRec, func(in *imapconf.Input) {
				in.AuthorityURL = p(authorityRec.URL)
			}, "authorityUrl changed"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := h.c.CreateIMAP(ctx, tt.stored); err != nil {
					t.Fatal(err)
				}
				before := h.snapshot()
				// The attack: the stored name, the recorder as destination,
				// no secret (left out, and empty).
				for _, empty := range []bool{false, true} {
					in := tt.stored
					in.Password, in.ClientSecret = nil, nil
					if empty {
						in.Password, in.ClientSecret = p(""), p("")
					}
					tt.redirect(&in)
					var res testResult
					err := h.c.Do(ctx, "POST", "/api/v1/imap/test", in, &res)
					refused(t, "test against a new destination", err, tt.secretField, tt.why)
					if tt.rec.Saw(tt.secret) {
						t.Fatalf("the test sent the stored secret to the new destination")
					}
					_, err = h.c.EditIMAP(ctx, *tt.stored.Name, in)
					refused(t, "edit to a new destination", err, tt.secretField, tt.why)
					if after := h.snapshot(); after != before {
						t.Fatalf("the edit changed the configuration:\n%s\n%s", before, after)
					}
				}
				if tt.rec.Hits() != 0 {
					t.Fatalf("the new destination was contacted %d times", tt.rec.Hits())
				}
				// The stored secret still works where it was saved for:
				// the saved test, and an unsaved test with the same
				// destination and no secret.
				issued := oa.Counts().Issued
				for _, path := range []string{"/api/v1/imap/" + *tt.stored.Name + "/test", "/api/v1/imap/test"} {
					in := tt.stored
					in.Password, in.ClientSecret = nil, nil
					var res testResult
					if err := h.c.Do(ctx, "POST", path, in, &res); err != nil {
						t.Fatalf("%s: %v", path, err)
					}
					if tt.name == "oauth2 client secret" {
						// Dovecot here takes passwords only: the token is
						// what proves the stored secret was used.
						if n := oa.Counts().Issued; n <= issued {
							t.Errorf("%s: no token was issued with the stored client secret (%+v)", path, res)
						}
						issued = oa.Counts().Issued
					} else if res["ok"] != true {
						t.Errorf("%s with the stored secret: got %+v, want ok", path, res)
					}
				}
				// Given again, the secret goes to the new destination: the
				// recorder sees a login when there is one to see.
				in := tt.stored
				tt.redirect(&in)
				var res testResult
				if err := h.c.Do(ctx, "POST", "/api/v1/imap/test", in, &res); err != nil {
					t.Fatal(err)
				}
				if !tt.rec.Saw(tt.secret) {
					t.Errorf("the recorder did not see the secret given again (%+v): the test above proves nothing", res)
				}
				if err := h.c.DeleteIMAP(ctx, *tt.stored.Name); err != nil {
					t.Fatal(err)
				}
			})
		}
		for _, s := range []string{pw, oauthSecret, graphfake.ClientSecret} {
			if strings.Contains(h.logs.String(), s) || strings.Contains(logs.String(), s) {
				t.Errorf("the log contains the secret %q", s)
			}
		}
	})
}

// refused checks that err is a 400 naming field as required again because
// of why.
func refused(t *testing.T, what string, err error, field, why string) {
	t.Helper()
	ce, ok := err.(*client.Error)
	if !ok {
		t.Errorf("%s: got %v, want 400 naming %s", what, err, field)
		return
	}
	if ce.Status != http.StatusBadRequest || !strings.Contains(ce.Fields[field], "required again because "+why) {
		t.Errorf("%s: got %d %v, want 400 naming %s (%s)", what, ce.Status, ce.Fields, field, why)
	}
}

// TestWebhookHeadersAreWriteOnly: an activity's header values are secrets.
// Answers (create, get, list, edit) name the headers and never show a value;
// the definition at rest holds no value; an edit that leaves a value empty
// keeps the stored one only while the URL's scheme, host and port stay the
// same; hop-by-hop headers are refused naming the header.
func TestWebhookHeadersAreWriteOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
			t.Fatal(err)
		}
		const token, team, token2 = "Bearer Hdr-Secret-Okapi-8812", "Hdr-Team-Value-3307", "Bearer Hdr-Secret-New-5150"
		act := func(url string, headers map[string]string) map[string]any {
			return map[string]any{"activities": []any{map[string]any{"type": "webhook", "url": url, "headers": headers}}}
		}
		var v api.FlowView
		if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(act("https://hooks.example.com/a",
			map[string]string{"Authorization": token, "X-Team": team})), &v); err != nil {
			t.Fatal(err)
		}
		names := func(v api.FlowView) map[string]string { return v.Activities[0].Headers }
		want := map[string]string{"Authorization": "", "X-Team": ""}
		if !maps.Equal(names(v), want) {
			t.Errorf("create: got headers %v, want the names only %v", names(v), want)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/flows/invoices", nil, &v); err != nil || !maps.Equal(names(v), want) {
			t.Errorf("get: got headers %v (%v), want %v", names(v), err, want)
		}
		var list struct {
			Items []api.FlowView `json:"items"`
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/flows", nil, &list); err != nil || len(list.Items) != 1 || !maps.Equal(names(list.Items[0]), want) {
			t.Errorf("list: got %+v (%v), want %v", list, err, want)
		}
		stored := func() store.FlowRecord {
			t.Helper()
			fr, err := st.GetFlow(ctx, "invoices")
			if err != nil {
				t.Fatal(err)
			}
			return fr
		}
		fr := stored()
		if strings.Contains(fr.Definition, "Hdr-") || len(fr.Headers) != 1 || fr.Headers[0]["Authorization"] != token {
			t.Fatalf("at rest: definition %s, sealed headers %d, want values sealed apart", fr.Definition, len(fr.Headers))
		}

		// Same URL, value left empty: kept; another value replaced.
		if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(act("https://hooks.example.com/b",
			map[string]string{"Authorization": "", "X-Team": "sales"})), &v); err != nil {
			t.Fatal(err)
		}
		if fr := stored(); fr.Headers[0]["Authorization"] != token || fr.Headers[0]["X-Team"] != "sales" {
			t.Errorf("edit on the same host: got %v, want the stored token kept and X-Team replaced", fr.Headers)
		}
		// Another host, value left empty: refused, nothing changes.
		before := stored()
		for _, url := range []string{"https://evil.example.net/b", "http://hooks.example.com/b", "https://hooks.example.com:8443/b"} {
			err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(act(url, map[string]string{"Authorization": "", "X-Team": "sales"})), nil)
			ce, ok := err.(*client.Error)
			if !ok || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Fields["activities[0].headers.Authorization"], "required again because the url's scheme, host or port changed") {
				t.Errorf("edit to %s keeping the stored value: got %v, want 400 naming activities[0].headers.Authorization", url, err)
			}
		}
		if after := stored(); after.Definition != before.Definition || !maps.Equal(after.Headers[0], before.Headers[0]) {
			t.Errorf("a refused edit changed the flow")
		}
		// Another host with the value given again: taken.
		if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(act("https://other.example.org/b",
			map[string]string{"Authorization": token2})), &v); err != nil {
			t.Fatal(err)
		}
		if fr := stored(); len(fr.Headers[0]) != 1 || fr.Headers[0]["Authorization"] != token2 {
			t.Errorf("edit with the value again: got %v", fr.Headers)
		}
		// A new header needs a value; removing one drops its value.
		err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(act("https://other.example.org/b",
			map[string]string{"Authorization": "", "X-New": ""})), nil)
		if ce, ok := err.(*client.Error); !ok || !strings.Contains(ce.Fields["activities[0].headers.X-New"], "required") {
			t.Errorf("a new header without a value: got %v", err)
		}
		v = api.FlowView{}
		if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(act("https://other.example.org/b", nil)), &v); err != nil {
			t.Fatal(err)
		}
		if fr := stored(); len(fr.Headers) != 0 || len(names(v)) != 0 {
			t.Errorf("headers removed: got %v stored, %v shown", fr.Headers, names(v))
		}

		// Hop-by-hop headers are refused, naming the header.
		for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Host", "Content-Length"} {
			err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(map[string]any{"name": "hop", "activities": []any{
				map[string]any{"url": "https://hooks.example.com/a", "headers": map[string]string{name: "x"}}}}), nil)
			ce, ok := err.(*client.Error)
			if !ok || ce.Status != http.StatusBadRequest || ce.Fields["activities[0].headers."+name] == "" {
				t.Errorf("header %s: got %v, want 400 naming activities[0].headers.%s", name, err, name)
			}
		}
		if _, err := st.GetFlow(ctx, "hop"); err == nil {
			t.Error("a refused flow was stored")
		}

		h.mu.Lock()
		all := strings.Join(h.bodies, "\n")
		h.mu.Unlock()
		for _, s := range []string{token, team, token2, "Hdr-Secret"} {
			if strings.Contains(all, s) || strings.Contains(h.logs.String(), s) {
				t.Errorf("a response or the log contains the header value %q", s)
			}
		}
	})
}

// TestAlertSecretsNeverLeave: an alert subscription's signing secret is in
// the answer of the change that set it and nowhere else: not in a get, a
// list, an edit that keeps it, a test, the deliveries, an error, or the log.
func TestAlertSecretsNeverLeave(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		const given = "whsec_R2l2ZW4tQWxlcnQtU2VjcmV0LVdvbWJhdC05OTE=" // Given-Alert-Secret-Wombat-991
		const rejected = "whsec_UmVqZWN0ZWQtU2VjcmV0LVlhay0wMDQ0"      // in a request refused for another field
		var created, gen api.AlertView
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts", map[string]any{"name": "given", "url": "https://hooks.example.com/a",
			"secret": given, "events": []string{"run.failed"}}, &created); err != nil || created.Secret != given {
			t.Fatalf("create: %+v, %v", created, err)
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/alerts", map[string]any{"name": "generated", "url": "https://hooks.example.com/b",
			"events": []string{"mailbox.auth_failed"}}, &gen); err != nil || gen.Secret == "" {
			t.Fatalf("create: %+v, %v", gen, err)
		}
		h.mu.Lock()
		h.bodies = nil // the two answers that show the secrets once
		h.mu.Unlock()

		for _, call := range []struct{ method, path, body string }{
			{"GET", "/api/v1/alerts", ""},
			{"GET", "/api/v1/alerts/given", ""},
			{"GET", "/api/v1/alerts/generated", ""},
			{"PUT", "/api/v1/alerts/given", `{"name":"given","url":"https://hooks.example.com/a2","events":["run.failed","runs.backlog"]}`},
			{"PUT", "/api/v1/alerts/generated", `{"name":"generated","url":"https://hooks.example.com/b","events":["mailbox.failing"],"enabled":false}`},
			{"POST", "/api/v1/alerts/given/test", ""},
			{"POST", "/api/v1/alerts/generated/test", ""},
			{"GET", "/api/v1/alerts/given/deliveries", ""},
			{"GET", "/api/v1/alerts/generated/deliveries", ""},
			{"POST", "/api/v1/alerts", `{"name":"bad name","url":"https://hooks.example.com/c","secret":"` + rejected + `","events":["run.failed"]}`},
			{"POST", "/api/v1/alerts", `{"name":"given","url":"https://hooks.example.com/c","secret":"` + rejected + `","events":["run.failed"]}`},
			{"PUT", "/api/v1/alerts/given", `{"name":"given","url":"ftp://x","secret":"` + rejected + `","events":["run.failed"]}`},
			{"GET", "/api/v1/alerts", ""},
		} {
			if status, body := h.raw(call.method, call.path, call.body, map[string]string{"Content-Type": "application/json"}); status >= 500 {
				t.Fatalf("%s %s: %d %s", call.method, call.path, status, body)
			}
		}
		h.mu.Lock()
		all := strings.Join(h.bodies, "\n")
		h.mu.Unlock()
		if !strings.Contains(all, `"hasSecret":true`) || !strings.Contains(all, `"alert.test"`) || !strings.Contains(all, `"validation_failed"`) {
			t.Fatalf("the test saw too little: %s", all)
		}
		logs := h.logs.String()
		for _, s := range []string{given, gen.Secret, rejected, strings.TrimPrefix(given, "whsec_"), strings.TrimPrefix(gen.Secret, "whsec_")} {
			if strings.Contains(all, s) {
				t.Errorf("a response body after the create contains the secret %q", s)
			}
			if strings.Contains(logs, s) {
				t.Errorf("the log contains the secret %q", s)
			}
		}
		if a, err := st.GetAlert(ctx, "given"); err != nil || a.Secret != given {
			t.Errorf("an edit without a secret did not keep it (%v)", err)
		}
	})
}

// TestSigningSecretsStayWithTheirHost: a flow webhook's or an alert
// subscription's stored signing secret signs only for the scheme, host and
// port it was saved for. An edit that moves the url elsewhere and leaves
// the secret out gets a new secret, shown once in that answer, as a new
// webhook does; the old one is gone. With a secret given it is that one; on
// the same origin (another path) the stored one is kept and not shown. A
// refused edit keeps the stored secret.
func TestSigningSecretsStayWithTheirHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
			t.Fatal(err)
		}
		const stored, given = "whsec_U3RvcmVkLVNpZ25pbmctS2V5LUliZXgtNzcyMQ==", "whsec_R2l2ZW4tU2lnbmluZy1LZXktTHlueC0zMzA5"

		t.Run("flow", func(t *testing.T) {
			act := func(url string, secret any) map[string]any {
				a := map[string]any{"type": "webhook", "url": url}
				if secret != nil {
					a["secret"] = secret
				}
				return map[string]any{"activities": []any{a}}
			}
			secret := func() string {
				t.Helper()
				fr, err := st.GetFlow(ctx, "invoices")
				if err != nil || len(fr.Secrets) != 1 {
					t.Fatalf("got %v, %v", fr.Secrets, err)
				}
				return fr.Secrets[0]
			}
			put := func(body map[string]any) api.FlowView {
				t.Helper()
				var v api.FlowView
				if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(body), &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(act("https://receiver.example.com/hook", stored)), nil); err != nil {
				t.Fatal(err)
			}

			// Same origin, another path: kept, not shown.
			if v := put(act("https://receiver.example.com/other", nil)); v.Activities[0].Secret != "" || secret() != stored {
				t.Errorf("same origin: got shown %q, stored %q; want the stored secret kept, not shown", v.Activities[0].Secret, secret())
			}
			// A move refused for another field (the timeout): nothing
			// changes.
			body := act("https://attacker.example.net/x", nil)
			body["activities"].([]any)[0].(map[string]any)["timeout"] = "10m"
			if err := h.c.Do(ctx, "PUT", "/api/v1/flows/invoices", flowBody(body), nil); apiErr(t, err).Status != http.StatusBadRequest {
				t.Errorf("refused edit: got %v, want 400", err)
			}
			if fr, _ := st.GetFlow(ctx, "invoices"); secret() != stored || !strings.Contains(fr.Definition, "receiver.example.com") {
				t.Errorf("a refused edit changed the flow: %s", fr.Definition)
			}
			// Another host, scheme or port, secret left out: a new one,
			// shown once.
			prevSecret := stored
			for _, url := range []string{"https://attacker.example.net/x", "http://attacker.example.net/x", "http://attacker.example.net:8080/x"} {
				v := put(act(url, nil))
				got := secret()
				if got == prevSecret || v.Activities[0].Secret != got || !strings.HasPrefix(got, "whsec_") {
					t.Errorf("moved to %s: got shown %q, stored %q, before %q; want a new secret, shown", url, v.Activities[0].Secret, got, prevSecret)
				}
				prevSecret = got
			}
			// Another host with the secret given: that one, not shown.
			if v := put(act("https://receiver2.example.org/hook", given)); v.Activities[0].Secret != "" || secret() != given {
				t.Errorf("secret given: got shown %q, stored %q; want %q, not shown", v.Activities[0].Secret, secret(), given)
			}
		})

		t.Run("alert", func(t *testing.T) {
			secret := func() string {
				t.Helper()
				a, err := st.GetAlert(ctx, "ops")
				if err != nil {
					t.Fatal(err)
				}
				return a.Secret
			}
			alert := func(url string) map[string]any {
				return map[string]any{"name": "ops", "url": url, "events": []string{"run.failed"}}
			}
			put := func(body map[string]any) api.AlertView {
				t.Helper()
				var v api.AlertView
				if err := h.c.Do(ctx, "PUT", "/api/v1/alerts/ops", body, &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			create := alert("https://receiver.example.com/alerts")
			create["secret"] = stored
			if err := h.c.Do(ctx, "POST", "/api/v1/alerts", create, nil); err != nil {
				t.Fatal(err)
			}
			if v := put(alert("https://receiver.example.com/other")); v.Secret != "" || secret() != stored {
				t.Errorf("same origin: got shown %q, stored %q; want the stored secret kept, not shown", v.Secret, secret())
			}
			bad := alert("https://attacker.example.net/x")
			bad["events"] = []string{"no.such_event"}
			if err := h.c.Do(ctx, "PUT", "/api/v1/alerts/ops", bad, nil); apiErr(t, err).Status != http.StatusBadRequest {
				t.Errorf("refused edit: got %v, want 400", err)
			}
			if a, _ := st.GetAlert(ctx, "ops"); a.Secret != stored || a.URL != "https://receiver.example.com/other" {
				t.Errorf("a refused edit changed the subscription: %s", a.URL)
			}
			v := put(alert("https://attacker.example.net/x"))
			if got := secret(); got == stored || v.Secret != got || !strings.HasPrefix(got, "whsec_") {
				t.Errorf("moved: got shown %q, stored %q; want a new secret, shown", v.Secret, got)
			}
			given2 := alert("https://receiver2.example.org/alerts")
			given2["secret"] = given
			if v := put(given2); v.Secret != given || secret() != given {
				t.Errorf("secret given: got shown %q, stored %q; want %q", v.Secret, secret(), given)
			}
		})

		if strings.Contains(h.logs.String(), stored) || strings.Contains(h.logs.String(), given) {
			t.Error("the log contains a signing secret")
		}
	})
}
