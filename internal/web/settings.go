package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

type settingsPage struct {
	Tokens      []store.Token
	NewToken    string // shown once, right after creation
	NewName     string
	TokenName   string // the name typed, shown again after an error
	TokenError  string
	Revoke      string // the token whose revocation is being confirmed
	PasswordErr valid.Errors
	Cluster     *store.ClusterView // nil: no registry
	Alerts      []store.AlertSubscription
}

func (u *UI) renderSettings(w http.ResponseWriter, r *http.Request, status int, p settingsPage, fl *flash) {
	toks, err := u.store.ListTokens(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	p.Tokens = toks
	if p.Alerts, err = every(r.Context(), u.store.ListAlerts, func(a store.AlertSubscription) string { return a.Name }); err != nil {
		u.serverError(w, r, err)
		return
	}
	c, err := u.rt.Cluster(r.Context())
	switch {
	case errors.Is(err, control.ErrUnavailable):
	case err != nil:
		u.serverError(w, r, err)
		return
	default:
		p.Cluster = &c
	}
	if p.PasswordErr == nil {
		p.PasswordErr = valid.Errors{}
	}
	u.render(w, r, status, "settings", page{Title: "Settings", Nav: "settings", Crumbs: settingsCrumbs, Data: p, Flash: fl})
}

func (u *UI) settings(w http.ResponseWriter, r *http.Request) {
	u.renderSettings(w, r, http.StatusOK, settingsPage{}, nil)
}

func (u *UI) tokenCreate(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if m := valid.Name(name); m != "" {
		u.renderSettings(w, r, http.StatusBadRequest, settingsPage{TokenName: name, TokenError: m}, nil)
		return
	}
	tok, hash := auth.NewToken()
	err := u.store.CreateToken(ctx, name, hash)
	switch {
	case errors.Is(err, store.ErrConflict):
		u.renderSettings(w, r, http.StatusConflict, settingsPage{TokenName: name, TokenError: "a token with this name exists; revoke it or choose another name"}, nil)
		return
	case err != nil:
		u.serverError(w, r, err)
		return
	}
	u.log.Info("api token created", "token_name", name, "user", userFrom(ctx))
	// The token is in this answer only; only its hash is stored.
	u.renderSettings(w, r, http.StatusOK, settingsPage{NewToken: tok, NewName: name}, &flash{Kind: "ok", Text: fmt.Sprintf("API token %s created.", name)})
}

func (u *UI) tokenRevokeDialog(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	toks, err := u.store.ListTokens(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	for _, t := range toks {
		if t.Name == name {
			u.renderSettings(w, r, http.StatusOK, settingsPage{Revoke: name}, nil)
			return
		}
	}
	u.notFound(w, r)
}

func (u *UI) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if err := u.store.RevokeToken(ctx, name); err != nil {
		u.fail(w, r, err)
		return
	}
	u.log.Info("api token revoked", "token_name", name, "user", userFrom(ctx))
	u.setFlash(r, "ok", fmt.Sprintf("API token %s revoked.", name))
	redirect(w, r, "/settings")
}

func (u *UI) passwordChange(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	user := userFrom(ctx)
	cur, next, confirm := r.PostForm.Get("current"), r.PostForm.Get("new"), r.PostForm.Get("confirm")
	e := valid.Errors{}
	hash, err := u.store.UserPasswordHash(ctx, user)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	// Guesses of the current password count like failed logins: a session
	// left open must not become a way to find the password.
	addrKey, userKey := u.limitKeys(r, user)
	at, wait := u.limit.reserve(addrKey, userKey)
	if wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		e.Add("current", fmt.Sprintf("too many wrong passwords; try again in %d minutes", int(math.Ceil(wait.Minutes()))))
		u.renderSettings(w, r, http.StatusTooManyRequests, settingsPage{PasswordErr: e}, nil)
		return
	}
	select {
	case u.checks <- struct{}{}:
	case <-ctx.Done():
		return
	}
	ok := u.checkPassword(hash, cur)
	<-u.checks
	if !ok {
		e.Add("current", "not your current password")
	} else {
		u.limit.succeeded(at, addrKey, userKey)
	}
	switch {
	case auth.CheckNewPassword(next) != "":
		e.Add("new", auth.CheckNewPassword(next))
	case next == cur:
		e.Add("new", "must differ from the current password")
	}
	if confirm != next {
		e.Add("confirm", "does not match the new password")
	}
	if len(e) > 0 {
		u.renderSettings(w, r, http.StatusBadRequest, settingsPage{PasswordErr: e}, nil)
		return
	}
	newHash, err := auth.HashPassword(next)
	if err == nil {
		_, err = u.store.SetUserPassword(ctx, user, newHash)
	}
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	// This session goes on under a new token; every other session of the
	// user ends (its fingerprint no longer matches).
	if err := u.sm.RenewToken(ctx); err != nil {
		u.serverError(w, r, err)
		return
	}
	u.sm.Put(ctx, keyPWFP, fingerprint(newHash))
	u.log.Info("password changed", "user", user)
	u.setFlash(r, "ok", "Password changed. Other sessions of "+user+" have been logged out.")
	redirect(w, r, "/settings")
}
