package web

import (
	"fmt"
	"net/http"
	"strings"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

func (u *UI) imapNew(w http.ResponseWriter, r *http.Request) {
	p, _, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	p.Panel = &imapPanel{Create: true, Form: newForm(r.URL.Query().Get("type")), Errors: valid.Errors{}}
	p.Panel.RedirectURI = control.RedirectURI(u.baseURL, r, u.proxies)
	u.renderIMAP(w, r, http.StatusOK, p)
}

func (u *UI) imapCreate(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	in, found := inputFromValues(r.PostForm)
	c, err := u.changes.CreateIMAP(ctx, userFrom(ctx), in, found)
	e, err := fieldErrors(err)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if len(e) > 0 {
		p, _, err := u.imapPageData(ctx)
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		f := formFromValues(r.PostForm)
		f.Advanced = advancedOpen(e, f)
		p.Panel = &imapPanel{Create: true, Form: f, Errors: withRetype(e, f), RedirectURI: control.RedirectURI(u.baseURL, r, u.proxies)}
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	if signInWanted(r) {
		u.beginSignIn(w, r, c)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s created.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

func (u *UI) editPanel(r *http.Request, c imapconf.Config, flows map[string][]string) (*imapPanel, error) {
	ctx := r.Context()
	st := u.statusOf(c)
	ch, err := u.messagesChart(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	si, err := u.changes.SignInOf(ctx, c)
	if err != nil {
		return nil, err
	}
	return &imapPanel{Orig: c.Name, Form: formFromConfig(c), Errors: valid.Errors{}, Status: &st, Chart: ch,
		Flows: flows[strings.ToLower(c.Name)], SignIn: si, RedirectURI: control.RedirectURI(u.baseURL, r, u.proxies)}, nil
}

func (u *UI) imapEdit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		u.fail(w, r, err)
		return
	}
	p, flows, err := u.imapPageData(ctx)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if p.Panel, err = u.editPanel(r, c, flows); err != nil {
		u.serverError(w, r, err)
		return
	}
	u.renderIMAP(w, r, http.StatusOK, p)
}

func (u *UI) imapSave(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	prev, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	in, found := inputFromValues(r.PostForm)
	c, err := u.changes.EditIMAP(ctx, userFrom(ctx), prev, in, found)
	e, err := fieldErrors(err)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if len(e) > 0 {
		p, flows, err := u.imapPageData(ctx)
		if err == nil {
			p.Panel, err = u.editPanel(r, prev, flows)
		}
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		f := formFromValues(r.PostForm)
		f.HasPassword, f.HasClientSecret = prev.Password != "", prev.ClientSecret != ""
		f.Advanced = advancedOpen(e, f)
		p.Panel.Form, p.Panel.Errors = f, withRetype(e, f)
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	if signInWanted(r) {
		u.beginSignIn(w, r, c)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s saved.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}
