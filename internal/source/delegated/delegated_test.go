package delegated_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/oauthflow"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/delegated"
	"mailtrigger/internal/store"
)

// grants is an in-memory grant store that serializes renewals like
// store.RenewOAuthGrant.
type grants struct {
	renewMu sync.Mutex // held across renew, as the store's lock
	mu      sync.Mutex
	g       map[int64]store.OAuthGrant
	broken  []string
}

func newGrants() *grants { return &grants{g: map[int64]store.OAuthGrant{}} }

func (s *grants) GetOAuthGrant(_ context.Context, id int64) (store.OAuthGrant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.g[id]
	if !ok {
		return g, store.ErrNotFound
	}
	return g, nil
}

func (s *grants) RenewOAuthGrant(ctx context.Context, id int64, renew func(store.OAuthGrant) (store.OAuthGrant, error)) (store.OAuthGrant, error) {
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	g, err := s.GetOAuthGrant(ctx, id)
	if err != nil {
		return g, err
	}
	ng, err := renew(g)
	if err != nil {
		return g, fmt.Errorf("renewing: %w", err)
	}
	s.mu.Lock()
	s.g[id] = ng
	s.mu.Unlock()
	return ng, nil
}

func (s *grants) MarkOAuthGrantBroken(_ context.Context, id int64, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.g[id]
	g.Broken = why
	s.g[id] = g
	s.broken = append(s.broken, why)
	return nil
}

func (s *grants) get(id int64) store.OAuthGrant {
	g, _ := s.GetOAuthGrant(context.Background(), id)
	return g
}

// provider is a token endpoint that rotates refresh tokens: each one is good
// once.
type provider struct {
	mu        sync.Mutex
	life      time.Duration
	now       func() time.Time
	valid     map[string]bool
	refreshes int
	seq       int
	fail      error // returned by every refresh when set
	delay     time.Duration
}

func newProvider(now func() time.Time) *provider {
	return &provider{life: time.Hour, now: now, valid: map[string]bool{"refresh-0": true}}
}

func (p *provider) refresh(_ context.Context, _ *http.Client, _ imapconf.Config, rt string) (oauthflow.Grant, error) {
	time.Sleep(p.delay) // widens the window in which others find the token due
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return oauthflow.Grant{}, p.fail
	}
	if !p.valid[rt] {
		return oauthflow.Grant{}, fmt.Errorf("refreshing: %w", oauthflow.ErrInvalidGrant)
	}
	delete(p.valid, rt)
	p.refreshes++
	p.seq++
	next := fmt.Sprintf("refresh-%d", p.seq)
	p.valid[next] = true
	return oauthflow.Grant{AccessToken: fmt.Sprintf("access-%d", p.seq), RefreshToken: next, Expiry: p.now().Add(p.life)}, nil
}

func (p *provider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes
}

// clock is a test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var cfg = imapconf.Config{ID: 7, Name: "box", Username: "user@example.org", Auth: imapconf.AuthOAuth2Delegated,
	Provider: imapconf.ProviderCustom, ClientID: "app", ClientSecret: "Client~Secret~0123456789"}

func newSource(t *testing.T, gs *grants, p *provider, c *clock) *delegated.TokenSource {
	t.Helper()
	ts, err := delegated.New(cfg, gs, delegated.Options{Refresh: p.refresh, Now: c.now, Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func checkAuth(t *testing.T, err error, sentinel error, msg string) {
	t.Helper()
	var se *source.StepError
	if !errors.As(err, &se) || se.Step != "token" || !errors.Is(err, source.ErrAuth) || !errors.Is(err, sentinel) || err.Error() != "token: "+msg {
		t.Fatalf("got %v, want an auth failure of step token reading %q", err, msg)
	}
}

// TestNoGrant: nobody signed in is an auth failure that says to sign in.
func TestNoGrant(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	ts := newSource(t, newGrants(), p, c)
	_, err := ts.Token(context.Background())
	checkAuth(t, err, delegated.ErrNoGrant, "nobody signed in yet: sign in from the mailbox's card")
	if p.count() != 0 {
		t.Errorf("got %d refreshes, want none", p.count())
	}
}

// TestRenewal: the stored access token is used while it is not due; one
// due (less than a tenth of its lifetime or 5 minutes left) is renewed once,
// and the rotated refresh token is stored; the next call uses the cache.
func TestRenewal(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-0",
		AccessToken: "access-signin", AccessExpiry: c.now().Add(time.Hour)}
	ts := newSource(t, gs, p, c)
	for range 3 {
		if tok, err := ts.Token(ctx); err != nil || tok != "access-signin" {
			t.Fatalf("got %q, %v, want the sign-in's token", tok, err)
		}
	}
	c.add(54 * time.Minute) // 6 minutes left: not due
	if tok, err := ts.Token(ctx); err != nil || tok != "access-signin" || p.count() != 0 {
		t.Fatalf("6 minutes before expiry: got %q, %v, %d refreshes, want the sign-in's token", tok, err, p.count())
	}
	c.add(90 * time.Second) // 4.5 minutes left: due
	tok, err := ts.Token(ctx)
	if err != nil || tok != "access-1" || p.count() != 1 {
		t.Fatalf("4.5 minutes before expiry: got %q, %v, %d refreshes, want a renewed token", tok, err, p.count())
	}
	if g := gs.get(cfg.ID); g.RefreshToken != "refresh-1" || g.AccessToken != "access-1" || !g.AccessExpiry.Equal(c.now().Add(time.Hour)) {
		t.Errorf("stored %+v, want the rotated refresh token and the new access token", g)
	}
	c.add(30 * time.Minute)
	if tok, err := ts.Token(ctx); err != nil || tok != "access-1" || p.count() != 1 {
		t.Fatalf("got %q, %v, %d refreshes, want the cached token", tok, err, p.count())
	}

	// Short-lived tokens are renewed a tenth of their lifetime ahead.
	p.life = 100 * time.Second
	c.add(30 * time.Minute) // access-1 is due (not expired)
	if tok, _ := ts.Token(ctx); tok != "access-2" {
		t.Fatalf("got %q, want access-2", tok)
	}
	c.add(89 * time.Second)
	if tok, _ := ts.Token(ctx); tok != "access-2" {
		t.Fatalf("11 s before expiry: got %q, want access-2 still", tok)
	}
	c.add(2 * time.Second)
	if tok, _ := ts.Token(ctx); tok != "access-3" || p.count() != 3 {
		t.Fatalf("9 s before expiry: got %q after %d refreshes, want access-3", tok, p.count())
	}

	// A token a server refused is renewed at once.
	ts.Invalidate()
	if tok, _ := ts.Token(ctx); tok != "access-4" || p.count() != 4 {
		t.Fatalf("after Invalidate: got %q after %d refreshes, want access-4", tok, p.count())
	}
}

// TestShared: token sources sharing one grant (watchers on two replicas, a
// test connection) renew it once per renewal: the others find it renewed
// under the store's lock and use it; no refresh token is used twice.
func TestShared(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	p.life = 10 * time.Minute
	p.delay = 50 * time.Millisecond
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-0"}
	var sources []*delegated.TokenSource
	for range 4 {
		sources = append(sources, newSource(t, gs, p, c))
	}
	for period := 1; period <= 5; period++ {
		var wg sync.WaitGroup
		toks := make([]string, len(sources))
		errs := make([]error, len(sources))
		for i, ts := range sources {
			wg.Go(func() { toks[i], errs[i] = ts.Token(ctx) })
		}
		wg.Wait()
		for i := range sources {
			if errs[i] != nil || toks[i] != fmt.Sprintf("access-%d", period) {
				t.Fatalf("period %d: source %d got %q, %v", period, i, toks[i], errs[i])
			}
		}
		if p.count() != period {
			t.Fatalf("period %d: got %d refreshes, want %d", period, p.count(), period)
		}
		c.add(9*time.Minute + 30*time.Second) // due: 30 s left of 10 min
	}
}

// TestInvalidGrant: a refresh refused with invalid_grant marks the grant
// broken and fails as an auth failure saying to sign in again; nobody asks
// the provider again until a new sign-in is stored.
func TestInvalidGrant(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-revoked"}
	ts := newSource(t, gs, p, c)
	other := newSource(t, gs, p, c)
	_, err := ts.Token(ctx)
	checkAuth(t, err, delegated.ErrBroken, "sign-in expired or revoked (invalid_grant): sign in again")
	if !errors.Is(err, oauthflow.ErrInvalidGrant) {
		t.Errorf("got %v, want it to match oauthflow.ErrInvalidGrant", err)
	}
	if len(gs.broken) != 1 || gs.get(cfg.ID).Broken == "" {
		t.Fatalf("got broken %q, want the grant marked broken once", gs.broken)
	}
	_, err = other.Token(ctx)
	checkAuth(t, err, delegated.ErrBroken, "sign-in expired or revoked (invalid_grant): sign in again")
	if len(gs.broken) != 1 {
		t.Errorf("marked broken %d times, want once", len(gs.broken))
	}

	// A new sign-in (the store clears Broken).
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-0",
		AccessToken: "access-new", AccessExpiry: c.now().Add(time.Hour)}
	if tok, err := ts.Token(ctx); err != nil || tok != "access-new" {
		t.Fatalf("after a new sign-in: got %q, %v", tok, err)
	}
}

// TestErrors: other provider errors are the token step's, an invalid_client
// an auth failure; no token or secret is in their text.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-0"}
	ts := newSource(t, gs, p, c)
	p.fail = &oauthflow.ProviderError{Code: "invalid_client", Description: "bad secret " + cfg.ClientSecret + " for refresh-0"}
	_, err := ts.Token(ctx)
	if !errors.Is(err, source.ErrAuth) || !strings.HasPrefix(err.Error(), "token: ") || !strings.Contains(err.Error(), "invalid_client") ||
		strings.Contains(err.Error(), cfg.ClientSecret) || strings.Contains(err.Error(), "refresh-0") {
		t.Errorf("invalid_client: got %v", err)
	}
	p.fail = errors.New("dial tcp: connection refused")
	_, err = ts.Token(ctx)
	if errors.Is(err, source.ErrAuth) || err == nil || !strings.HasPrefix(err.Error(), "token: ") {
		t.Errorf("connection refused: got %v, want a token step error that is no auth failure", err)
	}
	if len(gs.broken) != 0 {
		t.Errorf("got broken %q, want none", gs.broken)
	}
	p.fail = nil
	tok, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := ts.RedactError(fmt.Errorf("login: %w: server said %s", source.ErrAuth, tok), source.ErrAuth)
	if strings.Contains(e.Error(), tok) || !errors.Is(e, source.ErrAuth) {
		t.Errorf("RedactError: got %v", e)
	}
}

// TestNoRotation: a provider that does not rotate (Google) answers without
// a refresh token; the stored one is kept.
func TestNoRotation(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-keep"}
	refreshes := 0
	ts, err := delegated.New(cfg, gs, delegated.Options{Now: c.now, Client: http.DefaultClient,
		Refresh: func(_ context.Context, _ *http.Client, _ imapconf.Config, rt string) (oauthflow.Grant, error) {
			if rt != "refresh-keep" {
				return oauthflow.Grant{}, oauthflow.ErrInvalidGrant
			}
			refreshes++
			return oauthflow.Grant{AccessToken: fmt.Sprint("access-", refreshes), Expiry: c.now().Add(time.Hour)}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if tok, err := ts.Token(ctx); err != nil || tok != fmt.Sprint("access-", i) {
			t.Fatalf("renewal %d: got %q, %v", i, tok, err)
		}
		if g := gs.get(cfg.ID); g.RefreshToken != "refresh-keep" || g.AccessToken != fmt.Sprint("access-", i) {
			t.Fatalf("renewal %d: stored %+v", i, g)
		}
		c.add(time.Hour)
	}
}

// TestRefreshSeenThroughWhenStopping: a watcher stopped while its refresh
// is at the provider still stores the provider's answer. The provider
// rotated the refresh token on receiving the request; had the request been
// given up, the stored refresh token would be the used one, refused at the
// next start (invalid_grant: the user signs in again).
func TestRefreshSeenThroughWhenStopping(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	p := newProvider(c.now)
	gs := newGrants()
	gs.g[cfg.ID] = store.OAuthGrant{IMAPID: cfg.ID, Account: cfg.Username, RefreshToken: "refresh-0",
		AccessToken: "access-signin", AccessExpiry: c.now()}
	sent := make(chan struct{})
	refresh := func(ctx context.Context, hc *http.Client, conf imapconf.Config, rt string) (oauthflow.Grant, error) {
		g, err := p.refresh(ctx, hc, conf, rt) // rotated at the provider
		close(sent)
		select { // the answer on its way back
		case <-ctx.Done():
			return oauthflow.Grant{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		return g, err
	}
	ts, err := delegated.New(cfg, gs, delegated.Options{Refresh: refresh, Now: c.now, Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = ts.Token(ctx)
	}()
	<-sent
	stop()
	<-done
	if g := gs.get(cfg.ID); g.RefreshToken != "refresh-1" || g.AccessToken != "access-1" {
		t.Fatalf("stored refresh token %q, access token %q: want the provider's answer, refresh-1 and access-1", g.RefreshToken, g.AccessToken)
	}
}
