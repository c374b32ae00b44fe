package oauthfake_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/source/xoauth2/oauthfake"
)

func post(t *testing.T, u string, form url.Values, basic [2]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestServer: client credentials in the form or by Basic, the errors of
// RFC 6749 §5.2, and introspection of active, expired, revoked and unknown
// tokens.
func TestServer(t *testing.T) {
	s := oauthfake.New(t)
	s.AddClient("app", "secret", "box@example.test")
	s.SetClientExpiresIn("app", time.Second)
	grant := func(id, secret, scope string, basic bool) (int, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
		if basic {
			return post(t, s.TokenURL(), form, [2]string{id, secret})
		}
		form.Set("client_id", id)
		form.Set("client_secret", secret)
		return post(t, s.TokenURL(), form, [2]string{})
	}
	tests := []struct {
		name, id, secret, scope string
		basic                   bool
		status                  int
		errCode                 string
	}{
		{"form", "app", "secret", oauthfake.Scope, false, 200, ""},
		{"basic", "app", "secret", oauthfake.Scope, true, 200, ""},
		{"wrong secret", "app", "nope", oauthfake.Scope, false, 401, "invalid_client"},
		{"unknown client", "other", "secret", oauthfake.Scope, false, 400, "unauthorized_client"},
		{"wrong scope", "app", "secret", "https://graph.microsoft.com/.default", false, 400, "invalid_scope"},
	}
	var tokens []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := grant(tt.id, tt.secret, tt.scope, tt.basic)
			if status != tt.status || (tt.errCode != "" && body["error"] != tt.errCode) {
				t.Fatalf("got %d %v, want %d %s", status, body, tt.status, tt.errCode)
			}
			if tt.errCode == "" {
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(1) || body["access_token"] == "" {
					t.Errorf("got %v", body)
				}
				tokens = append(tokens, body["access_token"].(string))
			} else if strings.Contains(body["error_description"].(string), tt.secret) {
				t.Errorf("the error echoes the secret: %v", body)
			}
		})
	}
	if c := s.Counts(); c.Issued != 2 || c.TokenErrors != 3 || len(tokens) != 2 || tokens[0] == tokens[1] {
		t.Fatalf("got counts %+v, tokens %v", c, tokens)
	}
	introspect := func(tok string) map[string]any {
		_, body := post(t, s.IntrospectionURL(), url.Values{"token": {tok}}, [2]string{})
		return body
	}
	if b := introspect(tokens[0]); b["active"] != true || b["username"] != "box@example.test" || b["scope"] != oauthfake.Scope {
		t.Errorf("active token: got %v", b)
	}
	s.Revoke(tokens[0])
	if b := introspect(tokens[0]); b["active"] != false || b["username"] != "box@example.test" {
		t.Errorf("revoked token: got %v", b)
	}
	if b := introspect("unknown"); b["active"] != false {
		t.Errorf("unknown token: got %v", b)
	}
	// On purpose: the token must expire before it is introspected.
	time.Sleep(time.Until(s.Tokens()[1].Expiry) + 10*time.Millisecond)
	if b := introspect(tokens[1]); b["active"] != false {
		t.Errorf("expired token: got %v", b)
	}
	if c := s.Counts(); c.Introspections != 4 || c.Active != 1 || c.Revoked != 1 || c.Expired != 1 {
		t.Errorf("got counts %+v", c)
	}
}
