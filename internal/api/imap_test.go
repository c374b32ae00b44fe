package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestIMAPLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()

		in := genericInput("Support_Inbox")
		in.Description = p("Tickets from customers")
		in.Port = p(143)
		in.AfterProcessing = p("move")
		in.MoveTo = p("Processed")
		in.PollInterval = p(30)
		in.Backlog = p("unseen")
		v, err := h.c.CreateIMAP(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want := imapconf.View{Name: "Support_Inbox", ServerType: "imaps", Type: "generic", Description: "Tickets from customers",
			Enabled: true, Host: "imap.example.com", Port: 143, Username: "support@example.com", HasPassword: true,
			Folder: "INBOX", TLS: "starttls", AfterProcessing: "move", MoveTo: "Processed", PollInterval: 30, Backlog: "unseen",
			Auth: "password", CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt}
		if v != want {
			t.Errorf("create: got %+v,\nwant %+v", v, want)
		}
		if got, err := h.c.GetIMAP(ctx, "support_inbox"); err != nil || got != want {
			t.Errorf("view (any case): got %+v, %v", got, err)
		}
		if _, err := h.c.CreateIMAP(ctx, graphInput("graph_inbox")); err != nil {
			t.Fatal(err)
		}
		list, err := h.c.ListIMAP(ctx, 0, "")
		if err != nil || len(list.Items) != 2 || list.Items[0].Name != "graph_inbox" || list.NextCursor != "" {
			t.Fatalf("list: got %+v, %v", list, err)
		}
		page1, err := h.c.ListIMAP(ctx, 1, "")
		if err != nil || len(page1.Items) != 1 || page1.NextCursor == "" {
			t.Fatalf("page 1: got %+v, %v", page1, err)
		}
		page2, err := h.c.ListIMAP(ctx, 1, page1.NextCursor)
		if err != nil || len(page2.Items) != 1 || page2.Items[0].Name != "Support_Inbox" || page2.NextCursor != "" {
			t.Fatalf("page 2: got %+v, %v", page2, err)
		}

		// Edit: rename, omit the password (kept: the server stays the
		// same), change fields.
		edit := genericInput("support_renamed")
		edit.Password = nil
		edit.Port = p(143)
		edit.Enabled = p(false)
		edited, err := h.c.EditIMAP(ctx, "Support_Inbox", edit)
		if err != nil {
			t.Fatal(err)
		}
		if edited.Name != "support_renamed" || !edited.HasPassword || edited.Enabled || edited.Port != 143 || edited.TLS != "starttls" {
			t.Errorf("edit: got %+v", edited)
		}
		if stored, _ := st.GetIMAP(ctx, "support_renamed"); stored.Password != "Gen-Secret-Support_Inbox" {
			t.Error("edit without a password did not keep the stored one")
		}
		if _, err := h.c.GetIMAP(ctx, "Support_Inbox"); apiErr(t, err).Status != http.StatusNotFound {
			t.Errorf("old name after rename: got %v, want 404", err)
		}
		// Sending back what was read (with read-only fields) is accepted.
		back := map[string]any{}
		full, _ := h.c.GetIMAP(ctx, "support_renamed")
		b := fmt.Sprintf(`{"name":%q,"host":%q,"port":%d,"username":%q,"hasPassword":true,"hasClientSecret":false,"createdAt":%q,"updatedAt":%q}`,
			full.Name, full.Host, full.Port, full.Username, full.CreatedAt.Format("2006-01-02T15:04:05.999999999Z07:00"), full.UpdatedAt.Format("2006-01-02T15:04:05.999999999Z07:00"))
		if err := h.c.Do(ctx, http.MethodPut, "/api/v1/imap/support_renamed", []byte(b), &back); err != nil {
			t.Errorf("PUT of a view: %v", err)
		}

		// Duplicate and delete.
		cp, err := h.c.DuplicateIMAP(ctx, "support_renamed", map[string]string{"password": "Copy-Secret"})
		if err != nil {
			t.Fatal(err)
		}
		if cp.Name != "support_renamed_copied" || cp.Enabled {
			t.Errorf("duplicate: got %+v", cp)
		}
		for _, n := range []string{"support_renamed_copied", "support_renamed", "graph_inbox"} {
			if err := h.c.DeleteIMAP(ctx, n); err != nil {
				t.Errorf("delete %s: %v", n, err)
			}
		}
		if err := h.c.DeleteIMAP(ctx, "graph_inbox"); apiErr(t, err).Status != http.StatusNotFound {
			t.Errorf("second delete: got %v, want 404", err)
		}
		if list, _ := h.c.ListIMAP(ctx, 0, ""); len(list.Items) != 0 {
			t.Errorf("after deleting all: got %d items", len(list.Items))
		}
	})
}

func TestDeleteReferencedIMAPIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		v, err := h.c.CreateIMAP(ctx, genericInput("support"))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := st.GetIMAP(ctx, v.Name)
		if err := st.CreateFlow(ctx, &store.FlowRecord{Name: "Invoices", IMAPID: c.ID, Enabled: true, Definition: "{}"}); err != nil {
			t.Fatal(err)
		}
		before := h.snapshot()
		err = h.c.DeleteIMAP(ctx, "support")
		ce := apiErr(t, err)
		if ce.Status != http.StatusConflict || len(ce.Flows) != 1 || ce.Flows[0] != "Invoices" {
			t.Errorf("got %+v, want 409 with flows [Invoices]", ce)
		}
		if after := h.snapshot(); after != before {
			t.Error("a refused delete changed something")
		}
	})
}
