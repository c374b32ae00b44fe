package api

import (
	"net/http"
	"time"

	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
)

// signInStart is the answer of POST /api/v1/imap/{name}/oauth/start: the
// URL to open in a browser logged in to the web UI, the callback URL it
// returns to (register it at the provider) and until when it may be used.
type signInStart struct {
	URL         string    `json:"url"`
	RedirectURI string    `json:"redirectUri"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// startSignIn starts the sign-in of an oauth2-delegated configuration. API
// tokens belong to no user, so any user logged in to the web UI may
// complete it (control.APIUser).
func (a *API) startSignIn(w http.ResponseWriter, r *http.Request) {
	c, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	redirect := control.RedirectURI(a.baseURL, r, a.proxies)
	start, err := a.changes.StartSignIn(r.Context(), "", c, control.APIUser, redirect)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, signInStart{URL: start.URL, RedirectURI: redirect, ExpiresAt: start.Expires.UTC()})
}

// signOut forgets the grant of an oauth2-delegated configuration.
func (a *API) signOut(w http.ResponseWriter, r *http.Request) {
	c, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		a.writeError(w, r, err)
		return
	}
	if err := a.changes.SignOut(r.Context(), "", c); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
