package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

type loginData struct {
	Name    string
	Next    string
	Error   string
	Expired bool // a form was sent after the session expired
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	if u.sm.GetString(r.Context(), keyUser) != "" {
		redirect(w, r, localPath(r.URL.Query().Get("next"), "/imap"))
		return
	}
	u.render(w, r, http.StatusOK, "login", page{Title: "Log in", Data: loginData{Next: r.URL.Query().Get("next"),
		Expired: r.URL.Query().Get("expired") == "1"}})
}

// dummyHash is checked against when the user does not exist, so that a
// wrong user name takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("mailtrigger-no-such-user")
	return h
})

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	// The body is read before anyone is known and before the limiter: it
	// is bounded, and never multipart (see readForm).
	if e := readForm(w, r, maxLoginBytes); e != nil {
		u.errorPage(w, r, e.status, e.heading, e.msg)
		return
	}
	f := r.PostForm
	name := strings.TrimSpace(f.Get("username"))
	password := f.Get("password")
	next := localPath(f.Get("next"), "/imap")
	data := loginData{Name: name, Next: f.Get("next"), Expired: f.Get("expired") == "1"}
	ip := u.proxies.String(r)
	if name == "" || password == "" {
		data.Error = "Enter your user name and password."
		u.render(w, r, http.StatusBadRequest, "login", page{Title: "Log in", Data: data})
		return
	}
	if m := valid.Line(name); m != "" {
		data.Name, data.Error = "", "User name "+m+"."
		u.render(w, r, http.StatusBadRequest, "login", page{Title: "Log in", Data: data})
		return
	}
	// The attempt is counted before the password is checked, in the same
	// step as the limit is checked, so that concurrent guesses cannot all
	// slip under it; a successful login takes it back.
	addrKey, userKey := u.limitKeys(r, name)
	at, wait := u.limit.reserve(addrKey, userKey)
	if wait > 0 {
		u.log.Warn("login refused: too many failures", "user", name, "remote", ip)
		mins := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		data.Error = fmt.Sprintf("Too many failed logins. Try again in %d minute%s.", mins, plural(mins))
		u.render(w, r, http.StatusTooManyRequests, "login", page{Title: "Log in", Data: data})
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
	ok := u.checkPassword(hash, password) && known
	<-u.checks
	if !ok {
		u.log.Warn("login failed", "user", name, "remote", ip)
		data.Error = "Wrong user name or password."
		u.render(w, r, http.StatusUnauthorized, "login", page{Title: "Log in", Data: data})
		return
	}
	u.limit.succeeded(at, addrKey, userKey)
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

// limitKeys returns the limiter's keys for a login attempt by name from the
// request's client: its address (an IPv6 client by its /64, which one
// machine usually holds whole) and the address with the user name.
func (u *UI) limitKeys(r *http.Request, name string) (addrKey, userKey string) {
	addr := u.proxies.String(r)
	if a, ok := u.proxies.Addr(r); ok && a.Is6() {
		p, _ := a.Prefix(64)
		addr = p.String()
	}
	user := strings.ToLower(name)
	if len(user) > 100 {
		user = user[:100]
	}
	return "ip:" + addr, "ipuser:" + addr + " " + user
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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// limiter counts login attempts per key in a sliding window. Two kinds of
// key: an address, and an address with a user name. An (address, user) key
// allows max failed attempts in the window; an address key five times as
// many (one address trying many names). There is no key for a user name
// alone: failures from other addresses never refuse the right password from
// a fresh one. Only a successful login from an address clears its
// (address, user) key.
//
// reserve checks the limits and counts the attempt in one step under the
// lock, so that concurrent attempts cannot all pass the check before any is
// counted; succeeded takes a successful attempt back.
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
	if strings.HasPrefix(key, "ip:") {
		return 5 * l.max
	}
	return l.max
}

// recent drops the attempts of key that left the window; l.mu is held.
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

// reserve counts an attempt against every key and returns its time, unless
// a key is at its limit: then nothing is counted and wait is how long the
// longest-blocked key stays blocked.
func (l *limiter) reserve(keys ...string) (at time.Time, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		ts := l.recent(k, now)
		if n := l.limitFor(k); len(ts) >= n {
			if d := l.window - now.Sub(ts[len(ts)-n]); d > wait {
				wait = d
			}
		}
	}
	if wait > 0 {
		return time.Time{}, wait
	}
	if len(l.fails) > 10000 { // bound the memory an attacker can make us use
		for k := range l.fails {
			l.recent(k, now)
		}
	}
	for _, k := range keys {
		l.fails[k] = append(l.fails[k], now)
	}
	return now, 0
}

// succeeded takes back the attempt reserved at at under addrKey, and clears
// userKey: the owner of that name is at that address.
func (l *limiter) succeeded(at time.Time, addrKey, userKey string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, userKey)
	ts := l.fails[addrKey]
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(at) {
			l.fails[addrKey] = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(l.fails[addrKey]) == 0 {
		delete(l.fails, addrKey)
	}
}
