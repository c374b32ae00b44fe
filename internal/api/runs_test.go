package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestRunsAndTrigger(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/flows", flowBody(nil), nil); err != nil {
			t.Fatal(err)
		}
		c, _ := st.GetIMAP(ctx, "support")
		var batch []store.Incoming
		for i, subj := range []string{"Invoice", "Hello", "invoice"} {
			raw := fmt.Sprintf("From: x@example.org\r\nSubject: %s\r\nMessage-ID: <r%d@x>\r\n\r\nbody\r\n", subj, i)
			batch = append(batch, store.Incoming{UID: uint32(i + 1), Raw: []byte(raw), Msg: mail.Parse([]byte(raw))})
		}
		rec, _, err := st.RecordBatch(ctx, store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 3},
			Messages: batch}, flow.Hook(st))
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Items      []api.RunView `json:"items"`
			NextCursor string        `json:"nextCursor"`
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/runs?flow=INVOICES&status=pending", nil, &list); err != nil || len(list.Items) != 2 {
			t.Fatalf("got %+v, %v, want 2 pending runs", list, err)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/runs?limit=1", nil, &list); err != nil || len(list.Items) != 1 || list.NextCursor == "" {
			t.Fatalf("page 1: got %+v, %v", list, err)
		}
		cursor := list.NextCursor
		list.Items, list.NextCursor = nil, ""
		if err := h.c.Do(ctx, "GET", "/api/v1/runs?limit=1&cursor="+cursor, nil, &list); err != nil || len(list.Items) != 1 || list.NextCursor != "" {
			t.Fatalf("page 2: got %+v, %v", list, err)
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		id := list.Items[0].ID
		list.Items = nil
		if err := h.c.Do(ctx, "GET", "/api/v1/runs?since="+future, nil, &list); err != nil || len(list.Items) != 0 {
			t.Errorf("since the future: got %+v, %v", list, err)
		}
		for _, bad := range []string{"status=done", "since=yesterday", "limit=0", "cursor=zz"} {
			err := h.c.Do(ctx, "GET", "/api/v1/runs?"+bad, nil, nil)
			if ce := apiErr(t, err); ce.Status != http.StatusBadRequest || len(ce.Fields) != 1 {
				t.Errorf("%s: got %+v", bad, ce)
			}
		}
		var run api.RunView
		if err := h.c.Do(ctx, "GET", "/api/v1/runs/"+id, nil, &run); err != nil || run.Attempts == nil || run.Flow != "invoices" {
			t.Fatalf("view: got %+v, %v", run, err)
		}
		if err := h.c.Do(ctx, "GET", "/api/v1/runs/run_nope", nil, nil); apiErr(t, err).Status != http.StatusNotFound {
			t.Errorf("missing run: got %v", err)
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/runs/"+id+"/retry", nil, &run); err != nil || run.Status != "pending" {
			t.Errorf("retry: got %+v, %v", run, err)
		}

		// The message that matched nothing says why.
		var m api.MessageView
		if err := h.c.Do(ctx, "GET", fmt.Sprintf("/api/v1/messages/%d", rec[1].ID), nil, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Matches) != 1 || m.Matches[0].Matched || m.Matches[0].Reason != `subject "Hello" is not "Invoice"` {
			t.Errorf("got matches %+v", m.Matches)
		}
		// Re-trigger: nothing new, then forced.
		var tr api.TriggerResult
		if err := h.c.Do(ctx, "POST", fmt.Sprintf("/api/v1/messages/%d/trigger", rec[0].ID), nil, &tr); err != nil || len(tr.Runs) != 0 || len(tr.Matches) != 1 {
			t.Errorf("trigger: got %+v, %v", tr, err)
		}
		if err := h.c.Do(ctx, "POST", fmt.Sprintf("/api/v1/messages/%d/trigger", rec[0].ID), map[string]bool{"force": true}, &tr); err != nil || len(tr.Runs) != 1 {
			t.Errorf("forced trigger: got %+v, %v", tr, err)
		}
		if err := h.c.Do(ctx, "POST", "/api/v1/messages/999999/trigger", nil, nil); apiErr(t, err).Status != http.StatusNotFound {
			t.Errorf("trigger of a missing message: got %v", err)
		}
		if err := h.c.Do(ctx, "POST", fmt.Sprintf("/api/v1/messages/%d/trigger", rec[0].ID), map[string]any{"forced": true}, nil); apiErr(t, err).Fields["forced"] == "" {
			t.Errorf("unknown field: got %v", err)
		}
	})
}
