package api

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
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

// buildFlow decodes and checks a flow body, including that its trigger names
// an existing IMAP configuration, and returns the record to store.
func (a *API) buildFlow(w http.ResponseWriter, r *http.Request, prev *flow.Flow) (store.FlowRecord, flow.Flow, []int, error) {
	var in flow.Input
	if err := decode(w, r, &in); err != nil {
		return store.FlowRecord{}, flow.Flow{}, nil, err
	}
	f, generated, err := flow.Build(in, prev, flow.NewSecret)
	ve, _ := err.(valid.Errors)
	if err != nil && ve == nil {
		return store.FlowRecord{}, f, nil, err
	}
	fr, err := flow.Record(r.Context(), a.store, &f)
	var missing valid.Errors
	if errors.As(err, &missing) {
		if ve == nil {
			ve = valid.Errors{}
		}
		for k, m := range missing {
			ve.Add(k, m)
		}
	} else if err != nil {
		return store.FlowRecord{}, f, nil, err
	}
	if err := ve.Err(); err != nil {
		return store.FlowRecord{}, f, nil, err
	}
	return fr, f, generated, nil
}

func (a *API) createFlow(w http.ResponseWriter, r *http.Request) {
	fr, f, generated, err := a.buildFlow(w, r, nil)
	if err == nil {
		err = a.store.CreateFlow(r.Context(), &fr)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	fr.IMAPName = f.Start.EmailTrigger.IMAP
	a.log.Info("flow created", "flow", fr.Name, "imap", fr.IMAPName)
	w.Header().Set("Location", "/api/v1/flows/"+url.PathEscape(fr.Name))
	writeJSON(w, http.StatusCreated, flowView(fr, f, generated))
}

func (a *API) getFlow(w http.ResponseWriter, r *http.Request) {
	fr, err := a.store.GetFlow(r.Context(), r.PathValue("name"))
	var f flow.Flow
	if err == nil {
		f, err = flow.Read(fr)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, flowView(fr, f, nil))
}

func (a *API) editFlow(w http.ResponseWriter, r *http.Request) {
	old, err := a.store.GetFlow(r.Context(), r.PathValue("name"))
	var prev flow.Flow
	if err == nil {
		prev, err = flow.Read(old)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	fr, f, generated, err := a.buildFlow(w, r, &prev)
	if err == nil {
		fr.ID = old.ID
		err = a.store.UpdateFlow(r.Context(), &fr)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	fr.IMAPName, fr.CreatedAt = f.Start.EmailTrigger.IMAP, old.CreatedAt
	a.log.Info("flow edited", "flow", fr.Name, "imap", fr.IMAPName)
	writeJSON(w, http.StatusOK, flowView(fr, f, generated))
}

func (a *API) deleteFlow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.store.DeleteFlow(r.Context(), name); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("flow deleted", "flow", name)
	w.WriteHeader(http.StatusNoContent)
}
