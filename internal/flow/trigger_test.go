package flow_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func p[T any](v T) *T { return &v }

func addFlow(t *testing.T, st *store.Store, imapID int64, name, subject, match string, enabled bool) {
	t.Helper()
	f, _, err := flow.Build(flow.Input{Name: p(name), Enabled: p(enabled),
		Start:      &flow.StartInput{EmailTrigger: &flow.TriggerInput{IMAP: p("inbox"), Subject: p(subject), Match: p(match)}},
		Activities: []flow.ActivityInput{{URL: p("http://127.0.0.1:9/hook")}}}, nil, flow.NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateFlow(context.Background(), &store.FlowRecord{Name: name, IMAPID: imapID, Enabled: enabled,
		Definition: f.Definition(), Secrets: f.Secrets()}); err != nil {
		t.Fatal(err)
	}
}

// addInbox stores the IMAP configuration "inbox" that the hook tests match
// against.
func addInbox(t *testing.T, st *store.Store) imapconf.Config {
	t.Helper()
	c := imapconf.Config{Name: "inbox", ServerType: "imaps", Type: "generic", Host: "h", Port: 993, Username: "a@b.example",
		Password: "x", Folder: "INBOX", TLS: "implicit", AfterProcessing: "none", PollInterval: 60, Backlog: "new", Auth: "password"}
	if err := st.CreateIMAP(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHookCreatesOneRunPerMatchingFlow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		c := addInbox(t, st)
		addFlow(t, st, c.ID, "exact_invoice", "Invoice", "exact", true)
		addFlow(t, st, c.ID, "orders", `^Order #\d+`, "regex", true)
		addFlow(t, st, c.ID, "any_invoice", "invoice", "contains", true)
		addFlow(t, st, c.ID, "disabled", "Invoice", "exact", false)

		var batch []store.Incoming
		for i, subj := range []string{"Invoice", "=?UTF-8?Q?INVOICE?=", "Order #12", "Re: Invoice", "Hello"} {
			raw := fmt.Sprintf("From: x@example.org\r\nSubject: %s\r\nMessage-ID: <m%d@x>\r\n\r\nbody\r\n", subj, i)
			batch = append(batch, store.Incoming{UID: uint32(i + 1), Raw: []byte(raw), Msg: mail.Parse([]byte(raw))})
		}
		b := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: 5}, Messages: batch}
		rec, _, err := st.RecordBatch(ctx, b, flow.Hook(st))
		if err != nil {
			t.Fatal(err)
		}
		runs, err := st.ListRuns(ctx, store.RunFilter{}, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, r := range runs {
			got[r.FlowName]++
		}
		// Invoice: exact + contains; INVOICE: exact + contains; Order: regex;
		// Re: Invoice: contains only (reply prefixes are not ignored here).
		want := map[string]int{"exact_invoice": 2, "any_invoice": 3, "orders": 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got runs %v, want %v", got, want)
		}
		ms, err := st.Matches(ctx, rec[4].ID)
		if err != nil || len(ms) != 4 {
			t.Fatalf("got %v, %v", ms, err)
		}
		for _, m := range ms {
			if m.Matched || m.Reason == "" {
				t.Errorf("Hello: got %+v, want a reason", m)
			}
		}
		ms, _ = st.Matches(ctx, rec[0].ID)
		for _, m := range ms {
			if m.FlowName == "disabled" && (!m.Matched || !strings.Contains(m.Reason, "flow disabled")) {
				t.Errorf("got %+v, want matched but disabled", m)
			}
		}

		// Re-trigger: nothing new without force, one more run with it.
		created, _, err := flow.Retrigger(ctx, st, rec[2].ID, false)
		if err != nil || len(created) != 0 {
			t.Errorf("re-trigger: got %v, %v", created, err)
		}
		created, _, err = flow.Retrigger(ctx, st, rec[2].ID, true)
		if err != nil || len(created) != 1 || created[0].Seq != 1 {
			t.Errorf("forced re-trigger: got %+v, %v", created, err)
		}
		// A flow added later starts for an old message on re-trigger.
		addFlow(t, st, c.ID, "hello", "hello", "exact", true)
		created, _, err = flow.Retrigger(ctx, st, rec[4].ID, false)
		if err != nil || len(created) != 1 || created[0].FlowName != "hello" {
			t.Errorf("re-trigger after adding a flow: got %+v, %v", created, err)
		}
	})
}

// TestHookUsesAnEditedFlowAtOnce: the hook keeps triggers compiled between
// batches, and a flow edited between two batches matches by its new
// trigger in the next.
func TestHookUsesAnEditedFlowAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		c := addInbox(t, st)
		addFlow(t, st, c.ID, "orders", `^Order #\d+`, "regex", true)
		hook := flow.Hook(st)
		uid := uint32(0)
		batch := func(subject string) []string {
			t.Helper()
			uid++
			raw := fmt.Sprintf("From: x@example.org\r\nSubject: %s\r\nMessage-ID: <e%d@x>\r\n\r\nbody\r\n", subject, uid)
			b := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid},
				Messages: []store.Incoming{{UID: uid, Raw: []byte(raw), Msg: mail.Parse([]byte(raw))}}}
			rec, _, err := st.RecordBatch(ctx, b, hook)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := st.Matches(ctx, rec[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, m := range ms {
				out = append(out, fmt.Sprintf("%s %v", m.FlowName, m.Matched))
			}
			return out
		}
		if got := fmt.Sprint(batch("Order #1")); got != "[orders true]" {
			t.Fatalf("got %s", got)
		}
		fr, err := st.GetFlow(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		f, err := flow.Open(fr)
		if err != nil {
			t.Fatal(err)
		}
		f.Start.EmailTrigger.Subject = `^Ticket \d+`
		fr.Definition = f.Definition()
		if err := st.UpdateFlow(ctx, &fr); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(batch("Order #2")); got != "[orders false]" {
			t.Errorf("after the edit: got %s, want the old trigger gone", got)
		}
		if got := fmt.Sprint(batch("Ticket 3")); got != "[orders true]" {
			t.Errorf("after the edit: got %s, want the new trigger", got)
		}
	})
}
