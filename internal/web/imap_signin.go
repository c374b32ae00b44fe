package web

import (
	"errors"
	"fmt"
	"net/http"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// Delegated OAuth2 sign-in (issue 17) in the UI: the Sign in button of the
// Create and Edit panels (after saving the form), the Reconnect button of
// a card, and the provider's redirect back to /oauth/callback.

// providerLabel names a provider on buttons and pages.
func providerLabel(p string) string {
	switch p {
	case imapconf.ProviderGoogle:
		return "Google"
	case imapconf.ProviderMicrosoft:
		return "Microsoft"
	}
	return "the provider"
}

// signInPage is the page that sends the browser on to the provider: a
// navigation started by the page's script (or the link), because the
// pages' Content-Security-Policy (form-action 'self') stops a form's
// redirect to another site.
type signInPage struct {
	Name     string
	Provider string
	URL      string
}

// userID is the id of the logged-in user, to which a sign-in is bound.
func (u *UI) userID(r *http.Request) (int64, error) {
	return u.store.UserID(r.Context(), userFrom(r.Context()))
}

// beginSignIn starts the sign-in of c (saved) for the logged-in user and
// answers the page that goes on to the provider's consent page.
func (u *UI) beginSignIn(w http.ResponseWriter, r *http.Request, c imapconf.Config) {
	ctx := r.Context()
	id, err := u.userID(r)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	start, err := u.changes.StartSignIn(ctx, userFrom(ctx), c, id, control.RedirectURI(u.baseURL, r, u.proxies))
	var ve valid.Errors
	switch {
	case errors.As(err, &ve):
		u.setFlash(r, "error", fmt.Sprintf("%s cannot sign in: its authentication %s.", c.Name, ve["auth"]))
		redirect(w, r, "/imap/"+pathEscape(c.Name))
		return
	case err != nil:
		u.serverError(w, r, err)
		return
	}
	label := providerLabel(c.Provider)
	u.render(w, r, http.StatusOK, "signin", page{Title: "Sign in with " + label, Nav: "imap", Crumbs: imapCrumbs,
		Canonical: "/imap/" + pathEscape(c.Name), Data: signInPage{Name: c.Name, Provider: label, URL: start.URL}})
}

// imapSignIn is the Reconnect (or Sign in) button of a card: a new
// sign-in of the saved configuration.
func (u *UI) imapSignIn(w http.ResponseWriter, r *http.Request) {
	c, err := u.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.beginSignIn(w, r, c)
}

// oauthCallback is where the provider sends the browser back, with the
// code and state of a sign-in (or its error). The logged-in user must be
// the one who started it; the requireUser chain sends a visitor without a
// session to the login page and back here.
func (u *UI) oauthCallback(w http.ResponseWriter, r *http.Request) {
	// Its URL holds the code and state: no Referer from its page, not even
	// to this site.
	w.Header().Set("Referrer-Policy", "no-referrer")
	ctx := r.Context()
	id, err := u.userID(r)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	q := r.URL.Query()
	cb := control.Callback{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), ErrorDescription: q.Get("error_description")}
	c, g, err := u.changes.CompleteSignIn(ctx, userFrom(ctx), id, cb, u.hc)
	var se *control.SignInError
	switch {
	case errors.As(err, &se):
		back := "/imap"
		if se.IMAP != "" {
			back = "/imap/" + pathEscape(se.IMAP)
		}
		status := http.StatusBadRequest
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusNotFound
		}
		u.render(w, r, status, "error", page{Title: "Sign-in failed", Nav: "imap", Crumbs: imapCrumbs,
			Data: errorPage{Status: status, Heading: "Sign-in failed", Message: se.Msg + " Nothing was stored.", Back: back}})
		return
	case err != nil:
		u.serverError(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Signed in as %s: %s reads this mailbox now.", g.Account, c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

// signInWanted reports whether the form was sent with its Sign in button.
func signInWanted(r *http.Request) bool { return r.PostForm.Get("signin") != "" }
