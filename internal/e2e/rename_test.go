package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

// TestTriggerFollowsRenameAndRefusesDelete checks a flow's trigger against
// changes of its IMAP configuration, on the real binary: renamed, the flow
// follows (its view shows the new name, new mail still starts it, the run and
// the payload carry the new name, and nothing already read starts again);
// deleted while the flow names it, the request is refused with 409 listing
// the flow and changes nothing; once the flow is gone the configuration can
// be deleted, and the run and message history stays.
func TestTriggerFollowsRenameAndRefusesDelete(t *testing.T) {
	ctx := context.Background()
	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "sales", "pw-sales")
	hooks := newHookListener(t)
	s := newService(t, fastRetryEnv...)
	s.start()
	c := s.api()
	createMailbox(s, c, d, "sales_inbox", addr, imapconf.BacklogAll)
	hookURL := hooks.handle("/quotes", "", nil)
	hooks.setSecret("/quotes", createFlow(s, c, flowSpec{name: "quotes", imap: "sales_inbox", subject: "Quote request", match: "exact", url: hookURL}))
	waitState(s, c, "sales_inbox", imapconf.StateIdle, 15*time.Second)
	conn := d.DialIMAPS(t, addr, nil)

	// delivered waits until flow quotes has n runs, all delivered, and
	// returns them by message id.
	delivered := func(n int) map[int64]api.RunView {
		t.Helper()
		var runs []api.RunView
		poll(s, 30*time.Second, 100*time.Millisecond, fmt.Sprintf("%d delivered runs of flow quotes", n), func() (bool, any) {
			runs = listRuns(s, c, url.Values{"flow": {"quotes"}})
			done := 0
			for _, r := range runs {
				if r.Status == "delivered" {
					done++
				}
			}
			return len(runs) >= n && done == len(runs), runs
		})
		if len(runs) != n {
			s.fatalf("flow quotes has %d runs, want %d: %+v", len(runs), n, runs)
		}
		out := map[int64]api.RunView{}
		for _, r := range runs {
			if _, dup := out[r.MessageID]; dup {
				s.fatalf("message %d started flow quotes twice: %+v", r.MessageID, runs)
			}
			out[r.MessageID] = r
		}
		return out
	}
	// checkLastDelivery checks the delivery of run r.
	checkLastDelivery := func(r api.RunView, imap string) {
		t.Helper()
		for _, dl := range hooks.on("/quotes") {
			if dl.id == r.ID {
				if err := checkDelivery(dl, "quotes", imap); err != nil {
					t.Errorf("delivery of run %s: %v", r.ID, err)
				}
				return
			}
		}
		t.Errorf("run %s was not delivered to the listener", r.ID)
	}

	appendOrFail(s, conn, mailMessage("rename-1@e2e.example.org", addr, "Quote request", "Before the rename."))
	before := delivered(1)
	for _, r := range before {
		if r.IMAP != "sales_inbox" {
			t.Errorf("run before the rename: imap %q, want sales_inbox", r.IMAP)
		}
		checkLastDelivery(r, "sales_inbox")
	}

	// Rename: the whole configuration again under the new name, the
	// password left out (kept).
	v, err := c.GetIMAP(ctx, "sales_inbox")
	if err != nil {
		s.fatalf("reading sales_inbox: %v", err)
	}
	newName := "sales_renamed"
	in := imapconf.Input{Name: &newName, ServerType: &v.ServerType, Type: &v.Type, Description: &v.Description,
		Enabled: &v.Enabled, Host: &v.Host, Port: &v.Port, Username: &v.Username, Folder: &v.Folder, TLS: &v.TLS,
		CACert: &v.CACert, AfterProcessing: &v.AfterProcessing, PollInterval: &v.PollInterval, Backlog: &v.Backlog}
	renamed, err := c.EditIMAP(ctx, "sales_inbox", in)
	if err != nil {
		s.fatalf("renaming sales_inbox to %s: %v", newName, err)
	}
	if renamed.Name != newName || !renamed.HasPassword {
		t.Errorf("renamed configuration: name %q, hasPassword %v; want %s, true", renamed.Name, renamed.HasPassword, newName)
	}
	var fv api.FlowView
	if err := c.Do(ctx, http.MethodGet, "/api/v1/flows/quotes", nil, &fv); err != nil {
		s.fatalf("reading flow quotes: %v", err)
	}
	if fv.Start.EmailTrigger.IMAP != newName {
		t.Errorf("flow quotes after the rename: trigger imap %q, want %s", fv.Start.EmailTrigger.IMAP, newName)
	}
	var ae *client.Error
	if _, err := c.GetIMAP(ctx, "sales_inbox"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("reading the old name sales_inbox: %v, want 404", err)
	}
	waitState(s, c, newName, imapconf.StateIdle, 15*time.Second)

	// New mail still starts the flow, under the new name; the message read
	// before does not start it again.
	appendOrFail(s, conn, mailMessage("rename-2@e2e.example.org", addr, "Quote request", "After the rename."))
	appendOrFail(s, conn, mailMessage("rename-3@e2e.example.org", addr, "Something else", "Not a quote."))
	after := delivered(2)
	var second api.RunView
	for id, r := range after {
		if _, old := before[id]; !old {
			second = r
		}
	}
	if second.ID == "" {
		s.fatalf("no run for the message after the rename: %+v", after)
	}
	if second.IMAP != newName {
		t.Errorf("run after the rename: imap %q, want %s", second.IMAP, newName)
	}
	checkLastDelivery(second, newName)
	poll(s, 15*time.Second, 100*time.Millisecond, "3 messages recorded", func() (bool, any) {
		n := len(listMessages(s, c, ""))
		return n >= 3, n
	})
	msgs := listMessages(s, c, "")
	if len(msgs) != 3 {
		t.Errorf("%d messages recorded, want 3 (the rename must not read the folder again)", len(msgs))
	}

	// Delete while the flow names it: 409 listing the flow, nothing changed.
	err = c.DeleteIMAP(ctx, newName)
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !slices.Equal(ae.Flows, []string{"quotes"}) {
		s.fatalf("deleting %s while flow quotes names it: %v (flows %v), want 409 listing quotes", newName, err, flowsOf(err))
	}
	if _, err := c.GetIMAP(ctx, newName); err != nil {
		t.Errorf("reading %s after the refused delete: %v", newName, err)
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1/flows/quotes", nil, &fv); err != nil || fv.Start.EmailTrigger.IMAP != newName {
		t.Errorf("flow quotes after the refused delete: %v, trigger imap %q", err, fv.Start.EmailTrigger.IMAP)
	}
	appendOrFail(s, conn, mailMessage("rename-4@e2e.example.org", addr, "Quote request", "After the refused delete."))
	delivered(3)

	// Without the flow the configuration goes; the history stays.
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/flows/quotes", nil, nil); err != nil {
		s.fatalf("deleting flow quotes: %v", err)
	}
	if err := c.DeleteIMAP(ctx, newName); err != nil {
		s.fatalf("deleting %s without flows: %v", newName, err)
	}
	for _, r := range after {
		if got := getRun(s, c, r.ID); got.Status != "delivered" {
			t.Errorf("run %s after the deletes: %s, want delivered", r.ID, got.Status)
		}
	}
	if n := len(listMessages(s, c, "")); n != 4 {
		t.Errorf("%d messages listed after the deletes, want 4", n)
	}
	if inc, unk := hooks.counts(); inc != 0 || unk != 0 {
		t.Errorf("the listener got %d incomplete requests and %d on unknown paths, want none", inc, unk)
	}
	if n := len(hooks.on("/quotes")); n != 3 {
		t.Errorf("the listener got %d deliveries, want 3", n)
	}
	s.stop()
}

// flowsOf returns the flows an API error lists.
func flowsOf(err error) []string {
	var ae *client.Error
	if errors.As(err, &ae) {
		return ae.Flows
	}
	return nil
}
