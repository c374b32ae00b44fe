package api

import (
	"net/http"
	"net/url"
	"time"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
)

// FlowView is a flow in responses.
type FlowView struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Enabled     bool           `json:"enabled"`
	Start       flow.Start     `json:"start"`
	Activities  []ActivityView `json:"activities"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
}

// ActivityView is an activity in responses. Secret is present only in the
// response that generated it: it is shown once. Headers names each header
// with an empty value: header values are write-only, like secrets.
type ActivityView struct {
	Type               string            `json:"type"`
	URL                string            `json:"url"`
	Headers            map[string]string `json:"headers,omitempty"`
	Timeout            string            `json:"timeout,omitempty"`
	IncludeAttachments bool              `json:"includeAttachments"`
	MaxConcurrency     int               `json:"maxConcurrency,omitempty"`
	RatePerSecond      float64           `json:"ratePerSecond,omitempty"`
	HasSecret          bool              `json:"hasSecret"`
	Secret             string            `json:"secret,omitempty"`
}

func flowView(fr store.FlowRecord, f flow.Flow, show []int) FlowView {
	v := FlowView{Name: fr.Name, Description: f.Description, Enabled: fr.Enabled, Start: f.Start, CreatedAt: fr.CreatedAt,
		UpdatedAt: fr.UpdatedAt, Activities: []ActivityView{}}
	// The trigger follows its configuration through renames.
	v.Start.EmailTrigger.IMAP = fr.IMAPName
	for i, a := range f.Activities {
		av := ActivityView{Type: a.Type, URL: a.URL, Headers: a.HeaderNames(), Timeout: a.Timeout, IncludeAttachments: a.IncludeAttachments,
			MaxConcurrency: a.MaxConcurrency, RatePerSecond: a.RatePerSecond, HasSecret: a.Secret != ""}
		for _, s := range show {
			if s == i {
				av.Secret = a.Secret
			}
		}
		v.Activities = append(v.Activities, av)
	}
	return v
}

func (a *API) flowRoutes(h func(string, http.HandlerFunc)) {
	h("GET /api/v1/flows", a.listFlows)
	h("POST /api/v1/flows", a.createFlow)
	h("GET /api/v1/flows/{name}", a.getFlow)
	h("PUT /api/v1/flows/{name}", a.editFlow)
	h("DELETE /api/v1/flows/{name}", a.deleteFlow)
}

func (a *API) listFlows(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	frs, err := a.store.ListFlows(r.Context(), cursor, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[FlowView]{Items: []FlowView{}}
	for i, fr := range frs {
		if i == limit {
			out.NextCursor = encodeCursor(frs[i-1].Name)
			break
		}
		f, err := flow.Read(fr)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		out.Items = append(out.Items, flowView(fr, f, nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createFlow(w http.ResponseWriter, r *http.Request) {
	var in flow.Input
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.changes.CreateFlow(r.Context(), "", in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/flows/"+url.PathEscape(s.Record.Name))
	writeJSON(w, http.StatusCreated, flowView(s.Record, s.Flow, s.Generated))
}

func (a *API) getFlow(w http.ResponseWriter, r *http.Request) {
	fr, f, err := a.changes.Flow(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, flowView(fr, f, nil))
}

func (a *API) editFlow(w http.ResponseWriter, r *http.Request) {
	old, prev, err := a.changes.Flow(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var in flow.Input
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.changes.EditFlow(r.Context(), "", old, &prev, in, nil)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, flowView(s.Record, s.Flow, s.Generated))
}

func (a *API) deleteFlow(w http.ResponseWriter, r *http.Request) {
	if err := a.changes.DeleteFlow(r.Context(), "", r.PathValue("name")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
