package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// imapDialog is the Duplicate or Delete confirmation.
type imapDialog struct {
	Kind         string // "duplicate" or "delete"
	Name         string
	CopyName     string
	NeedPassword bool
	NeedSecret   bool
	SignsIn      bool // oauth2-delegated: the copy is not signed in
	Flows        []string
	Errors       valid.Errors
}

func (u *UI) imapDialogPage(w http.ResponseWriter, r *http.Request, status int, kind string, c imapconf.Config, errs valid.Errors, inUse []string) {
	p, flows, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	taken := map[string]bool{}
	for _, card := range p.Cards {
		taken[strings.ToLower(card.Name)] = true
	}
	copyName := imapconf.CopyName(c.Name, 1)
	for n := 2; taken[strings.ToLower(copyName)]; n++ {
		copyName = imapconf.CopyName(c.Name, n)
	}
	d := &imapDialog{Kind: kind, Name: c.Name, CopyName: copyName, NeedPassword: c.NeedsPassword(),
		NeedSecret: c.NeedsClientSecret(), SignsIn: c.Auth == imapconf.AuthOAuth2Delegated, Flows: flows[strings.ToLower(c.Name)], Errors: errs}
	if inUse != nil {
		d.Flows = inUse
	}
	if d.Errors == nil {
		d.Errors = valid.Errors{}
	}
	p.Dialog = d
	u.renderIMAP(w, r, status, p)
}

func (u *UI) imapDuplicateDialog(w http.ResponseWriter, r *http.Request) {
	c, err := u.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.imapDialogPage(w, r, http.StatusOK, "duplicate", c, nil, nil)
}

func (u *UI) imapDuplicate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	orig, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	var in imapconf.DuplicateInput
	if s := r.PostForm.Get("password"); s != "" {
		in.Password = &s
	}
	if s := r.PostForm.Get("clientSecret"); s != "" {
		in.ClientSecret = &s
	}
	c, err := u.changes.DuplicateIMAP(ctx, userFrom(ctx), orig, in)
	var ve valid.Errors
	switch {
	case errors.As(err, &ve):
		u.imapDialogPage(w, r, http.StatusBadRequest, "duplicate", orig, ve, nil)
		return
	case errors.Is(err, store.ErrConflict):
		u.imapDialogPage(w, r, http.StatusConflict, "duplicate", orig, valid.Errors{"name": err.Error()}, nil)
		return
	case err != nil:
		u.serverError(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Duplicated %s as %s. The copy is disabled, so that it never competes with %s for the same mail; enable it when ready.", orig.Name, c.Name, orig.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

func (u *UI) imapDeleteDialog(w http.ResponseWriter, r *http.Request) {
	c, err := u.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.imapDialogPage(w, r, http.StatusOK, "delete", c, nil, nil)
}

func (u *UI) imapDelete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	c, err := u.store.GetIMAP(ctx, name)
	if err == nil {
		err = u.changes.DeleteIMAP(ctx, userFrom(ctx), c.Name)
	}
	var inUse *store.InUseError
	switch {
	case errors.As(err, &inUse):
		flows := inUse.Flows
		if flows == nil {
			flows = []string{}
		}
		u.imapDialogPage(w, r, http.StatusConflict, "delete", c, nil, flows)
		return
	case err != nil:
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s deleted. Its messages and runs are kept.", c.Name))
	redirect(w, r, "/imap")
}

// imapEnabled is the enable/disable switch of a card.
func (u *UI) imapEnabled(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	want := r.PostForm.Get("enabled") == "true"
	if err := u.changes.SetIMAPEnabled(ctx, userFrom(ctx), c, want); err != nil {
		u.fail(w, r, err)
		return
	}
	verb := "disabled"
	if want {
		verb = "enabled"
	}
	msg := fmt.Sprintf("IMAP configuration %s %s.", c.Name, verb)
	if wantsJSON(r) {
		// The card's switch, from the page's script: the card changes in
		// place and the focus stays on the switch.
		c.Enabled = want
		cs, err := u.allIMAP(ctx)
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Name    string     `json:"name"`
			Enabled bool       `json:"enabled"`
			Message string     `json:"message"`
			Status  statusView `json:"status"`
			Warning string     `json:"warning,omitempty"`
		}{c.Name, want, msg, u.statusOf(c), sameMailboxText(sameMailbox(cs)[strings.ToLower(c.Name)])})
		return
	}
	u.setFlash(r, "ok", msg)
	redirect(w, r, localPath(r.PostForm.Get("back"), "/imap")+"#imap-"+c.Name)
}
