package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestMessageDownloadsAndCluster drives the routes the other API tests do
// not (a message's raw form and attachments, the cluster, a page of
// messages), so that their answers too are held to the OpenAPI document by
// the harness.
func TestMessageDownloadsAndCluster(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	started := time.Now().UTC().Truncate(time.Second)
	rt := &controlfake.Runtime{ClusterView: func(ctx context.Context) (store.ClusterView, error) {
		return store.ClusterView{Self: "r1", Database: store.SQLite, LeaseTTLSeconds: 30, Replicas: []store.ReplicaView{
			{Replica: store.Replica{ID: "r1", Address: "127.0.0.1:8080", Version: "dev", Mailboxes: 1, StartedAt: started, HeartbeatAt: started},
				Live: true, Self: true}}}, nil
	}}
	h := newHarness(t, st, func(d *server.Deps) { d.Runtime = rt })
	ctx := context.Background()
	if _, err := h.c.CreateIMAP(ctx, genericInput("support")); err != nil {
		t.Fatal(err)
	}
	c, _ := st.GetIMAP(ctx, "support")
	withAttachment := "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Invoice\r\nMessage-ID: <a1@x>\r\n" +
		"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n%PDF-1.4 fake\r\n--b--\r\n"
	bare := "Subject: no addresses, no date\r\n\r\nbody\r\n"
	var batch []store.Incoming
	for i, raw := range []string{withAttachment, bare} {
		batch = append(batch, store.Incoming{UID: uint32(i + 1), Raw: []byte(raw), Msg: mail.Parse([]byte(raw))})
	}
	rec, _, err := st.RecordBatch(ctx, store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1,
		Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 2}, Messages: batch}, flow.Hook(st))
	if err != nil {
		t.Fatal(err)
	}

	page, err := h.c.ListMessages(ctx, "support", 1, "")
	if err != nil || len(page.Items) != 1 || page.NextCursor == "" {
		t.Fatalf("page 1: got %+v, %v", page, err)
	}
	if page, err = h.c.ListMessages(ctx, "support", 1, page.NextCursor); err != nil || len(page.Items) != 1 {
		t.Fatalf("page 2: got %+v, %v", page, err)
	}
	for _, r := range rec {
		if _, err := h.c.GetMessage(ctx, r.ID); err != nil {
			t.Errorf("message %d: %v", r.ID, err)
		}
	}
	m, err := h.c.GetMessage(ctx, rec[0].ID)
	if err != nil || len(m.Attachments) != 1 {
		t.Fatalf("got %+v, %v, want one attachment", m, err)
	}

	status, body := h.raw("GET", fmt.Sprintf("/api/v1/messages/%d/raw", rec[0].ID), "", nil)
	if status != http.StatusOK || body != withAttachment {
		t.Errorf("raw: got %d %.80q", status, body)
	}
	status, body = h.raw("GET", m.Attachments[0].URL, "", nil)
	if status != http.StatusOK || !strings.HasPrefix(body, "%PDF-1.4") {
		t.Errorf("attachment: got %d %.80q", status, body)
	}
	for _, path := range []string{fmt.Sprintf("/api/v1/messages/%d/attachments/7", rec[0].ID), "/api/v1/messages/999999/raw",
		"/api/v1/messages/x/raw"} {
		if status, _ := h.raw("GET", path, "", nil); status != http.StatusNotFound {
			t.Errorf("%s: got %d, want 404", path, status)
		}
	}

	var cl store.ClusterView
	if err := h.c.Do(ctx, "GET", "/api/v1/cluster", nil, &cl); err != nil || len(cl.Replicas) != 1 {
		t.Errorf("cluster: got %+v, %v", cl, err)
	}
	offline := newHarness(t, storetest.Open(t, store.SQLite)) // a server without a replica registry
	if err := offline.c.Do(ctx, "GET", "/api/v1/cluster", nil, nil); apiErr(t, err).Status != http.StatusNotFound {
		t.Errorf("cluster without a registry: got %v", err)
	}
	var run api.RunView
	if err := h.c.Do(ctx, "POST", "/api/v1/runs/run_nope/retry", nil, &run); apiErr(t, err).Status != http.StatusNotFound {
		t.Errorf("retry of a missing run: got %v", err)
	}
}
