package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// RunView is a run in responses. Attempts are listed on the view of one run.
type RunView struct {
	ID            string        `json:"id"`
	Flow          string        `json:"flow"`
	IMAP          string        `json:"imap"`
	MessageID     int64         `json:"messageId"`
	Status        string        `json:"status"`
	AttemptCount  int           `json:"attemptCount"`
	Attempts      []AttemptView `json:"attempts,omitzero"`
	CreatedAt     time.Time     `json:"createdAt"`
	NextAttemptAt *time.Time    `json:"nextAttemptAt,omitempty"`
	DeliveredAt   *time.Time    `json:"deliveredAt,omitempty"`
	LastError     string        `json:"lastError,omitempty"`
}

// AttemptView is one delivery attempt.
type AttemptView struct {
	N          int       `json:"n"`
	StartedAt  time.Time `json:"startedAt"`
	DurationMS int64     `json:"durationMs"`
	StatusCode int       `json:"statusCode,omitempty"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

func runView(r store.Run, attempts []store.Attempt) RunView {
	v := RunView{ID: r.PublicID, Flow: r.FlowName, IMAP: r.IMAPName, MessageID: r.MessageID, Status: r.Status,
		AttemptCount: r.Attempts, CreatedAt: r.CreatedAt, DeliveredAt: r.DeliveredAt, LastError: r.LastError}
	if r.Status == store.RunPending || r.Status == store.RunRetrying {
		next := r.NextAttemptAt
		v.NextAttemptAt = &next
	}
	for _, a := range attempts {
		v.Attempts = append(v.Attempts, AttemptView{N: a.N, StartedAt: a.StartedAt, DurationMS: a.Duration.Milliseconds(),
			StatusCode: a.StatusCode, Error: a.Error, Response: a.Response})
	}
	if attempts != nil && v.Attempts == nil {
		v.Attempts = []AttemptView{}
	}
	return v
}

func (a *API) runRoutes(h func(string, http.HandlerFunc)) {
	h("GET /api/v1/runs", a.listRuns)
	h("GET /api/v1/runs/{id}", a.getRun)
	h("POST /api/v1/runs/{id}/retry", a.retryRun)
	h("POST /api/v1/messages/{id}/trigger", a.triggerMessage)
}

func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	limit, cursor, err := paging(r)
	e, _ := err.(valid.Errors)
	if e == nil {
		e = valid.Errors{}
	}
	q := r.URL.Query()
	f := store.RunFilter{Flow: q.Get("flow"), IMAP: q.Get("imap"), Status: q.Get("status")}
	if f.Status != "" {
		if m := valid.OneOf(f.Status, store.RunPending, store.RunDelivering, store.RunRetrying, store.RunDelivered, store.RunFailed); m != "" {
			e.Add("status", m)
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				e.Add(p.name, "must be a time such as 2026-11-25T10:00:00Z")
			}
			*p.t = t
		}
	}
	var before int64
	if cursor != "" {
		if before, err = strconv.ParseInt(cursor, 10, 64); err != nil {
			e.Add("cursor", "not a cursor returned by this API")
		}
	}
	if err := e.Err(); err != nil {
		a.writeError(w, r, err)
		return
	}
	runs, err := a.store.ListRuns(r.Context(), f, before, limit+1)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := List[RunView]{Items: []RunView{}}
	for i, run := range runs {
		if i == limit {
			out.NextCursor = encodeCursor(strconv.FormatInt(runs[i-1].ID, 10))
			break
		}
		out.Items = append(out.Items, runView(run, nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	run, attempts, err := a.store.GetRun(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, runView(run, attempts))
}

func (a *API) retryRun(w http.ResponseWriter, r *http.Request) {
	run, err := a.changes.RetryRun(r.Context(), "", r.PathValue("id"))
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			writeJSONError(w, http.StatusConflict, apiError{Code: "conflict", Message: err.Error()})
			return
		}
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, runView(run, nil))
}

// TriggerInput is the body of POST /api/v1/messages/{id}/trigger.
type TriggerInput struct {
	Force bool `json:"force"`
}

// TriggerResult is its answer: the runs started and every flow's verdict.
type TriggerResult struct {
	Runs    []RunView   `json:"runs"`
	Matches []MatchView `json:"matches"`
}

// MatchView is whether a flow matched a message, and why not.
type MatchView struct {
	Flow    string `json:"flow"`
	Matched bool   `json:"matched"`
	Reason  string `json:"reason"`
}

func matchViews(ms []store.Match) []MatchView {
	out := []MatchView{}
	for _, m := range ms {
		out = append(out, MatchView{Flow: m.FlowName, Matched: m.Matched, Reason: m.Reason})
	}
	return out
}

func (a *API) triggerMessage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var in TriggerInput
	if r.ContentLength > 0 { // the body is optional
		if err := decode(w, r, &in); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	runs, matches, err := a.changes.Retrigger(r.Context(), "", id, in.Force)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := TriggerResult{Runs: []RunView{}, Matches: matchViews(matches)}
	for _, run := range runs {
		out.Runs = append(out.Runs, runView(run, nil))
	}
	writeJSON(w, http.StatusOK, out)
}
