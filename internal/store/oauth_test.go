package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// delegatedIMAP is an oauth2-delegated configuration named name.
func delegatedIMAP(name string) imapconf.Config {
	c := sampleIMAP(name)
	c.Password, c.Auth = "", imapconf.AuthOAuth2Delegated
	c.Provider, c.AuthURL, c.TokenURL = imapconf.ProviderCustom, "https://id.example/authorize", "https://id.example/token"
	c.ClientID, c.ClientSecret, c.Scope = "client-"+name, "CS-"+name, "https://mail.example/ offline_access"
	return c
}

func createIMAP(t *testing.T, s *store.Store, c imapconf.Config) imapconf.Config {
	t.Helper()
	if err := s.CreateIMAP(context.Background(), &c); err != nil {
		t.Fatalf("creating %s: %v", c.Name, err)
	}
	return c
}

// rawRows returns every value of every row of table, as text, for looking
// for a secret in it.
func rawRows(t *testing.T, s *store.Store, table string) string {
	t.Helper()
	rows, err := store.DB(s).QueryContext(context.Background(), `SELECT * FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if bs, ok := v.([]byte); ok {
				b.Write(bs)
			} else {
				fmt.Fprint(&b, v)
			}
			b.WriteByte('|')
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func countRows(t *testing.T, s *store.Store, table string) int {
	t.Helper()
	var n int
	if err := store.DB(s).QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIMAPProviderRoundTrip: provider and authUrl are stored, created and
// edited.
func TestIMAPProviderRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := createIMAP(t, s, delegatedIMAP("Delegated"))
		got, err := s.GetIMAP(ctx, "delegated")
		if err != nil || got.Provider != imapconf.ProviderCustom || got.AuthURL != "https://id.example/authorize" {
			t.Fatalf("got provider %q, authUrl %q, %v", got.Provider, got.AuthURL, err)
		}
		c.Provider, c.AuthURL = imapconf.ProviderGoogle, ""
		if err := s.UpdateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListIMAP(ctx, "", 10)
		if err != nil || len(list) != 1 || list[0].Provider != imapconf.ProviderGoogle || list[0].AuthURL != "" {
			t.Fatalf("listed %+v, %v", list, err)
		}
	})
}

// TestOAuthStates: a state is kept hashed with its verifier sealed, taken
// once, refused once expired, and the expired ones are pruned.
func TestOAuthStates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := createIMAP(t, s, delegatedIMAP("states"))
		now := time.Now().UTC()
		st := store.OAuthState{State: "STATE-0123456789abcdef", IMAPID: c.ID, UserID: 7,
			Verifier: "VERIFIER-0123456789abcdef0123456789", RedirectURI: "https://mt.example/oauth/callback",
			ExpiresAt: now.Add(10 * time.Minute).Truncate(time.Microsecond)}
		if err := s.CreateOAuthState(ctx, st); err != nil {
			t.Fatal(err)
		}
		raw := rawRows(t, s, "oauth_states")
		for _, secretValue := range []string{st.State, st.Verifier} {
			if strings.Contains(raw, secretValue) {
				t.Errorf("oauth_states holds %q: %q", secretValue, raw)
			}
		}
		if !strings.Contains(raw, st.RedirectURI) {
			t.Errorf("oauth_states %q lacks the redirect URI", raw)
		}

		got, err := s.TakeOAuthState(ctx, st.State, now)
		if err != nil {
			t.Fatal(err)
		}
		if !got.ExpiresAt.Equal(st.ExpiresAt) {
			t.Errorf("expires %v, want %v", got.ExpiresAt, st.ExpiresAt)
		}
		got.ExpiresAt = st.ExpiresAt
		conf, err := s.GetIMAP(ctx, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !got.ConfigUpdatedAt.Equal(conf.UpdatedAt) {
			t.Errorf("config updated at %v, want the configuration's %v", got.ConfigUpdatedAt, conf.UpdatedAt)
		}
		got.ConfigUpdatedAt = time.Time{}
		if got != st {
			t.Errorf("took %+v, want %+v", got, st)
		}
		if _, err := s.TakeOAuthState(ctx, st.State, now); !errors.Is(err, store.ErrStateInvalid) {
			t.Errorf("taken twice: %v, want ErrStateInvalid", err)
		}
		if _, err := s.TakeOAuthState(ctx, "unknown", now); !errors.Is(err, store.ErrStateInvalid) {
			t.Errorf("unknown state: %v, want ErrStateInvalid", err)
		}

		// Expired: refused (and gone).
		st.State = "STATE-expiring"
		if err := s.CreateOAuthState(ctx, st); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TakeOAuthState(ctx, st.State, st.ExpiresAt); !errors.Is(err, store.ErrStateInvalid) {
			t.Errorf("expired state: %v, want ErrStateInvalid", err)
		}
		if n := countRows(t, s, "oauth_states"); n != 0 {
			t.Errorf("%d states left, want the expired one taken", n)
		}

		// Expired states are pruned when another sign-in starts.
		old := st
		old.State, old.ExpiresAt = "STATE-old", now.Add(-time.Second)
		if err := s.CreateOAuthState(ctx, old); err != nil {
			t.Fatal(err)
		}
		st.State = "STATE-new"
		if err := s.CreateOAuthState(ctx, st); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, s, "oauth_states"); n != 1 {
			t.Errorf("%d states, want the expired one pruned", n)
		}
		if err := s.CreateOAuthState(ctx, st); !errors.Is(err, store.ErrConflict) {
			t.Errorf("the same state twice: %v, want ErrConflict", err)
		}

		// The state is kept as its SHA-256; a verifier is bound to its
		// state: copied to another one's row, it does not open.
		hash := func(state string) string {
			h := sha256.Sum256([]byte(state))
			return hex.EncodeToString(h[:])
		}
		var n int
		if err := store.DB(s).QueryRowContext(ctx, `SELECT COUNT(*) FROM oauth_states WHERE state_hash = $1`, hash(st.State)).Scan(&n); err != nil || n != 1 {
			t.Errorf("%d states with the hash of %s, %v", n, st.State, err)
		}
		other := st
		other.State, other.Verifier = "STATE-other", "VERIFIER-other"
		if err := s.CreateOAuthState(ctx, other); err != nil {
			t.Fatal(err)
		}
		if _, err := store.DB(s).ExecContext(ctx, `UPDATE oauth_states SET verifier_sealed =
			(SELECT verifier_sealed FROM oauth_states WHERE state_hash = $1) WHERE state_hash = $2`, hash(st.State), hash(other.State)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.TakeOAuthState(ctx, other.State, now); !errors.Is(err, secret.ErrOpen) || got.Verifier != "" ||
			strings.Contains(err.Error(), st.Verifier) {
			t.Errorf("copied verifier: %+v, %v, want secret.ErrOpen", got, err)
		}

		if err := s.CreateOAuthState(ctx, store.OAuthState{State: "x", IMAPID: c.ID + 100, Verifier: "v",
			ExpiresAt: st.ExpiresAt}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("state of a missing configuration: %v, want ErrNotFound", err)
		}
	})
}

// sampleGrant is a grant of configuration id, with its tokens named after
// tag.
func sampleGrant(id int64, tag string) store.OAuthGrant {
	return store.OAuthGrant{IMAPID: id, Account: "Support@Example.com",
		RefreshToken: "RT-" + tag + "-0123456789", AccessToken: "AT-" + tag + "-0123456789",
		AccessExpiry: time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond),
		SignedInAt:   time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)}
}

func sameGrant(t *testing.T, got, want store.OAuthGrant) {
	t.Helper()
	if !got.AccessExpiry.Equal(want.AccessExpiry) || !got.SignedInAt.Equal(want.SignedInAt) {
		t.Errorf("times %v %v, want %v %v", got.AccessExpiry, got.SignedInAt, want.AccessExpiry, want.SignedInAt)
	}
	got.AccessExpiry, got.SignedInAt = want.AccessExpiry, want.SignedInAt
	if got != want {
		t.Errorf("grant %+v, want %+v", got, want)
	}
}

func getGrant(t *testing.T, s *store.Store, id int64) store.OAuthGrant {
	t.Helper()
	g, err := s.GetOAuthGrant(context.Background(), id)
	if err != nil {
		t.Fatalf("grant of %d: %v", id, err)
	}
	return g
}

func noGrant(t *testing.T, s *store.Store, id int64, why string) {
	t.Helper()
	if g, err := s.GetOAuthGrant(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: grant %+v, %v, want ErrNotFound", why, g, err)
	}
}

// TestOAuthGrants: a grant is stored with its tokens sealed for its
// configuration's row, read back, marked broken, replaced (and mended) by
// a new sign-in, and forgotten. A sign-in and a sign-out move the
// configuration's UpdatedAt (its watcher restarts), a broken mark and a
// renewal do not.
func TestOAuthGrants(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := createIMAP(t, s, delegatedIMAP("a"))
		b := createIMAP(t, s, delegatedIMAP("b"))
		noGrant(t, s, a.ID, "before the sign-in")
		updated := a.UpdatedAt
		moved := func(what string, want bool) {
			t.Helper()
			c, err := s.GetIMAP(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if got := !c.UpdatedAt.Equal(updated); got != want {
				t.Errorf("%s: updatedAt moved %v, want %v", what, got, want)
			}
			updated = c.UpdatedAt
		}

		g := sampleGrant(a.ID, "a")
		time.Sleep(time.Millisecond) // so that a move shows
		if err := s.SaveOAuthGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		moved("sign-in", true)
		sameGrant(t, getGrant(t, s, a.ID), g)
		raw := rawRows(t, s, "oauth_grants")
		for _, v := range []string{g.RefreshToken, g.AccessToken} {
			if strings.Contains(raw, v) {
				t.Errorf("oauth_grants holds %q in the clear", v)
			}
		}

		// Without an access token cached.
		gb := sampleGrant(b.ID, "b")
		gb.AccessToken, gb.AccessExpiry = "", time.Time{}
		if err := s.SaveOAuthGrant(ctx, gb); err != nil {
			t.Fatal(err)
		}
		sameGrant(t, getGrant(t, s, b.ID), gb)

		signIns, err := s.OAuthSignIns(ctx, []int64{a.ID, b.ID, b.ID + 100})
		if err != nil || len(signIns) != 2 || signIns[a.ID].Account != g.Account || !signIns[b.ID].SignedInAt.Equal(gb.SignedInAt) {
			t.Errorf("sign-ins %+v, %v", signIns, err)
		}

		if err := s.MarkOAuthGrantBroken(ctx, a.ID, "invalid_grant: revoked"); err != nil {
			t.Fatal(err)
		}
		broken := g
		broken.Broken = "invalid_grant: revoked"
		sameGrant(t, getGrant(t, s, a.ID), broken)
		if _, err := s.RenewOAuthGrant(ctx, a.ID, func(r store.OAuthGrant) (store.OAuthGrant, error) {
			r.AccessToken = "AT-renewed"
			return r, nil
		}); err != nil {
			t.Fatal(err)
		}
		moved("broken mark and renewal", false)
		if signIns, _ := s.OAuthSignIns(ctx, []int64{a.ID}); signIns[a.ID].Broken != broken.Broken {
			t.Errorf("sign-in %+v, want it broken", signIns[a.ID])
		}
		if err := s.MarkOAuthGrantBroken(ctx, a.ID+100, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("marking a missing grant: %v, want ErrNotFound", err)
		}

		// A new sign-in replaces the grant and mends it.
		g2 := sampleGrant(a.ID, "a2")
		g2.Account = "other@example.com"
		time.Sleep(time.Millisecond)
		if err := s.SaveOAuthGrant(ctx, g2); err != nil {
			t.Fatal(err)
		}
		moved("new sign-in", true)
		sameGrant(t, getGrant(t, s, a.ID), g2)

		// Sealed for the row: a's tokens copied to b's row do not open.
		if _, err := store.DB(s).ExecContext(ctx, `UPDATE oauth_grants SET
			refresh_token_sealed = (SELECT refresh_token_sealed FROM oauth_grants WHERE imap_id = $1),
			access_token_sealed = (SELECT access_token_sealed FROM oauth_grants WHERE imap_id = $1) WHERE imap_id = $2`, a.ID, b.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetOAuthGrant(ctx, b.ID); !errors.Is(err, secret.ErrOpen) || !store.OnlySecret(err) ||
			strings.Contains(err.Error(), g2.RefreshToken) || got.RefreshToken != "" {
			t.Errorf("copied token: %+v, %v, want secret.ErrOpen", got, err)
		}

		if err := s.SaveOAuthGrant(ctx, store.OAuthGrant{IMAPID: a.ID, Account: "x", AccessToken: "AT"}); err == nil {
			t.Error("a grant without a refresh token was saved")
		}
		sameGrant(t, getGrant(t, s, a.ID), g2)
		if err := s.SaveOAuthGrant(ctx, sampleGrant(b.ID+100, "none")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("grant of a missing configuration: %v, want ErrNotFound", err)
		}

		moved("refused sign-ins", false)
		time.Sleep(time.Millisecond)
		if err := s.DeleteOAuthGrant(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		moved("sign-out", true)
		noGrant(t, s, a.ID, "signed out")
		time.Sleep(time.Millisecond)
		if err := s.DeleteOAuthGrant(ctx, a.ID); err != nil {
			t.Errorf("signing out twice: %v", err)
		}
		moved("second sign-out", false)
		if err := s.DeleteOAuthGrant(ctx, a.ID+100); err != nil {
			t.Errorf("signing out of a missing configuration: %v", err)
		}
	})
}

// TestOAuthGrantFollowsConfiguration: an edit of a destination drops the
// grant and the sign-ins under way, another edit keeps them; a copy has no
// grant; deleting the configuration deletes them.
func TestOAuthGrantFollowsConfiguration(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := createIMAP(t, s, delegatedIMAP("follow"))
		g := sampleGrant(c.ID, "follow")
		save := func() {
			t.Helper()
			if err := s.SaveOAuthGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			st := store.OAuthState{State: "S-" + fmt.Sprint(time.Now().UnixNano()), IMAPID: c.ID, Verifier: "V",
				ExpiresAt: time.Now().Add(time.Minute)}
			if err := s.CreateOAuthState(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
		update := func(edit func(c *imapconf.Config)) {
			t.Helper()
			e := c
			edit(&e)
			if err := s.UpdateIMAP(ctx, &e); err != nil {
				t.Fatal(err)
			}
			c = e
		}
		save()
		update(func(c *imapconf.Config) {
			c.Description, c.Enabled, c.PollInterval, c.Name = "edited", false, 90, "Follow2"
		})
		sameGrant(t, getGrant(t, s, c.ID), g)
		if n := countRows(t, s, "oauth_states"); n != 1 {
			t.Errorf("%d states after an edit, want 1", n)
		}

		for _, edit := range []struct {
			field string
			fn    func(c *imapconf.Config)
		}{
			{"host", func(c *imapconf.Config) { c.Host = "imap.elsewhere.example" }},
			{"username", func(c *imapconf.Config) { c.Username = "someone@example.com" }},
			{"tokenUrl", func(c *imapconf.Config) { c.TokenURL = "https://evil.example/token" }},
			{"clientId", func(c *imapconf.Config) { c.ClientID = "another-client" }},
		} {
			save()
			update(edit.fn)
			noGrant(t, s, c.ID, "after changing "+edit.field)
			if n := countRows(t, s, "oauth_states"); n != 0 {
				t.Errorf("%d states after changing %s, want 0", n, edit.field)
			}
		}

		save()
		cp, err := imapconf.Duplicate(c, imapconf.DuplicateInput{ClientSecret: ptr("CS-copy")})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateIMAPCopy(ctx, &cp, c.Name); err != nil {
			t.Fatal(err)
		}
		noGrant(t, s, cp.ID, "the copy")
		if signIns, err := s.OAuthSignIns(ctx, []int64{c.ID, cp.ID}); err != nil || len(signIns) != 1 {
			t.Errorf("sign-ins %+v, %v, want the original's only", signIns, err)
		}

		if err := s.DeleteIMAP(ctx, c.Name); err != nil {
			t.Fatal(err)
		}
		for _, tb := range []string{"oauth_grants", "oauth_states"} {
			if n := countRows(t, s, tb); n != 0 {
				t.Errorf("%d rows in %s after the configuration was deleted", n, tb)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestMigrateOAuth: migration 00012 adds the provider columns and the two
// tables, and goes down again, with configurations stored.
func TestMigrateOAuth(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
			if d == store.Postgres {
				o.DatabaseURL = testenv.PostgresURL(t)
			}
			old, err := store.OpenAt(ctx, o, 11)
			if err != nil {
				t.Fatal(err)
			}
			createOldIMAP(t, ctx, store.DB(old), sampleIMAP("before"))
			old.Close()

			s, err := store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetIMAP(ctx, "before")
			if err != nil || got.Provider != "" || got.AuthURL != "" {
				t.Fatalf("got %+v, %v", got, err)
			}
			dc := createIMAP(t, s, delegatedIMAP("delegated"))
			if err := s.SaveOAuthGrant(ctx, sampleGrant(dc.ID, "m")); err != nil {
				t.Fatal(err)
			}
			if err := store.MigrateDownTo(ctx, s, 11); err != nil {
				t.Fatalf("migrating down: %v", err)
			}
			for _, tb := range []string{"oauth_grants", "oauth_states"} {
				if _, err := store.DB(s).ExecContext(ctx, `SELECT COUNT(*) FROM `+tb); err == nil {
					t.Errorf("table %s still exists", tb)
				}
			}
			if _, err := store.DB(s).ExecContext(ctx, `SELECT provider FROM imap_configs`); err == nil {
				t.Error("column provider still exists")
			}
			s.Close()
			s, err = store.Open(ctx, o)
			if err != nil {
				t.Fatalf("migrating up again: %v", err)
			}
			defer s.Close()
			noGrant(t, s, dc.ID, "after down and up")
			if got, err := s.GetIMAP(ctx, "delegated"); err != nil || got.Provider != "" {
				t.Errorf("got %+v, %v", got, err)
			}
		})
	}
}
