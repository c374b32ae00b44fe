package oauthflow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
)

// Values the client sends that must never show in an error text.
const (
	leakCode     = "CODE-4f9a8d7e6c5b4a39281706f5e4d3c2b1"
	leakVerifier = "VERIFIER-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	leakSecret   = "SECRET-z9y8x7w6v5u4t3s2r1q0"
	leakRefresh  = "REFRESH-aaaabbbbccccddddeeeeffff0000"
	leakAccess   = "ACCESS-1111222233334444555566667777"
)

// TestErrorTexts: a provider that quotes everything it was sent (and the
// tokens it issues) in every part of every kind of failing answer; no
// error of Exchange or Refresh holds a code, verifier, secret or token.
func TestErrorTexts(t *testing.T) {
	idToken := func(claims string) string {
		return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "."
	}
	// echo quotes what the client sent, and the tokens the answer hands
	// out (some answers below carry them).
	echo := func(r *http.Request) string {
		_ = r.ParseForm()
		var vals []string
		for _, v := range r.PostForm {
			vals = append(vals, v...)
		}
		return r.PostForm.Encode() + " " + strings.Join(vals, " ") + " " + leakAccess + " " + leakRefresh
	}
	answers := map[string]func(w http.ResponseWriter, r *http.Request){
		"invalid_grant": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 400, map[string]any{"error": "invalid_grant", "error_description": echo(r), "access_token": leakAccess, "refresh_token": leakRefresh})
		},
		"invalid_client": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 401, map[string]any{"error": "invalid_client", "error_description": echo(r), "access_token": leakAccess, "refresh_token": leakRefresh})
		},
		"error code quoting": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 400, map[string]any{"error": echo(r), "error_description": echo(r), "access_token": leakAccess, "refresh_token": leakRefresh})
		},
		"error in a 200": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"error": "server_error", "error_description": echo(r), "access_token": leakAccess, "refresh_token": leakRefresh})
		},
		"not OAuth2": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			_, _ = io.WriteString(w, echo(r))
		},
		"200 not JSON": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, echo(r))
		},
		"no access token": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"refresh_token": leakRefresh, "token_type": "Bearer"})
		},
		"token type": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "refresh_token": leakRefresh, "token_type": leakAccess})
		},
		"no refresh token": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "token_type": "Bearer", "id_token": idToken(`{"email":"a@b"}`)})
		},
		"bad id token": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "refresh_token": leakRefresh, "id_token": leakAccess + "." + leakRefresh + "." + leakSecret})
		},
		"id token not JSON": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "refresh_token": leakRefresh, "id_token": idToken(leakAccess)})
		},
		"id token for another client": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "refresh_token": leakRefresh, "id_token": idToken(`{"aud":"` + leakSecret + `","email":"a@b"}`)})
		},
		"userinfo refuses": func(w http.ResponseWriter, r *http.Request) {
			jsonAnswer(w, 200, map[string]any{"access_token": leakAccess, "refresh_token": leakRefresh})
		},
	}
	refreshOK := map[string]bool{"no refresh token": true, "userinfo refuses": true, "bad id token": true, "id token not JSON": true, "id token for another client": true}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/userinfo" {
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(401)
					_, _ = io.WriteString(w, r.Header.Get("Authorization"))
					return
				}
				answer(w, r)
			}))
			defer srv.Close()
			c := imapconf.Config{
				Provider: imapconf.ProviderCustom, AuthURL: srv.URL + "/auth", TokenURL: srv.URL + "/token",
				Scope: "mail", ClientID: "cid", ClientSecret: leakSecret,
			}
			ep, err := EndpointsOf(c)
			if err != nil {
				t.Fatal(err)
			}
			ep.UserinfoURL = srv.URL + "/userinfo"
			_, err1 := exchange(context.Background(), srv.Client(), ep, c, redirectURI, leakCode, leakVerifier)
			_, err2 := Refresh(context.Background(), srv.Client(), c, leakRefresh)
			for i, err := range []error{err1, err2} {
				if i == 1 && refreshOK[name] {
					continue // a renewal reads neither a refresh token nor the account
				}
				if err == nil {
					t.Fatalf("call %d: no error", i)
				}
				t.Logf("call %d: %v", i, err)
				for _, s := range []string{leakCode, leakVerifier, leakSecret, leakRefresh, leakAccess, "CODE-", "VERIFIER-", "SECRET-", "REFRESH-", "ACCESS-"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("call %d: the error holds %s: %v", i, s, err)
					}
				}
			}
		})
	}
}

func jsonAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// FuzzErrorText: an OAuth2 error answer whose code and description quote
// the client's secrets anywhere (cut anywhere by the length bound) never
// yields an error text holding one.
func FuzzErrorText(f *testing.F) {
	f.Add("invalid_grant", "the code %s was used", "Abc123-_xyzXYZ789", 0)
	f.Add("invalid_client", strings.Repeat("x", 290)+"%s", "Abc123-_xyzXYZ789", 1)
	f.Add("%s", "%s%s", "ab.cd~ef_gh-ij", 2)
	f.Add("server_error", "line one %s\nline two %s", "0000000000000000", 0)
	f.Fuzz(func(t *testing.T, code, desc, secret string, which int) {
		if len(secret) < 8 || strings.Trim(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
			t.Skip("not a token's shape")
		}
		baseline := oauthError("renewing the access token", "x", "", nil).Error() + "invalid_grant" + ErrInvalidGrant.Error()
		if strings.Contains(baseline, secret) {
			t.Skip("the fixed text holds it")
		}
		code = strings.ReplaceAll(code, "%s", secret)
		desc = strings.ReplaceAll(desc, "%s", secret)
		secrets := []string{"other-secret-value", secret, leakSecret}
		secrets[0], secrets[which&1+1] = secrets[which&1+1], secrets[0]
		for _, err := range []error{oauthError("renewing the access token", code, desc, secrets), CallbackError(code, desc)} {
			if _, ok := err.(*ProviderError); ok {
				continue // CallbackError has no secrets to hide
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("%q holds the secret %q", err, secret)
			}
		}
	})
}
