package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"mailtrigger/internal/control"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

func (u *UI) imapNames(ctx context.Context) ([]string, error) {
	cs, err := u.allIMAP(ctx)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names, nil
}

func (u *UI) renderFlow(w http.ResponseWriter, r *http.Request, status int, p flowPage, fl *flash) {
	names, err := u.imapNames(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	p.IMAPs, p.Max = names, flow.MaxActivities
	if p.Errors == nil {
		p.Errors = valid.Errors{}
	}
	title := "New flow"
	if !p.Create {
		title = "Flow " + p.Orig
	}
	pg := page{Title: title, Nav: "flows", Crumbs: flowCrumbs, Data: p, Flash: fl}
	if r.Method == http.MethodPost && !p.Create {
		pg.Canonical = "/flows/" + pathEscape(p.Orig) // a new flow's editor, or the one sent
	}
	u.render(w, r, status, "flow", pg)
}

func (u *UI) flowNew(w http.ResponseWriter, r *http.Request) {
	f := flowForm{Enabled: true, Match: flow.MatchExact, IMAP: r.URL.Query().Get("imap")}
	u.renderFlow(w, r, http.StatusOK, flowPage{Create: true, Form: withBlank(f)}, nil)
}

func (u *UI) flowEdit(w http.ResponseWriter, r *http.Request) {
	fr, f, err := u.changes.Flow(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderFlow(w, r, http.StatusOK, flowPage{Orig: fr.Name, Form: withBlank(formFromFlow(fr, f))}, nil)
}

func (u *UI) flowCreate(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	u.saveFlow(w, r, nil, nil)
}

func (u *UI) flowSave(w http.ResponseWriter, r *http.Request) {
	old, prev, err := u.changes.Flow(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	u.saveFlow(w, r, &old, &prev)
}

func (u *UI) saveFlow(w http.ResponseWriter, r *http.Request, old *store.FlowRecord, prev *flow.Flow) {
	ctx := r.Context()
	in, aligned, formIndex, ff, found := flowInputFromValues(r.PostForm, prev)
	var s control.SavedFlow
	var err error
	if old == nil {
		s, err = u.changes.CreateFlow(ctx, userFrom(ctx), in, found)
	} else {
		s, err = u.changes.EditFlow(ctx, userFrom(ctx), *old, aligned, in, found)
	}
	var ve valid.Errors
	e := valid.Errors{}
	switch {
	case err == nil:
	case errors.As(err, &ve):
		e = formErrors(ve, formIndex)
	case errors.Is(err, store.ErrConflict):
		e.Add("name", "already taken (names are compared case-insensitively)")
	case errors.Is(err, store.ErrNotFound):
		e.Add("imap", "the IMAP configuration was deleted meanwhile")
	default:
		u.serverError(w, r, err)
		return
	}
	// "At least one webhook" is about the empty URL box the form shows.
	if m, ok := e["activities"]; ok && len(ff.Acts) == 0 {
		delete(e, "activities")
		if m == "at least one activity is required" {
			m = "required: the URL of the webhook to deliver to"
		}
		e.Add("act-0-url", m)
	}
	p := flowPage{Create: old == nil, Errors: e}
	if old != nil {
		p.Orig = old.Name
		ff.CreatedAt, ff.UpdatedAt = &old.CreatedAt, &old.UpdatedAt
	}
	if len(e) > 0 {
		p.Form = withBlank(ff)
		u.renderFlow(w, r, http.StatusBadRequest, p, nil)
		return
	}
	fr, f, generated := s.Record, s.Flow, s.Generated
	verb := "created"
	if old != nil {
		verb = "saved"
	}
	if len(generated) == 0 {
		u.setFlash(r, "ok", fmt.Sprintf("Flow %s %s.", fr.Name, verb))
		redirect(w, r, "/flows/"+pathEscape(fr.Name))
		return
	}
	// A generated signing secret is shown in this answer only.
	p = flowPage{Orig: fr.Name, Form: withBlank(formFromFlow(fr, f))}
	for _, i := range generated {
		p.Secrets = append(p.Secrets, shownSecret{Webhook: i + 1, URL: f.Activities[i].URL, Secret: f.Activities[i].Secret})
	}
	u.renderFlow(w, r, http.StatusOK, p, &flash{Kind: "ok", Text: fmt.Sprintf("Flow %s %s.", fr.Name, verb)})
}

// flowMatch answers the editor's "test a subject" box: would a message with
// this subject (and sender) start a flow with this trigger, and why (not)?
// It changes nothing.
func (u *UI) flowMatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t := flow.Trigger{Subject: q.Get("subject"), Match: q.Get("match"), IgnoreReplyPrefixes: q.Get("ignoreReplyPrefixes") != "",
		From: strings.TrimSpace(q.Get("from"))}
	if t.Match == "" {
		t.Match = flow.MatchExact
	}
	type answer struct {
		Matched bool   `json:"matched"`
		Reason  string `json:"reason,omitempty"`
		Error   string `json:"error,omitempty"`
	}
	if m := valid.OneOf(t.Match, flow.MatchExact, flow.MatchContains, flow.MatchPrefix, flow.MatchRegex); m != "" {
		writeJSON(w, http.StatusOK, answer{Error: "Match " + m})
		return
	}
	if strings.TrimSpace(t.Subject) == "" {
		writeJSON(w, http.StatusOK, answer{Error: "Enter the trigger's Subject first."})
		return
	}
	m, err := flow.Compile(t)
	if err != nil {
		writeJSON(w, http.StatusOK, answer{Error: "The Subject is not a valid regular expression (RE2): " + strings.TrimPrefix(errors.Unwrap(err).Error(), "error parsing regexp: ")})
		return
	}
	ok, reason := m.Match(q.Get("test"), strings.TrimSpace(q.Get("sender")))
	writeJSON(w, http.StatusOK, answer{Matched: ok, Reason: plainReason(reason)})
}
