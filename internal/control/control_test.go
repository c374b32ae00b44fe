package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"mailtrigger/internal/control"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/valid"
)

func p[T any](v T) *T { return &v }

func imapInput(name string) imapconf.Input {
	return imapconf.Input{Name: p(name), Host: p("imap.example.com"), Port: p(993),
		Username: p("support@example.com"), Password: p("Secret-" + name)}
}

func flowInput(name, imap string) flow.Input {
	return flow.Input{Name: p(name), Enabled: p(true),
		Start:      &flow.StartInput{EmailTrigger: &flow.TriggerInput{IMAP: p(imap), Subject: p("Invoice")}},
		Activities: []flow.ActivityInput{{Type: p("webhook"), URL: p("https://hooks.example.com/invoices")}}}
}

// env is a store holding the configuration "support" (with the flow
// "invoices" on it) and "spare", and a control plane over it whose runtime
// and log start empty.
type env struct {
	st   *store.Store
	rt   *controlfake.Runtime
	logs *testenv.Buffer
	ch   *control.Changes
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, store.SQLite)
	setup := control.New(st, nil, nil)
	for _, name := range []string{"support", "spare"} {
		if _, err := setup.CreateIMAP(ctx, "", imapInput(name), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := setup.CreateFlow(ctx, "", flowInput("invoices", "support"), nil); err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rt: &controlfake.Runtime{}, logs: &testenv.Buffer{}}
	e.ch = control.New(st, slog.New(slog.NewTextHandler(e.logs, nil)), e.rt)
	return e
}

// snapshot is every configuration and flow as stored.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	cs, err := e.st.ListIMAP(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := e.st.ListFlows(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal([]any{cs, fs})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (e *env) imap(t *testing.T, name string) imapconf.Config {
	t.Helper()
	c, err := e.st.GetIMAP(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) flow(t *testing.T, name string) (store.FlowRecord, flow.Flow) {
	t.Helper()
	fr, err := e.st.GetFlow(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := flow.Open(fr)
	if err != nil {
		t.Fatal(err)
	}
	return fr, f
}

// TestRejectedChangeStoresAndAnnouncesNothing: a change that is refused
// (invalid input, a finding of the caller's, a taken name, a configuration
// in use, one that does not exist) leaves the store as it was, tells
// neither the watchers nor the run worker, and logs nothing.
func TestRejectedChangeStoresAndAnnouncesNothing(t *testing.T) {
	cases := []struct {
		name   string
		change func(ctx context.Context, t *testing.T, e *env) error
		check  func(err error) bool
	}{
		{"create without host", func(ctx context.Context, t *testing.T, e *env) error {
			in := imapInput("new_one")
			in.Host = p("")
			_, err := e.ch.CreateIMAP(ctx, "admin", in, nil)
			return err
		}, func(err error) bool { var ve valid.Errors; return errors.As(err, &ve) && ve["host"] != "" }},
		{"create with a finding of the caller's", func(ctx context.Context, t *testing.T, e *env) error {
			in := imapInput("new_one")
			in.Port = nil
			_, err := e.ch.CreateIMAP(ctx, "admin", in, valid.Errors{"port": "must be a whole number"})
			return err
		}, func(err error) bool {
			var ve valid.Errors
			return errors.As(err, &ve) && len(ve) == 1 && ve["port"] == "must be a whole number"
		}},
		{"create with a taken name", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.CreateIMAP(ctx, "admin", imapInput("SUPPORT"), nil)
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrConflict) }},
		{"edit to a taken name", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.EditIMAP(ctx, "admin", e.imap(t, "spare"), imapInput("support"), nil)
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrConflict) }},
		{"edit to a new host without the password", func(ctx context.Context, t *testing.T, e *env) error {
			in := imapInput("spare")
			in.Host, in.Password = p("evil.example.net"), nil
			_, err := e.ch.EditIMAP(ctx, "admin", e.imap(t, "spare"), in, nil)
			return err
		}, func(err error) bool { var ve valid.Errors; return errors.As(err, &ve) && ve["password"] != "" }},
		{"duplicate to a bad name", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.DuplicateIMAP(ctx, "admin", e.imap(t, "spare"), imapconf.DuplicateInput{Name: p("no spaces")})
			return err
		}, func(err error) bool { var ve valid.Errors; return errors.As(err, &ve) && ve["name"] != "" }},
		{"delete one in use", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.DeleteIMAP(ctx, "admin", "support")
		}, func(err error) bool { var iu *store.InUseError; return errors.As(err, &iu) }},
		{"delete one that does not exist", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.DeleteIMAP(ctx, "admin", "nothing")
		}, func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"flow on a configuration that does not exist", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.CreateFlow(ctx, "admin", flowInput("orders", "nothing"), nil)
			return err
		}, func(err error) bool {
			var ve valid.Errors
			return errors.As(err, &ve) && ve["start.emailTrigger.imap"] == "no IMAP configuration named nothing"
		}},
		{"flow with a finding of the caller's", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.CreateFlow(ctx, "admin", flowInput("orders", "support"), valid.Errors{"act-0-headers": "one header per line"})
			return err
		}, func(err error) bool { var ve valid.Errors; return errors.As(err, &ve) && ve["act-0-headers"] != "" }},
		{"flow with a taken name", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.CreateFlow(ctx, "admin", flowInput("Invoices", "support"), nil)
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrConflict) }},
		{"flow edited without a url", func(ctx context.Context, t *testing.T, e *env) error {
			old, prev := e.flow(t, "invoices")
			in := flowInput("invoices", "support")
			in.Activities[0].URL = p("")
			_, err := e.ch.EditFlow(ctx, "admin", old, &prev, in, nil)
			return err
		}, func(err error) bool { var ve valid.Errors; return errors.As(err, &ve) && ve["activities[0].url"] != "" }},
		{"retry a run that does not exist", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.RetryRun(ctx, "admin", "r_nothing")
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"re-trigger a message that does not exist", func(ctx context.Context, t *testing.T, e *env) error {
			_, _, err := e.ch.Retrigger(ctx, "admin", 4711, true)
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.snapshot(t)
			err := tc.change(context.Background(), t, e)
			if err == nil || !tc.check(err) {
				t.Fatalf("got error %v, want the change refused", err)
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("a refused change was stored:\nbefore %s\nafter  %s", before, after)
			}
			if changed, notified := e.rt.Counts(); changed != 0 || notified != 0 {
				t.Errorf("a refused change was announced: got %d to the watchers and %d to the worker, want none", changed, notified)
			}
			if logs := e.logs.String(); logs != "" {
				t.Errorf("a refused change was logged: %s", logs)
			}
		})
	}
}

// TestAcceptedChangeIsAnnouncedOnce: a change that is made is stored,
// logged once (with the user who made it) and announced once: to the
// watchers for an IMAP configuration, to nobody for a flow (the watchers
// read flows with every batch). A switch to what is already so is logged
// and announced to nobody.
func TestAcceptedChangeIsAnnouncedOnce(t *testing.T) {
	cases := []struct {
		name    string
		change  func(ctx context.Context, t *testing.T, e *env) error
		log     string
		changed int
		stored  func(t *testing.T, e *env) bool
	}{
		{"create", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.CreateIMAP(ctx, "admin", imapInput("new_one"), nil)
			return err
		}, "imap configuration created", 1, func(t *testing.T, e *env) bool { return e.imap(t, "new_one").Host == "imap.example.com" }},
		{"edit", func(ctx context.Context, t *testing.T, e *env) error {
			in := imapInput("spare")
			in.Description = p("the spare one")
			_, err := e.ch.EditIMAP(ctx, "admin", e.imap(t, "spare"), in, nil)
			return err
		}, "imap configuration edited", 1, func(t *testing.T, e *env) bool { return e.imap(t, "spare").Description == "the spare one" }},
		{"rename", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.EditIMAP(ctx, "admin", e.imap(t, "spare"), imapInput("reserve"), nil)
			return err
		}, "imap configuration renamed", 1, func(t *testing.T, e *env) bool { return e.imap(t, "reserve").Name == "reserve" }},
		{"duplicate", func(ctx context.Context, t *testing.T, e *env) error {
			_, err := e.ch.DuplicateIMAP(ctx, "admin", e.imap(t, "spare"), imapconf.DuplicateInput{Name: p("spare_two"), Password: p("Secret-two")})
			return err
		}, "imap configuration duplicated", 1, func(t *testing.T, e *env) bool { return !e.imap(t, "spare_two").Enabled }},
		{"disable", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.SetIMAPEnabled(ctx, "admin", e.imap(t, "spare"), false)
		}, "imap configuration disabled", 1, func(t *testing.T, e *env) bool { return !e.imap(t, "spare").Enabled }},
		{"enable one enabled already", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.SetIMAPEnabled(ctx, "admin", e.imap(t, "spare"), true)
		}, "imap configuration enabled", 0, func(t *testing.T, e *env) bool { return e.imap(t, "spare").Enabled }},
		{"delete", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.DeleteIMAP(ctx, "admin", "spare")
		}, "imap configuration deleted", 1, func(t *testing.T, e *env) bool {
			_, err := e.st.GetIMAP(context.Background(), "spare")
			return errors.Is(err, store.ErrNotFound)
		}},
		{"create flow", func(ctx context.Context, t *testing.T, e *env) error {
			s, err := e.ch.CreateFlow(ctx, "admin", flowInput("orders", "SUPPORT"), nil)
			if err == nil && (s.Record.IMAPName != "support" || len(s.Generated) != 1) {
				t.Errorf("got trigger %q and generated %v, want support and one secret", s.Record.IMAPName, s.Generated)
			}
			return err
		}, "flow created", 0, func(t *testing.T, e *env) bool { fr, _ := e.flow(t, "orders"); return fr.IMAPName == "support" }},
		{"edit flow", func(ctx context.Context, t *testing.T, e *env) error {
			old, prev := e.flow(t, "invoices")
			in := flowInput("invoices", "spare")
			s, err := e.ch.EditFlow(ctx, "admin", old, &prev, in, nil)
			if err == nil && (!s.Record.CreatedAt.Equal(old.CreatedAt) || len(s.Generated) != 0) {
				t.Errorf("got created %v and generated %v, want %v and none (the secret kept)", s.Record.CreatedAt, s.Generated, old.CreatedAt)
			}
			return err
		}, "flow edited", 0, func(t *testing.T, e *env) bool { fr, _ := e.flow(t, "invoices"); return fr.IMAPName == "spare" }},
		{"delete flow", func(ctx context.Context, t *testing.T, e *env) error {
			return e.ch.DeleteFlow(ctx, "admin", "invoices")
		}, "flow deleted", 0, func(t *testing.T, e *env) bool {
			_, err := e.st.GetFlow(context.Background(), "invoices")
			return errors.Is(err, store.ErrNotFound)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if err := tc.change(context.Background(), t, e); err != nil {
				t.Fatal(err)
			}
			if !tc.stored(t, e) {
				t.Errorf("the change was not stored: %s", e.snapshot(t))
			}
			if changed, notified := e.rt.Counts(); changed != tc.changed || notified != 0 {
				t.Errorf("got %d announcements to the watchers and %d to the worker, want %d and 0", changed, notified, tc.changed)
			}
			logs := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
			if len(logs) != 1 || !strings.Contains(logs[0], `msg="`+tc.log+`"`) || !strings.Contains(logs[0], "user=admin") {
				t.Errorf("got log %q, want one line %q with user=admin", logs, tc.log)
			}
		})
	}
}
