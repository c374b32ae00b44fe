package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
)

type flowRow struct {
	Name, Description, IMAP, Subject, Match string
	Enabled                                 bool
	Activities                              int
	UpdatedAt                               time.Time
}

type flowListPage struct {
	Flows  []flowRow
	Delete *flowRow // the delete confirmation, when open
}

func (u *UI) flowRows(ctx context.Context) ([]flowRow, error) {
	frs, err := u.allFlows(ctx)
	if err != nil {
		return nil, err
	}
	rows := []flowRow{}
	for _, fr := range frs {
		f, err := flow.Read(store.FlowRecord{Definition: fr.Definition})
		if err != nil {
			return nil, err
		}
		t := f.Start.EmailTrigger
		rows = append(rows, flowRow{Name: fr.Name, Description: f.Description, IMAP: fr.IMAPName, Subject: t.Subject,
			Match: t.Match, Enabled: fr.Enabled, Activities: len(f.Activities), UpdatedAt: fr.UpdatedAt})
	}
	return rows, nil
}

func (u *UI) flowList(w http.ResponseWriter, r *http.Request) {
	rows, err := u.flowRows(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "flows", page{Title: "Process Flows", Nav: "flows", Crumbs: flowCrumbs, Data: flowListPage{Flows: rows}})
}

func (u *UI) flowDeleteDialog(w http.ResponseWriter, r *http.Request) {
	fr, err := u.store.GetFlow(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	rows, err := u.flowRows(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "flows", page{Title: "Delete " + fr.Name, Nav: "flows", Crumbs: flowCrumbs,
		Data: flowListPage{Flows: rows, Delete: &flowRow{Name: fr.Name}}})
}

func (u *UI) flowDelete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	fr, err := u.store.GetFlow(ctx, r.PathValue("name"))
	if err == nil {
		err = u.changes.DeleteFlow(ctx, userFrom(ctx), fr.Name)
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Flow %s deleted. Its runs are kept.", fr.Name))
	redirect(w, r, "/flows")
}
