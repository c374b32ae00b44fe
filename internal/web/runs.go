package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// pageSize is the number of rows of the runs and messages tables.
const pageSize = 50

var runStatuses = []string{store.RunPending, store.RunDelivering, store.RunRetrying, store.RunDelivered, store.RunFailed}

// runRow is a run as the list shows it, with its message's subject.
type runRow struct {
	store.Run
	Subject string
}

type runsPage struct {
	Runs     []runRow
	Filter   store.RunFilter
	Flows    []string
	IMAPs    []string
	Statuses []string
	Error    string
	Older    string // the URL of the next page, "" on the last
	Newest   string // the URL of the first page, "" when on it
}

func (u *UI) runList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p := runsPage{Filter: store.RunFilter{Flow: q.Get("flow"), IMAP: q.Get("imap"), Status: q.Get("status")}, Statuses: runStatuses}
	status := http.StatusOK
	if p.Filter.Status != "" && valid.OneOf(p.Filter.Status, runStatuses...) != "" {
		p.Error = "Status " + valid.OneOf(p.Filter.Status, runStatuses...) + "."
		p.Filter.Status = ""
		status = http.StatusBadRequest
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	runs, err := u.store.ListRuns(ctx, p.Filter, before, pageSize+1)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if len(runs) > pageSize {
		runs = runs[:pageSize]
		nq := url.Values{}
		for _, k := range []string{"flow", "imap", "status"} {
			if v := q.Get(k); v != "" {
				nq.Set(k, v)
			}
		}
		nq.Set("before", strconv.FormatInt(runs[len(runs)-1].ID, 10))
		p.Older = "/runs?" + nq.Encode()
	}
	if before > 0 {
		nq := url.Values{}
		for _, k := range []string{"flow", "imap", "status"} {
			if v := q.Get(k); v != "" {
				nq.Set(k, v)
			}
		}
		p.Newest = "/runs?" + nq.Encode()
	}
	ids := make([]int64, 0, len(runs))
	for _, run := range runs {
		ids = append(ids, run.MessageID)
	}
	subjects, err := u.store.MessageSubjects(ctx, ids)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	for _, run := range runs {
		p.Runs = append(p.Runs, runRow{Run: run, Subject: subjects[run.MessageID]})
	}
	if p.Flows, err = u.flowNames(r); err != nil {
		u.serverError(w, r, err)
		return
	}
	if p.IMAPs, err = u.imapNames(ctx); err != nil {
		u.serverError(w, r, err)
		return
	}
	u.render(w, r, status, "runs", page{Title: "Runs", Nav: "runs", Crumbs: runCrumbs, Data: p})
}

func (u *UI) flowNames(r *http.Request) ([]string, error) {
	frs, err := u.allFlows(r.Context())
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, f := range frs {
		names = append(names, f.Name)
	}
	return names, nil
}

type runPage struct {
	Run      store.Run
	Attempts []store.Attempt
	Message  *store.StoredMessage
	CanRetry bool
}

func (u *UI) runDetail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	run, attempts, err := u.store.GetRun(ctx, r.PathValue("id"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := runPage{Run: run, Attempts: attempts, CanRetry: run.Status != store.RunDelivering && run.Status != store.RunDelivered}
	if m, err := u.store.GetMessage(ctx, run.MessageID); err == nil {
		p.Message = &m
	} else if !errors.Is(err, store.ErrNotFound) {
		u.serverError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "run", page{Title: "Run " + run.PublicID, Nav: "runs", Crumbs: runCrumbs, Data: p})
}

func (u *UI) runRetry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	run, err := u.changes.RetryRun(ctx, userFrom(ctx), id)
	switch {
	case errors.Is(err, store.ErrConflict):
		u.setFlash(r, "error", "This run cannot be retried now: it is being delivered or was delivered already.")
		redirect(w, r, "/runs/"+pathEscape(id))
		return
	case err != nil:
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Run %s is queued for another attempt.", run.PublicID))
	redirect(w, r, "/runs/"+pathEscape(run.PublicID))
}
