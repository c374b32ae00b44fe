package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"

	"mailtrigger/internal/store"
)

// cookieName is the session cookie.
const cookieName = "mailtrigger_session"

// Session keys.
const (
	keyUser  = "user"
	keyPWFP  = "pwfp" // fingerprint of the password hash the user logged in with
	keyFlash = "flash"
)

// sessionStore keeps scs sessions in the database (table sessions), so that
// they survive restarts and are shared by replicas. scs hands it a hash of the
// cookie's value, never the value itself.
type sessionStore struct {
	st *store.Store

	mu        sync.Mutex
	lastPrune time.Time
}

func (s *sessionStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

func (s *sessionStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

func (s *sessionStore) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

func (s *sessionStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	return s.st.FindSession(ctx, token)
}

// CommitCtx saves a session and, at most every 10 minutes, deletes the
// expired ones.
func (s *sessionStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	if err := s.st.CommitSession(ctx, token, b, expiry); err != nil {
		return err
	}
	s.mu.Lock()
	prune := time.Since(s.lastPrune) > 10*time.Minute
	if prune {
		s.lastPrune = time.Now()
	}
	s.mu.Unlock()
	if prune {
		_, err := s.st.DeleteExpiredSessions(ctx, time.Now())
		return err
	}
	return nil
}

func (s *sessionStore) DeleteCtx(ctx context.Context, token string) error {
	return s.st.DeleteSession(ctx, token)
}

func newSessionManager(st *store.Store, lifetime time.Duration) *scs.SessionManager {
	sm := scs.New()
	sm.Store = &sessionStore{st: st}
	sm.Lifetime = lifetime
	sm.HashTokenInStore = true
	sm.Cookie.Name = cookieName
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Path = "/"
	return sm
}

// sessions loads the session of the request and saves it before the
// response's first byte, like scs's LoadAndSave, but writes the cookie
// itself: Secure when the request came over TLS (isTLS), always HttpOnly
// and SameSite=Lax.
func (u *UI) sessions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		token := ""
		if c, err := r.Cookie(cookieName); err == nil {
			token = c.Value
		}
		ctx, err := u.sm.Load(r.Context(), token)
		if err != nil {
			u.log.Error("loading session", "err", err)
			http.Error(w, "cannot load the session now; try again", http.StatusServiceUnavailable)
			return
		}
		r = r.WithContext(ctx)
		sw := &sessionWriter{ResponseWriter: w, u: u, r: r}
		next.ServeHTTP(sw, r)
		sw.commit()
	})
}

type sessionWriter struct {
	http.ResponseWriter
	u    *UI
	r    *http.Request
	done bool
}

func (w *sessionWriter) commit() {
	if w.done {
		return
	}
	w.done = true
	ctx := w.r.Context()
	c := &http.Cookie{Name: cookieName, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isTLS(w.r)}
	switch w.u.sm.Status(ctx) {
	case scs.Modified:
		token, expiry, err := w.u.sm.Commit(ctx)
		if err != nil {
			w.u.log.Error("saving session", "err", err)
			return
		}
		c.Value = token
		c.Expires = time.Unix(expiry.Unix()+1, 0)
		c.MaxAge = int(time.Until(expiry).Seconds() + 1)
	case scs.Destroyed:
		c.Expires = time.Unix(1, 0)
		c.MaxAge = -1
	default:
		return
	}
	w.Header().Add("Set-Cookie", c.String())
}

// isTLS reports whether the browser reached us over TLS: directly, or
// through a proxy that says so. Believing the header costs nothing: a wrong
// one only makes the cookie Secure.
func isTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (w *sessionWriter) WriteHeader(code int) {
	w.commit()
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	w.commit()
	return w.ResponseWriter.Write(b)
}

func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type userKey struct{}

func userFrom(ctx context.Context) string {
	s, _ := ctx.Value(userKey{}).(string)
	return s
}

// fingerprint identifies a password hash without revealing it. A session
// remembers the fingerprint of the hash its user logged in with, so that
// changing the password ends every other session.
func fingerprint(hash string) string {
	sum := sha256.Sum256([]byte("mailtrigger session\x00" + hash))
	return hex.EncodeToString(sum[:8])
}

// requireUser lets the request through when its session has a user whose
// password is still the one it logged in with. Otherwise a page request is
// sent to the login page and other requests get 401.
func (u *UI) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := u.sm.GetString(ctx, keyUser)
		if user != "" {
			hash, err := u.store.UserPasswordHash(ctx, user)
			switch {
			case err == nil && fingerprint(hash) == u.sm.GetString(ctx, keyPWFP):
				next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, user)))
				return
			case err != nil && !errors.Is(err, store.ErrNotFound):
				u.serverError(w, r, err)
				return
			}
			// The user is gone or changed the password elsewhere.
			if err := u.sm.Destroy(ctx); err != nil {
				u.serverError(w, r, err)
				return
			}
		}
		if wantsJSON(r) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"log in first"}}` + "\n"))
			return
		}
		to := "/login"
		if next := r.URL.RequestURI(); r.Method == http.MethodGet && next != "/" {
			to += "?next=" + url.QueryEscape(next)
		} else if r.Method == http.MethodPost {
			// A form sent after the session expired: back to the page
			// it was sent from after the login, where the page's
			// script puts back what was typed (#restore-draft).
			to += "?expired=1"
			if from := refererPath(r); from != "" {
				to += "&next=" + url.QueryEscape(from+"#restore-draft")
			}
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

// refererPath returns the path and query of the request's Referer when it is
// a page of this site, else "".
func refererPath(r *http.Request) string {
	ref, err := url.Parse(r.Referer())
	if err != nil || ref.Host != r.Host || ref.Path == "" || ref.Path == "/login" {
		return ""
	}
	p := ref.EscapedPath()
	if ref.RawQuery != "" {
		p += "?" + ref.RawQuery
	}
	return localPath(p, "")
}

// wantsJSON reports whether the request came from the pages' scripts, which
// ask for JSON.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// flash is a one-time message shown on the next page.
type flash struct {
	Kind string // "ok" or "error"
	Text string
}

func (u *UI) setFlash(r *http.Request, kind, text string) {
	u.sm.Put(r.Context(), keyFlash, kind+"\x00"+text)
}

func (u *UI) popFlash(r *http.Request) *flash {
	kind, text, ok := strings.Cut(u.sm.PopString(r.Context(), keyFlash), "\x00")
	if !ok {
		return nil
	}
	return &flash{Kind: kind, Text: text}
}
