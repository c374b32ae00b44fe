package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

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
		// An OAuth2 client secret is among the advanced settings.
		f.Advanced = hasAdvancedError(e) || (e["clientSecret"] != "" && f.Type != imapconf.TypeMSGraph && f.Auth == imapconf.AuthOAuth2)
		p.Panel = &imapPanel{Create: true, Form: f, Errors: withRetype(e, f)}
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s created.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

func (u *UI) editPanel(ctx context.Context, c imapconf.Config, flows map[string][]string) (*imapPanel, error) {
	st := u.statusOf(c)
	ch, err := u.messagesChart(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	return &imapPanel{Orig: c.Name, Form: formFromConfig(c), Errors: valid.Errors{}, Status: &st, Chart: ch,
		Flows: flows[strings.ToLower(c.Name)]}, nil
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
	if p.Panel, err = u.editPanel(ctx, c, flows); err != nil {
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
			p.Panel, err = u.editPanel(ctx, prev, flows)
		}
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		f := formFromValues(r.PostForm)
		f.HasPassword, f.HasClientSecret = prev.Password != "", prev.ClientSecret != ""
		// An OAuth2 client secret is among the advanced settings.
		f.Advanced = hasAdvancedError(e) || (e["clientSecret"] != "" && f.Type != imapconf.TypeMSGraph && f.Auth == imapconf.AuthOAuth2)
		p.Panel.Form, p.Panel.Errors = f, withRetype(e, f)
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s saved.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}
