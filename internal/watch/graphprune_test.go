package watch_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/graphsource"
	"mailtrigger/internal/source/graphsource/graphfake"
)

// graphDelete deletes message id of user through Graph, as a user would.
func graphDelete(t *testing.T, e *graphEnv, user, id string) {
	t.Helper()
	cfg := imapconf.Config{Type: imapconf.TypeMSGraph, Username: user, TenantID: graphfake.TenantID, ClientID: graphfake.ClientID,
		ClientSecret: graphfake.ClientSecret, GraphURL: e.g.URL, AuthorityURL: e.g.URL, CACert: e.g.CACert}
	c, err := graphsource.New(cfg, graphsource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(context.Background(), imapconf.AfterDelete, "", []string{id}); err != nil {
		t.Fatal(fmt.Errorf("deleting %s: %w", id, err))
	}
}

// rememberedIDs returns the Graph ids name remembers, sorted.
func (e *graphEnv) rememberedIDs(name string) []string {
	e.t.Helper()
	c, err := e.st.GetIMAP(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := e.st.SeenIDs(context.Background(), c.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// inboxIDs returns the ids of user's inbox in the fake, sorted.
func (e *graphEnv) inboxIDs(user string) []string {
	var out []string
	for _, m := range e.g.Messages(user, "inbox") {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// TestGraphForgetsRemovedIDs: the Graph ids remembered to keep messages
// from being recorded twice stay bounded by the folder: the ids of messages
// deleted by a user, or moved or deleted by afterProcessing, are forgotten
// once the delta reports their removal; those removed while the delta token
// had expired (the resync reports no removals) are forgotten after the
// resync, which lists the whole folder. Nothing is recorded twice.
func TestGraphForgetsRemovedIDs(t *testing.T) {
	e := newGraphEnv(t)
	keep, del := "gprune@contoso.com", "gprunedel@contoso.com"
	e.g.AddUser(keep)
	e.g.AddUser(del)
	e.g.SetPageSize(2)
	e.add(keep, "p1", "p2", "p3", "p4")
	e.add(del, "d1", "d2")
	start := time.Now()
	e.config("gprune", keep, func(in *imapconf.Input) { in.Backlog = ptr(imapconf.BacklogAll) })
	e.config("gprunedel", del, func(in *imapconf.Input) {
		in.Backlog, in.AfterProcessing = ptr(imapconf.BacklogAll), ptr(imapconf.AfterDelete)
	})
	e.waitPoll("gprune", start)
	e.waitPoll("gprunedel", start)
	e.want("gprune", "p1", "p2", "p3", "p4")
	e.want("gprunedel", "d1", "d2")
	if got, want := e.rememberedIDs("gprune"), e.inboxIDs(keep); !slices.Equal(got, want) || len(got) != 4 {
		t.Fatalf("gprune: remembers %v, want the inbox %v", got, want)
	}

	// A user deletes p1: the next round reports it removed.
	ids := e.inboxIDs(keep)
	graphDelete(t, e, keep, ids[0])
	now := time.Now()
	e.waitPoll("gprune", now)
	if got, want := e.rememberedIDs("gprune"), e.inboxIDs(keep); !slices.Equal(got, want) || len(got) != 3 {
		t.Errorf("gprune after a deletion: remembers %v, want the inbox %v", got, want)
	}
	// The messages afterProcessing deleted are forgotten after the round
	// that follows.
	e.waitPoll("gprunedel", now)
	if got := e.rememberedIDs("gprunedel"); len(got) != 0 || len(e.inboxIDs(del)) != 0 {
		t.Errorf("gprunedel: remembers %v with inbox %v, want nothing", got, e.inboxIDs(del))
	}

	// Two more deletions while the delta token expires: the resync lists
	// the folder, which no longer has them.
	ids = e.inboxIDs(keep)
	e.g.ExpireDeltaTokens()
	graphDelete(t, e, keep, ids[0])
	graphDelete(t, e, keep, ids[1])
	e.add(keep, "p5")
	now = time.Now()
	e.waitPoll("gprune", now)
	e.waitPoll("gprune", time.Now())
	if got, want := e.rememberedIDs("gprune"), e.inboxIDs(keep); !slices.Equal(got, want) || len(got) != 2 {
		t.Errorf("gprune after the resync: remembers %v, want the inbox %v", got, want)
	}
	e.want("gprune", "p1", "p2", "p3", "p4", "p5")
	e.want("gprunedel", "d1", "d2")
}
