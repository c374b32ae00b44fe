package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// fakeProvider renews like a token endpoint that rotates refresh tokens:
// only the newest refresh token works, each use issues a new one.
type fakeProvider struct {
	mu      sync.Mutex
	refresh string // the refresh token that works
	served  int    // refreshes served
	refused int    // refreshes refused (invalid_grant)
}

var errInvalidGrant = errors.New("invalid_grant")

// renew is a watcher's renewal: nothing to do while the access token has
// more than 5 minutes left, else a refresh at the provider.
func (p *fakeProvider) renew(g store.OAuthGrant) (store.OAuthGrant, error) {
	if g.AccessToken != "" && time.Until(g.AccessExpiry) > 5*time.Minute {
		return g, nil
	}
	time.Sleep(50 * time.Millisecond) // the round trip, while others come
	p.mu.Lock()
	defer p.mu.Unlock()
	if g.RefreshToken != p.refresh {
		p.refused++
		return g, errInvalidGrant
	}
	p.served++
	p.refresh = fmt.Sprintf("RT-rotated-%d", p.served)
	g.RefreshToken, g.AccessToken = p.refresh, fmt.Sprintf("AT-%d", p.served)
	g.AccessExpiry = time.Now().Add(time.Hour)
	return g, nil
}

// expireAccess makes the stored access token of id due.
func expireAccess(t *testing.T, s *store.Store, id int64) {
	t.Helper()
	if _, err := store.DB(s).ExecContext(context.Background(), `UPDATE oauth_grants SET access_expiry = $1 WHERE imap_id = $2`,
		time.Now().UTC().Add(-time.Minute), id); err != nil {
		t.Fatal(err)
	}
}

// TestRenewOAuthGrantOnce: goroutines (and on PostgreSQL two stores on one
// database, as two replicas) renewing one grant at once: the provider is
// asked once, every caller gets the renewed token, and the rotated refresh
// token is what is stored, round after round.
func TestRenewOAuthGrantOnce(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			var replicas []*store.Store
			if d == store.SQLite {
				replicas = append(replicas, storetest.Open(t, d))
			} else {
				o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t), DatabaseURL: testenv.PostgresURL(t)}
				for range 2 {
					s, err := store.Open(ctx, o)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					replicas = append(replicas, s)
				}
			}
			s := replicas[0]
			c := createIMAP(t, s, delegatedIMAP("renew"))
			g := sampleGrant(c.ID, "0")
			g.AccessExpiry = time.Now().Add(-time.Second)
			if err := s.SaveOAuthGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			p := &fakeProvider{refresh: g.RefreshToken}
			for round := 1; round <= 3; round++ {
				if round > 1 {
					expireAccess(t, s, c.ID)
				}
				const callers = 8
				got := make([]store.OAuthGrant, callers)
				errs := make([]error, callers)
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() {
						got[i], errs[i] = replicas[i%len(replicas)].RenewOAuthGrant(ctx, c.ID, p.renew)
					})
				}
				wg.Wait()
				want := fmt.Sprintf("AT-%d", round)
				for i := range callers {
					if errs[i] != nil || got[i].AccessToken != want {
						t.Errorf("round %d, caller %d: %q, %v, want %s", round, i, got[i].AccessToken, errs[i], want)
					}
				}
				if p.served != round || p.refused != 0 {
					t.Fatalf("round %d: the provider served %d refreshes and refused %d, want %d and 0", round, p.served, p.refused, round)
				}
				for _, r := range replicas {
					stored := getGrant(t, r, c.ID)
					if stored.RefreshToken != p.refresh || stored.AccessToken != want || stored.Account != g.Account {
						t.Errorf("round %d: stored %+v, want refresh token %s", round, stored, p.refresh)
					}
				}
			}
			if raw := rawRows(t, s, "oauth_grants"); strings.Contains(raw, p.refresh) || strings.Contains(raw, "AT-3") {
				t.Errorf("the renewed tokens are in the clear: %q", raw)
			}
		})
	}
}

// TestRenewOAuthGrant: what renew returns is stored (an empty refresh
// token keeps the stored one), an error stores nothing, an unchanged
// answer writes nothing, and without a grant renew is not called.
func TestRenewOAuthGrant(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := createIMAP(t, s, delegatedIMAP("renew"))
		called := false
		if _, err := s.RenewOAuthGrant(ctx, c.ID, func(g store.OAuthGrant) (store.OAuthGrant, error) {
			called = true
			return g, nil
		}); !errors.Is(err, store.ErrNotFound) || called {
			t.Errorf("without a grant: %v (renew called: %v), want ErrNotFound", err, called)
		}

		g := sampleGrant(c.ID, "0")
		if err := s.SaveOAuthGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		updatedAt := func() string {
			t.Helper()
			var u time.Time
			if err := store.DB(s).QueryRowContext(ctx, `SELECT updated_at FROM oauth_grants WHERE imap_id = $1`, c.ID).Scan(&u); err != nil {
				t.Fatal(err)
			}
			return u.UTC().String()
		}

		// An error stores nothing.
		boom := errors.New("provider down")
		if _, err := s.RenewOAuthGrant(ctx, c.ID, func(g store.OAuthGrant) (store.OAuthGrant, error) {
			g.RefreshToken, g.AccessToken = "RT-lost", "AT-lost"
			return g, boom
		}); !errors.Is(err, boom) {
			t.Errorf("got %v, want renew's error", err)
		}
		sameGrant(t, getGrant(t, s, c.ID), g)

		// Unchanged: nothing written.
		before := updatedAt()
		time.Sleep(2 * time.Millisecond) // so that a write would show in updated_at
		got, err := s.RenewOAuthGrant(ctx, c.ID, func(got store.OAuthGrant) (store.OAuthGrant, error) {
			sameGrant(t, got, g)
			return got, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sameGrant(t, got, g)
		if after := updatedAt(); after != before {
			t.Errorf("an unchanged renewal wrote the grant (updated %s, was %s)", after, before)
		}

		// A new access token without a new refresh token keeps the stored
		// one; the account and sign-in time stay whatever renew says.
		exp := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Microsecond)
		got, err = s.RenewOAuthGrant(ctx, c.ID, func(r store.OAuthGrant) (store.OAuthGrant, error) {
			return store.OAuthGrant{IMAPID: 999, Account: "mallory@example.com", AccessToken: "AT-1", AccessExpiry: exp}, nil
		})
		want := g
		want.AccessToken, want.AccessExpiry = "AT-1", exp
		if err != nil {
			t.Fatal(err)
		}
		sameGrant(t, got, want)
		sameGrant(t, getGrant(t, s, c.ID), want)

		// A rotated refresh token is stored; renew may mend a broken grant.
		if err := s.MarkOAuthGrantBroken(ctx, c.ID, "invalid_grant"); err != nil {
			t.Fatal(err)
		}
		got, err = s.RenewOAuthGrant(ctx, c.ID, func(r store.OAuthGrant) (store.OAuthGrant, error) {
			if r.Broken != "invalid_grant" {
				t.Errorf("renew got %+v, want it broken", r)
			}
			r.RefreshToken, r.AccessToken, r.Broken = "RT-2", "AT-2", ""
			return r, nil
		})
		want.RefreshToken, want.AccessToken = "RT-2", "AT-2"
		if err != nil {
			t.Fatal(err)
		}
		sameGrant(t, got, want)
		sameGrant(t, getGrant(t, s, c.ID), want)

		ctx2, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.RenewOAuthGrant(ctx2, c.ID, func(r store.OAuthGrant) (store.OAuthGrant, error) { return r, nil }); err == nil {
			t.Error("a renewal with a cancelled context went through")
		}
	})
}

// TestRenewOAuthGrantSignInMeanwhile: a new sign-in while a renewal runs
// wins: its grant is what stays.
func TestRenewOAuthGrantSignInMeanwhile(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := createIMAP(t, s, delegatedIMAP("meanwhile"))
		if err := s.SaveOAuthGrant(ctx, sampleGrant(c.ID, "old")); err != nil {
			t.Fatal(err)
		}
		fresh := sampleGrant(c.ID, "new")
		fresh.Account = "new@example.com"
		saved := make(chan error, 1)
		_, err := s.RenewOAuthGrant(ctx, c.ID, func(g store.OAuthGrant) (store.OAuthGrant, error) {
			go func() { saved <- s.SaveOAuthGrant(ctx, fresh) }()
			if s.Dialect() == store.SQLite {
				// No lock on SQLite: the sign-in is stored now. (On
				// PostgreSQL it waits for the grant's row.)
				if err := <-saved; err != nil {
					t.Error(err)
				}
				saved <- nil
			}
			g.RefreshToken, g.AccessToken = "RT-renewed", "AT-renewed"
			return g, nil
		})
		if s.Dialect() == store.SQLite && !errors.Is(err, store.ErrConflict) {
			t.Errorf("renewal over a new sign-in: %v, want ErrConflict", err)
		}
		if s.Dialect() == store.Postgres && err != nil {
			t.Errorf("renewal: %v", err)
		}
		if err := <-saved; err != nil {
			t.Fatal(err)
		}
		sameGrant(t, getGrant(t, s, c.ID), fresh)
	})
}
