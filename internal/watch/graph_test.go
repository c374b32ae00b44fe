package watch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/client"
	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/server"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// graphEnv is a store, a watch manager that can be restarted, an API on
// them and a fake Microsoft Graph.
type graphEnv struct {
	t    *testing.T
	st   *store.Store
	g    *graphfake.Server
	api  *client.Client
	log  *slog.Logger
	mu   sync.Mutex
	mgr  *watch.Manager
	stop func()
}

func newGraphEnv(t *testing.T) *graphEnv {
	t.Helper()
	e := &graphEnv{t: t, st: storetest.Open(t, store.SQLite), g: graphfake.New(t)}
	if testing.Verbose() {
		e.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.start()
	t.Cleanup(func() { e.stop() })
	srv := httptest.NewServer(server.Handler(server.Deps{Store: e.st, Logger: e.log,
		Runtime: &controlfake.Runtime{
			OnChanged: func(ctx context.Context) { e.manager().Changed(ctx) },
			StatusOf:  func(c imapconf.Config) *imapconf.Status { return e.manager().Status(c) },
			TestWith: func(ctx context.Context, c imapconf.Config) any {
				return watch.TestConnection(ctx, c, e.log)
			}}}))
	t.Cleanup(srv.Close)
	tok, hash := auth.NewToken()
	if err := e.st.CreateToken(context.Background(), "t", hash); err != nil {
		t.Fatal(err)
	}
	e.api = &client.Client{BaseURL: srv.URL, Token: tok}
	return e
}

func (e *graphEnv) manager() *watch.Manager {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mgr
}

// start starts a new manager on the store.
func (e *graphEnv) start() {
	mgr := watch.New(watch.Deps{Store: e.st, Ingester: ingest.New(ingest.Deps{Store: e.st, Logger: e.log}), Logger: e.log,
		Options: watch.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ResyncEvery: 200 * time.Millisecond,
			AuthBackoff: time.Hour, BatchMessages: 3}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(ctx) })
	e.mu.Lock()
	e.mgr = mgr
	e.stop = func() { cancel(); wg.Wait() }
	e.mu.Unlock()
}

func (e *graphEnv) config(name, user string, mod func(in *imapconf.Input)) {
	e.t.Helper()
	in := imapconf.Input{Name: ptr(name), Type: ptr(imapconf.TypeMSGraph), Username: ptr(user),
		TenantID: ptr(graphfake.TenantID), ClientID: ptr(graphfake.ClientID), ClientSecret: ptr(graphfake.ClientSecret),
		GraphURL: ptr(e.g.URL), AuthorityURL: ptr(e.g.URL), CACert: ptr(e.g.CACert),
		PollInterval: ptr(imapconf.MinPollInterval)}
	if mod != nil {
		mod(&in)
	}
	if _, err := e.api.CreateIMAP(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
}

// waitPoll waits until name finished a poll that started after since.
func (e *graphEnv) waitPoll(name string, since time.Time) {
	e.t.Helper()
	var last *imapconf.Status
	testwait.Until(e.t, 15*time.Second, func() error {
		v, err := e.api.GetIMAP(context.Background(), name)
		if err == nil && v.Status != nil {
			last = v.Status
			if v.Status.LastSuccessAt != nil && v.Status.LastSuccessAt.After(since) && v.Status.State == imapconf.StatePolling {
				return nil
			}
		}
		return fmt.Errorf("%s did not poll again (status %+v)", name, last)
	})
}

// subjects returns the subjects recorded for name, checking none twice.
func (e *graphEnv) subjects(name string) map[string]bool {
	e.t.Helper()
	l, err := e.api.ListMessages(context.Background(), name, 500, "")
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range l.Items {
		if out[m.Subject] {
			e.t.Errorf("%s: %q recorded twice", name, m.Subject)
		}
		out[m.Subject] = true
	}
	return out
}

func (e *graphEnv) want(name string, subjects ...string) {
	e.t.Helper()
	got := e.subjects(name)
	if len(got) != len(subjects) {
		e.t.Errorf("%s: recorded %v, want %v", name, got, subjects)
		return
	}
	for _, s := range subjects {
		if !got[s] {
			e.t.Errorf("%s: recorded %v, want %v", name, got, subjects)
			return
		}
	}
}

func (e *graphEnv) add(user string, subjects ...string) {
	for _, s := range subjects {
		e.g.AddMessage(user, fixedMessage(s+"@x", s))
	}
}

// TestGraph reads Microsoft Graph mailboxes from the fake: backlog new vs
// all vs unseen, new mail recorded once, afterProcessing seen, move and
// delete done in the fake, a 410 resync, a 429 with Retry-After, tokens
// expiring mid-run, and a restart of the manager on the same store.
func TestGraph(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	users := map[string]string{}
	for _, n := range []string{"gnew", "gall", "gunseen", "gseen", "gmove", "gdelete"} {
		users[n] = n + "@contoso.com"
		e.g.AddUser(users[n], "Processed")
	}
	e.g.SetPageSize(2) // several pages and batches per round
	e.add(users["gnew"], "new-old1", "new-old2")
	e.add(users["gall"], "all-old1", "all-old2", "all-old3", "all-old4", "all-old5")
	e.add(users["gunseen"], "unseen-old1", "unseen-old2")
	e.add(users["gseen"], "seen-old1")
	e.add(users["gmove"], "move-old1")
	e.add(users["gdelete"], "delete-old1")
	// unseen-old2 was read already.
	for _, m := range e.g.Messages(users["gunseen"], "inbox") {
		if m.Raw != nil && string(m.Raw) == string(fixedMessage("unseen-old2@x", "unseen-old2")) {
			markRead(t, e, users["gunseen"], m.ID)
		}
	}

	start := time.Now()
	e.config("gnew", users["gnew"], nil)
	e.config("gall", users["gall"], func(in *imapconf.Input) { in.Backlog = ptr(imapconf.BacklogAll) })
	e.config("gunseen", users["gunseen"], func(in *imapconf.Input) { in.Backlog = ptr(imapconf.BacklogUnseen) })
	e.config("gseen", users["gseen"], func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing = ptr(imapconf.BacklogAll), ptr(imapconf.AfterSeen)
	})
	e.config("gmove", users["gmove"], func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing, in.MoveTo = ptr(imapconf.BacklogAll), ptr(imapconf.AfterMove), ptr("Processed")
	})
	e.config("gdelete", users["gdelete"], func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing = ptr(imapconf.BacklogAll), ptr(imapconf.AfterDelete)
	})
	for n := range users {
		e.waitPoll(n, start)
	}
	e.want("gnew")
	e.want("gall", "all-old1", "all-old2", "all-old3", "all-old4", "all-old5")
	e.want("gunseen", "unseen-old1")
	e.want("gseen", "seen-old1")
	e.want("gmove", "move-old1")
	e.want("gdelete", "delete-old1")
	checkFolder := func(user, folder string, n int, read bool) {
		t.Helper()
		ms := e.g.Messages(user, folder)
		if len(ms) != n {
			t.Errorf("%s %s: %d messages, want %d", user, folder, len(ms), n)
		}
		for _, m := range ms {
			if read && !m.IsRead {
				t.Errorf("%s %s: %s not read", user, folder, m.ID)
			}
		}
	}
	checkFolder(users["gseen"], "inbox", 1, true)
	checkFolder(users["gmove"], "inbox", 0, false)
	checkFolder(users["gmove"], "Processed", 1, false)
	checkFolder(users["gdelete"], "inbox", 0, false)
	checkFolder(users["gdelete"], "deleteditems", 1, false)

	// New mail, a changed old message (marked read) in the new-only
	// mailbox, a 429 with Retry-After, then tokens expiring: new mail is
	// recorded once.
	for _, m := range e.g.Messages(users["gnew"], "inbox") {
		markRead(t, e, users["gnew"], m.ID)
	}
	e.add(users["gnew"], "new-1")
	e.add(users["gall"], "all-1")
	e.add(users["gunseen"], "unseen-1")
	e.add(users["gseen"], "seen-1")
	e.add(users["gmove"], "move-1")
	e.add(users["gdelete"], "delete-1")
	e.g.Inject(graphfake.Fault{Method: "GET", PathContains: "/users/" + users["gall"] + "/", Status: 429, RetryAfter: "1"})
	start = time.Now()
	for n := range users {
		e.waitPoll(n, start)
	}
	var throttled bool
	for _, r := range e.g.Requests() {
		if r.Status == 429 {
			throttled = true
		}
	}
	if !throttled {
		t.Error("the 429 was not served")
	}
	e.want("gnew", "new-1")
	e.want("gall", "all-old1", "all-old2", "all-old3", "all-old4", "all-old5", "all-1")
	e.want("gunseen", "unseen-old1", "unseen-1")
	e.want("gseen", "seen-old1", "seen-1")
	e.want("gmove", "move-old1", "move-1")
	e.want("gdelete", "delete-old1", "delete-1")
	checkFolder(users["gseen"], "inbox", 2, true)
	checkFolder(users["gmove"], "inbox", 0, false)
	checkFolder(users["gmove"], "Processed", 2, false)
	checkFolder(users["gdelete"], "inbox", 0, false)
	checkFolder(users["gdelete"], "deleteditems", 2, false)

	// Tokens expire and the delta tokens are forgotten (410): the full
	// resync records nothing twice, and new mail still comes in.
	e.g.ExpireTokens()
	e.g.ExpireDeltaTokens()
	e.add(users["gall"], "all-2")
	e.add(users["gnew"], "new-2")
	start = time.Now()
	e.waitPoll("gall", start)
	e.waitPoll("gnew", start)
	e.want("gall", "all-old1", "all-old2", "all-old3", "all-old4", "all-old5", "all-1", "all-2")
	e.want("gnew", "new-1", "new-2")
	statuses := map[int]bool{}
	for _, r := range e.g.Requests() {
		statuses[r.Status] = true
	}
	if !statuses[410] || !statuses[401] {
		t.Errorf("the fake answered %v; want a 410 and a 401 among them", statuses)
	}

	// A restart of the manager on the same store: nothing recorded twice,
	// new mail recorded.
	e.stop()
	e.add(users["gall"], "all-3")
	e.add(users["gseen"], "seen-3")
	e.start()
	e.manager().Changed(ctx)
	start = time.Now()
	for n := range users {
		e.waitPoll(n, start)
	}
	e.want("gnew", "new-1", "new-2")
	e.want("gall", "all-old1", "all-old2", "all-old3", "all-old4", "all-old5", "all-1", "all-2", "all-3")
	e.want("gseen", "seen-old1", "seen-1", "seen-3")
	checkFolder(users["gseen"], "inbox", 3, true)

	// Test connection through the API.
	var res struct {
		OK       bool `json:"ok"`
		Messages int  `json:"messages"`
		Unread   int  `json:"unread"`
	}
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/gall/test", nil, &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Messages != 8 {
		t.Errorf("test connection: %+v", res)
	}
	var bad map[string]any
	in := imapconf.Input{Name: ptr("bad"), Type: ptr(imapconf.TypeMSGraph), Username: ptr(users["gall"]),
		TenantID: ptr(graphfake.TenantID), ClientID: ptr(graphfake.ClientID), ClientSecret: ptr("wrong"),
		GraphURL: ptr(e.g.URL), AuthorityURL: ptr(e.g.URL), CACert: ptr(e.g.CACert)}
	if err := e.api.Do(ctx, "POST", "/api/v1/imap/test", in, &bad); err != nil {
		t.Fatal(err)
	}
	if bad["ok"] != false || bad["step"] != "token" {
		b, _ := json.Marshal(bad)
		t.Errorf("test connection with a wrong secret: %s", b)
	}
}

// markRead marks a message read in the fake through its Graph API.
func markRead(t *testing.T, e *graphEnv, user, id string) {
	t.Helper()
	cfg := imapconf.Config{Type: imapconf.TypeMSGraph, Username: user, TenantID: graphfake.TenantID, ClientID: graphfake.ClientID,
		ClientSecret: graphfake.ClientSecret, GraphURL: e.g.URL, AuthorityURL: e.g.URL, CACert: e.g.CACert}
	c, err := graphsource.New(cfg, graphsource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(context.Background(), imapconf.AfterSeen, "", []string{id}); err != nil {
		t.Fatal(fmt.Errorf("marking %s read: %w", id, err))
	}
}

// TestGraphApplyRedone: when the after-processing fails after the commit
// (as a crash there would leave it), it is done on the next try and the
// message is not recorded twice.
func TestGraphApplyRedone(t *testing.T) {
	e := newGraphEnv(t)
	user := "gredo@contoso.com"
	e.g.AddUser(user, "Processed")
	e.add(user, "redo-1", "redo-2")
	e.g.Inject(graphfake.Fault{Method: "POST", PathContains: "/move", Status: 500, Code: "ErrorInternalServerError", Message: "boom"})
	start := time.Now()
	e.config("gredo", user, func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing, in.MoveTo = ptr(imapconf.BacklogAll), ptr(imapconf.AfterMove), ptr("Processed")
	})
	e.waitPoll("gredo", start)
	e.want("gredo", "redo-1", "redo-2")
	if n := len(e.g.Messages(user, "Processed")); n != 2 {
		t.Errorf("%d messages moved, want 2", n)
	}
	if n := len(e.g.Messages(user, "inbox")); n != 0 {
		t.Errorf("%d messages left in the inbox, want 0", n)
	}
	var failed bool
	for _, r := range e.g.Requests() {
		if r.Status == 500 {
			failed = true
		}
	}
	if !failed {
		t.Error("the fault was not served")
	}
}
