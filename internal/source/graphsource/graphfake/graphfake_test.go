package graphfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"mailtrigger/internal/source/graphsource/graphfake"
)

const user = "box@contoso.example"

func call(t *testing.T, s *graphfake.Server, method, u, token string, body io.Reader, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, resp.Header, out
}

func token(t *testing.T, s *graphfake.Server, secret string) (int, map[string]any) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {graphfake.ClientID},
		"client_secret": {secret}, "scope": {graphfake.GraphScope}}
	st, _, out := call(t, s, "POST", s.TokenURL(), "", strings.NewReader(form.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	return st, out
}

func TestTokenEndpoint(t *testing.T) {
	s := graphfake.New(t)
	st, out := token(t, s, "wrong")
	if st != 401 || out["error"] != "invalid_client" || !strings.HasPrefix(out["error_description"].(string), "AADSTS7000215:") {
		t.Errorf("wrong secret: %d %v", st, out)
	}
	st, out = token(t, s, graphfake.ClientSecret)
	if st != 200 || out["token_type"] != "Bearer" || out["access_token"] == "" || out["expires_in"].(float64) != 3600 {
		t.Errorf("token: %d %v", st, out)
	}
}

func TestDeltaPagingRemovalsAndFaults(t *testing.T) {
	s := graphfake.New(t)
	s.AddUser(user)
	var ids []string
	for range 5 {
		ids = append(ids, s.AddMessage(user, []byte("Subject: hi\r\n\r\nbody\r\n")))
	}
	_, out := token(t, s, graphfake.ClientSecret)
	tok := out["access_token"].(string)
	base := s.URL + "/v1.0/users/" + user

	if st, _, out := call(t, s, "GET", base+"/mailFolders/inbox", "", nil, nil); st != 401 || out["error"].(map[string]any)["code"] != "InvalidAuthenticationToken" {
		t.Errorf("no token: %d %v", st, out)
	}
	if st, _, out := call(t, s, "GET", s.URL+"/v1.0/users/x@y/mailFolders/inbox", tok, nil, nil); st != 404 || out["error"].(map[string]any)["code"] != "ErrorInvalidUser" {
		t.Errorf("unknown user: %d %v", st, out)
	}

	link, pages, n := base+"/mailFolders/inbox/messages/delta?$select=id,isRead", 0, 0
	for pages < 10 {
		st, _, out := call(t, s, "GET", link, tok, nil, map[string]string{"Prefer": "odata.maxpagesize=2"})
		if st != 200 {
			t.Fatalf("delta: %d %v", st, out)
		}
		pages++
		n += len(out["value"].([]any))
		if next, ok := out["@odata.nextLink"].(string); ok {
			link = next
			continue
		}
		link = out["@odata.deltaLink"].(string)
		break
	}
	if pages != 3 || n != 5 {
		t.Errorf("%d pages, %d items; want 3 pages, 5 items", pages, n)
	}

	if st, _, _ := call(t, s, "DELETE", base+"/messages/"+ids[0], tok, nil, nil); st != 204 {
		t.Errorf("delete: %d", st)
	}
	st, _, out := call(t, s, "GET", link, tok, nil, nil)
	vals, _ := out["value"].([]any)
	if st != 200 || len(vals) != 1 || vals[0].(map[string]any)["@removed"] == nil {
		t.Errorf("incremental delta after delete: %d %v", st, out)
	}

	s.Inject(graphfake.Fault{PathContains: "/delta", Status: 429, RetryAfter: "3"})
	if st, h, _ := call(t, s, "GET", link, tok, nil, nil); st != 429 || h.Get("Retry-After") != "3" {
		t.Errorf("injected 429: %d %v", st, h)
	}
	s.ExpireDeltaTokens()
	if st, _, out := call(t, s, "GET", link, tok, nil, nil); st != 410 || out["error"].(map[string]any)["code"] != "syncStateNotFound" {
		t.Errorf("expired delta token: %d %v", st, out)
	}
	s.ExpireTokens()
	if st, _, out := call(t, s, "GET", link, tok, nil, nil); st != 401 || out["error"].(map[string]any)["code"] != "InvalidAuthenticationToken" {
		t.Errorf("expired token: %d %v", st, out)
	}
	if len(s.Requests()) == 0 {
		t.Error("empty request log")
	}
}

// TestDelegatedTokens: with a validator, a delegated token reads /me and
// the signed-in user's /users/{user}, not another user's; an invalid one
// is 401; an app-only token cannot read /me.
func TestDelegatedTokens(t *testing.T) {
	s := graphfake.New(t)
	s.AddUser(user)
	s.AddUser("other@contoso.example")
	s.AddMessage(user, []byte("Subject: hi\r\n\r\nhello\r\n"))
	s.SetTokenValidator(func(tok string) (string, bool) {
		if tok == "delegated-good" {
			return user, true
		}
		return "", false
	})
	base := s.URL + "/v1.0"
	if st, _, out := call(t, s, "GET", base+"/me/mailFolders/inbox", "delegated-good", nil, nil); st != 200 || out["totalItemCount"].(float64) != 1 {
		t.Errorf("/me with a delegated token: %d %v", st, out)
	}
	if st, _, out := call(t, s, "GET", base+"/users/"+user+"/mailFolders/inbox", "delegated-good", nil, nil); st != 200 {
		t.Errorf("/users/{own} with a delegated token: %d %v", st, out)
	}
	if st, _, out := call(t, s, "GET", base+"/users/other@contoso.example/mailFolders/inbox", "delegated-good", nil, nil); st != 403 {
		t.Errorf("/users/{other} with a delegated token: %d %v, want 403", st, out)
	}
	if st, _, out := call(t, s, "GET", base+"/me/mailFolders/inbox", "delegated-revoked", nil, nil); st != 401 {
		t.Errorf("/me with an invalid token: %d %v, want 401", st, out)
	}
	_, out := token(t, s, graphfake.ClientSecret)
	if st, _, out := call(t, s, "GET", base+"/me/mailFolders/inbox", out["access_token"].(string), nil, nil); st != 400 {
		t.Errorf("/me with an app-only token: %d %v, want 400", st, out)
	}
}
