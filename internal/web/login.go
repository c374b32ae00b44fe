package web

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/store"
)

type loginData struct {
	Name  string
	Next  string
	Error string
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	if u.sm.GetString(r.Context(), keyUser) != "" {
		redirect(w, r, localPath(r.URL.Query().Get("next"), "/imap"))
		return
	}
	u.render(w, r, http.StatusOK, "login", page{Title: "Log in", Data: loginData{Next: r.URL.Query().Get("next")}})
}

// dummyHash is checked against when the user does not exist, so that a
// wrong user name takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("mailtrigger-no-such-user")
	return h
})

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	next := localPath(r.PostFormValue("next"), "/imap")
	data := loginData{Name: name, Next: r.PostFormValue("next")}
	ip := clientIP(r)
	keys := []string{"ip:" + ip, "user:" + strings.ToLower(name)}
	if wait := u.limit.blocked(keys...); wait > 0 {
		u.log.Warn("login refused: too many failures", "user", name, "remote", ip)
		mins := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		data.Error = fmt.Sprintf("Too many failed logins. Try again in %d minute%s.", mins, plural(mins))
		u.render(w, r, http.StatusTooManyRequests, "login", page{Title: "Log in", Data: data})
		return
	}
	if name == "" || password == "" {
		data.Error = "Enter your user name and password."
		u.render(w, r, http.StatusBadRequest, "login", page{Title: "Log in", Data: data})
		return
	}

	hash, err := u.store.UserPasswordHash(r.Context(), name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		u.serverError(w, r, err)
		return
	}
	known := err == nil
	if !known {
		hash = dummyHash()
	}
	select {
	case u.checks <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	ok := auth.CheckPassword(hash, password) && known
	<-u.checks
	if !ok {
		u.limit.fail(keys...)
		u.log.Warn("login failed", "user", name, "remote", ip)
		data.Error = "Wrong user name or password."
		u.render(w, r, http.StatusUnauthorized, "login", page{Title: "Log in", Data: data})
		return
	}
	u.limit.reset(keys[1])
	// A new session token at login: a token planted before cannot ride along.
	if err := u.sm.RenewToken(r.Context()); err != nil {
		u.serverError(w, r, err)
		return
	}
	u.sm.Put(r.Context(), keyUser, name)
	u.sm.Put(r.Context(), keyPWFP, fingerprint(hash))
	u.log.Info("user logged in", "user", name, "remote", ip)
	redirect(w, r, next)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	user := userFrom(r.Context())
	if err := u.sm.Destroy(r.Context()); err != nil {
		u.serverError(w, r, err)
		return
	}
	// A fresh session only to carry the message.
	u.setFlash(r, "ok", "You have logged out.")
	u.log.Info("user logged out", "user", user)
	redirect(w, r, "/login")
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// limiter counts failed logins per key in a sliding window. A key with
// max failures in the window is blocked until the oldest of them leaves it.
// Per-user keys allow five times as many failures as per-address keys, so
// that someone guessing cannot lock the owner out as easily.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time
}

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, now: now, fails: map[string][]time.Time{}}
}

func (l *limiter) limitFor(key string) int {
	if strings.HasPrefix(key, "user:") {
		return 5 * l.max
	}
	return l.max
}

// recent drops the failures of key that left the window; l.mu is held.
func (l *limiter) recent(key string, now time.Time) []time.Time {
	ts := l.fails[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = ts
	return ts
}

// blocked returns how long the first blocked key stays blocked, 0 when none is.
func (l *limiter) blocked(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		ts := l.recent(k, now)
		if n := l.limitFor(k); len(ts) >= n {
			if d := l.window - now.Sub(ts[len(ts)-n]); d > wait {
				wait = d
			}
		}
	}
	return wait
}

func (l *limiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) > 10000 { // bound the memory an attacker can make us use
		for k := range l.fails {
			l.recent(k, now)
		}
	}
	for _, k := range keys {
		ts := l.recent(k, now)
		if len(ts) >= l.limitFor(k) {
			ts = ts[1:]
		}
		l.fails[k] = append(ts, now)
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
