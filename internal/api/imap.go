package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
)

func (a *API) listIMAP(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	cs, err := a.store.ListIMAP(r.Context(), cursor, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	signIns, err := a.changes.SignIns(r.Context(), cs)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[imapconf.View]{Items: []imapconf.View{}}
	for i := range cs {
		if i == limit {
			out.NextCursor = encodeCursor(cs[i-1].Name)
			break
		}
		v := cs[i].View()
		v.Status = a.rt.Status(cs[i])
		if si, ok := signIns[cs[i].ID]; ok {
			v.SignIn = &si
		}
		out.Items = append(out.Items, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createIMAP(w http.ResponseWriter, r *http.Request) {
	var in imapconf.Input
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.changes.CreateIMAP(r.Context(), "", in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/imap/"+url.PathEscape(c.Name))
	writeJSON(w, http.StatusCreated, c.View())
}

func (a *API) getIMAP(w http.ResponseWriter, r *http.Request) {
	c, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		a.writeError(w, r, err)
		return
	}
	v := c.View()
	v.Status = a.rt.Status(c)
	if v.SignIn, err = a.changes.SignInOf(r.Context(), c); err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) testSavedIMAP(w http.ResponseWriter, r *http.Request) {
	c, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.runTest(w, r, c)
}

// testUnsavedIMAP tries the configuration in the body without saving it. The
// name may be left out; a secret left out is taken from the saved
// configuration of that name, so that an edit form can test before saving.
func (a *API) testUnsavedIMAP(w http.ResponseWriter, r *http.Request) {
	var in imapconf.Input
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	var prev *imapconf.Config
	if in.Name == nil || *in.Name == "" {
		in.Name = new(string)
		*in.Name = "unsaved"
	} else if c, err := a.store.GetIMAP(r.Context(), *in.Name); err == nil || store.OnlySecret(err) {
		prev = &c
	}
	c, err := imapconf.Build(in, prev)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.runTest(w, r, imapconf.ForTest(c, prev))
}

func (a *API) runTest(w http.ResponseWriter, r *http.Request, c imapconf.Config) {
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	res, err := a.rt.Test(ctx, c)
	switch {
	case errors.Is(err, control.ErrUnavailable):
		writeJSONError(w, http.StatusNotImplemented, apiError{Code: "not_implemented", Message: "testing connections is not available"})
	case err != nil:
		a.writeError(w, r, err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (a *API) editIMAP(w http.ResponseWriter, r *http.Request) {
	// A configuration whose stored secret does not open can be edited: the
	// secret must then be given again.
	prev, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		a.writeError(w, r, err)
		return
	}
	var in imapconf.Input
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.changes.EditIMAP(r.Context(), "", prev, in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c.View())
}

func (a *API) deleteIMAP(w http.ResponseWriter, r *http.Request) {
	if err := a.changes.DeleteIMAP(r.Context(), "", r.PathValue("name")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) duplicateIMAP(w http.ResponseWriter, r *http.Request) {
	orig, err := a.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var in imapconf.DuplicateInput
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.changes.DuplicateIMAP(r.Context(), "", orig, in)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/imap/"+url.PathEscape(c.Name))
	writeJSON(w, http.StatusCreated, c.View())
}
