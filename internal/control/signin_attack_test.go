package control_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// signInInput is an oauth2-delegated configuration signing in at fake as
// username.
func signInInput(name, username string, fake *oauthfake.Server) imapconf.Input {
	return imapconf.Input{Name: p(name), Host: p("imap.example.com"), Port: p(993), Username: p(username),
		Auth: p(imapconf.AuthOAuth2Delegated), Provider: p(imapconf.ProviderCustom), ClientID: p("attack-client"),
		AuthURL: p(fake.AuthorizeURL()), TokenURL: p(fake.TokenURL()), Scope: p("openid email offline_access")}
}

// roundTrip is an http.RoundTripper made of a function.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// consent starts a sign-in of conf and consents at fake: the callback.
func consent(t *testing.T, ch *control.Changes, conf imapconf.Config, fake *oauthfake.Server) control.Callback {
	t.Helper()
	ctx := context.Background()
	start, err := ch.StartSignIn(ctx, "admin", conf, control.APIUser, "https://mt.example.com/oauth/callback")
	if err != nil {
		t.Fatal(err)
	}
	back, err := fake.Consent(ctx, nil, start.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	return control.Callback{State: back.Query().Get("state"), Code: back.Query().Get("code")}
}

// TestSignInRacesAnEdit: an edit that changes the destination of a
// configuration while its sign-in is being completed (between the state
// taken and the grant stored: during the code exchange) wins: the grant is
// not stored for the new destination (its tokens would go there), and the
// sign-in fails saying so. An edit that changes no destination does not
// stop it.
func TestSignInRacesAnEdit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		fake := oauthfake.New(t)
		fake.AddPublicClient("attack-client")
		fake.SetSignInUser("owner@example.com")
		ch := control.New(st, nil, nil)
		in := signInInput("race_box", "owner@example.com", fake)
		conf, err := ch.CreateIMAP(ctx, "", in, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			what   string
			change func(in *imapconf.Input)
			stored bool
		}{
			{"host", func(in *imapconf.Input) { in.Host = p("imap.evil.example.net") }, false},
			{"tokenUrl", func(in *imapconf.Input) { in.TokenURL = p("https://evil.example.net/token") }, false},
			{"description", func(in *imapconf.Input) { in.Description = p("edited") }, true},
		} {
			t.Run(tt.what, func(t *testing.T) {
				cb := consent(t, ch, conf, fake)
				// The edit lands while the code is being exchanged.
				hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
					prev, err := st.GetIMAP(ctx, "race_box")
					if err != nil {
						return nil, err
					}
					edit := in
					tt.change(&edit)
					if _, err := ch.EditIMAP(ctx, "attacker", prev, edit, nil); err != nil {
						return nil, err
					}
					return http.DefaultTransport.RoundTrip(r)
				})}
				_, _, err := ch.CompleteSignIn(ctx, "admin", 1, cb, hc)
				_, gerr := st.GetOAuthGrant(ctx, conf.ID)
				if tt.stored {
					if err != nil || gerr != nil {
						t.Errorf("got %v, grant %v; want the sign-in stored", err, gerr)
					}
				} else {
					var se *control.SignInError
					if !errors.As(err, &se) || !strings.Contains(se.Msg, "changed during the sign-in") {
						t.Errorf("got %v, want a sign-in error saying the configuration changed", err)
					}
					if !errors.Is(gerr, store.ErrNotFound) {
						t.Errorf("a grant was stored for the edited destination (%v)", gerr)
					}
				}
				// Back to the stored destination, nobody signed in.
				prev, err := st.GetIMAP(ctx, "race_box")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ch.EditIMAP(ctx, "admin", prev, in, nil); err != nil {
					t.Fatal(err)
				}
				if err := st.DeleteOAuthGrant(ctx, conf.ID); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// TestSignInAccountMustMatch: the account that signed in must be the
// configured user name, with ASCII letters in any case and nothing else
// folded: a look-alike (the Kelvin sign folds to k under Unicode), a
// longer domain is another account, and nothing is stored. (Spaces around
// the ID token's claim are not part of the account: oauthflow trims them.)
func TestSignInAccountMustMatch(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	fake := oauthfake.New(t)
	fake.AddPublicClient("attack-client")
	ch := control.New(st, nil, nil)
	conf, err := ch.CreateIMAP(ctx, "", signInInput("match_box", "Kim@Example.com", fake), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		account string
		ok      bool
	}{
		{"\u212aim@example.com", false},
		{"kim@example.com ", true},
		{"kim@example.com\u00a0x", false},
		{"kim@example.com.evil", false},
		{"kim@example.co", false},
		{"kim@exampl\u0435.com", false}, // Cyrillic e
		{"kim@EXAMPLE.COM", true},
		{"kim@example.com", true},
	} {
		fake.SetSignInUser(tt.account)
		_, g, err := ch.CompleteSignIn(ctx, "admin", 1, consent(t, ch, conf, fake), nil)
		_, gerr := st.GetOAuthGrant(ctx, conf.ID)
		if tt.ok {
			if err != nil || gerr != nil || g.Account != strings.TrimSpace(tt.account) {
				t.Errorf("%q: got %v (account %q), grant %v; want it stored", tt.account, err, g.Account, gerr)
			}
		} else {
			var se *control.SignInError
			if !errors.As(err, &se) || !strings.Contains(se.Msg, "but the configuration's username is Kim@Example.com") {
				t.Errorf("%q: got %v, want the sign-in refused naming the user name", tt.account, err)
			}
			if !errors.Is(gerr, store.ErrNotFound) {
				t.Errorf("%q: a grant was stored (%v)", tt.account, gerr)
			}
		}
		if err := st.DeleteOAuthGrant(ctx, conf.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSignInEditBeforeRead: an edit that lands after the sign-in's state
// was taken but before its configuration is read (the edit's deletion of
// pending states comes too late for this one) must not send the code and
// PKCE verifier to the edited token endpoint: the sign-in fails before
// any request, and nothing is stored.
func TestSignInEditBeforeRead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		fake := oauthfake.New(t)
		fake.AddPublicClient("attack-client")
		fake.SetSignInUser("owner@example.com")
		evil := oauthfake.New(t)
		evil.AddPublicClient("attack-client")
		ch := control.New(st, nil, nil)
		in := signInInput("pin_box", "owner@example.com", fake)
		conf, err := ch.CreateIMAP(ctx, "", in, nil)
		if err != nil {
			t.Fatal(err)
		}
		cb := consent(t, ch, conf, fake)
		control.SetAfterTakeState(func() {
			prev, err := st.GetIMAP(ctx, "pin_box")
			if err != nil {
				t.Error(err)
				return
			}
			edit := in
			edit.TokenURL = p(evil.TokenURL())
			if _, err := ch.EditIMAP(ctx, "attacker", prev, edit, nil); err != nil {
				t.Error(err)
			}
		})
		t.Cleanup(func() { control.SetAfterTakeState(nil) })
		before := evil.Counts()
		_, _, err = ch.CompleteSignIn(ctx, "admin", 1, cb, http.DefaultClient)
		var se *control.SignInError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "changed while its sign-in") {
			t.Errorf("got %v, want a sign-in error saying the configuration changed", err)
		}
		if after := evil.Counts(); after != before {
			t.Errorf("the edited token endpoint was called: %+v → %+v", before, after)
		}
		if _, gerr := st.GetOAuthGrant(ctx, conf.ID); !errors.Is(gerr, store.ErrNotFound) {
			t.Errorf("a grant was stored (%v)", gerr)
		}
	})
}
