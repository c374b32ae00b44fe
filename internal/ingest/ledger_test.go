package ingest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestLedgerKinds: a Ledger maps the source-neutral checkpoint, seen ids and
// owed after-processing onto the store in its mailbox's kind: a POP3
// mailbox has not begun while its checkpoint is an IMAP one; a Graph batch
// keeps the stored cursor until the one that ends the round, and owes its
// after-processing by id; what is owed by id is listed for Graph only.
func TestLedgerKinds(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, store.SQLite)
	in := ingest.New(ingest.Deps{Store: st})
	create := func(name string, c imapconf.Config) *ingest.Ledger {
		t.Helper()
		c.Name, c.Enabled, c.Host, c.Folder, c.AfterProcessing, c.MoveTo = name, true, "x.invalid", "INBOX", imapconf.AfterMove, "Done"
		if err := st.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		return in.Ledger(c, ingest.Limits{BatchMessages: 10, BatchBytes: 1 << 20}, &progress{})
	}
	checkpoint := func(l *ingest.Ledger, want source.Checkpoint, wantOK bool) {
		t.Helper()
		if cp, ok, err := l.Checkpoint(ctx); err != nil || cp != want || ok != wantOK {
			t.Errorf("checkpoint: got %+v %v %v, want %+v %v", cp, ok, err, want, wantOK)
		}
	}
	record := func(l *ingest.Ledger, o source.PipelineOptions, cp *source.Checkpoint, msgs ...source.Message) {
		t.Helper()
		p, err := l.Pipeline(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for _, m := range msgs {
			m.Raw = fmt.Appendf(nil, "Subject: %s%d\r\nMessage-ID: <%s%d@x>\r\n\r\nbody\r\n", m.ID, m.UID, m.ID, m.UID)
			m.Size = int64(len(m.Raw))
			if err := p.Add(m); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(cp); err != nil {
			t.Fatal(err)
		}
	}
	owed := func(l *ingest.Ledger) []source.Owed {
		t.Helper()
		o, err := l.Owed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	pop := create("pop", imapconf.Config{ServerType: imapconf.ServerPOP3S, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword})
	popID := func() int64 { c, _ := st.GetIMAP(ctx, "pop"); return c.ID }()
	if err := st.SetCheckpoint(ctx, popID, store.Checkpoint{Kind: store.KindIMAP, Epoch: 3, Last: 9}, nil); err != nil {
		t.Fatal(err)
	}
	checkpoint(pop, source.Checkpoint{}, false)
	if err := pop.Begin(ctx, source.Checkpoint{}, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	checkpoint(pop, source.Checkpoint{}, true)
	record(pop, source.PipelineOptions{}, nil, source.Message{ID: "u1"}, source.Message{ID: "u2"})
	if ids, err := pop.Known(ctx); err != nil || !slices.Equal(slices.Sorted(maps.Keys(ids)), []string{"u1", "u2"}) {
		t.Errorf("pop3 ids: got %v, %v", ids, err)
	}
	if o := owed(pop); len(o) != 0 {
		t.Errorf("pop3 owes %+v, want nothing", o)
	}

	graph := create("graph", imapconf.Config{Type: imapconf.TypeMSGraph, Auth: imapconf.AuthOAuth2})
	checkpoint(graph, source.Checkpoint{}, false)
	if err := graph.Begin(ctx, source.Checkpoint{Cursor: "L1"}, []string{"old"}); err != nil {
		t.Fatal(err)
	}
	record(graph, source.PipelineOptions{}, nil, source.Message{ID: "a"}, source.Message{ID: "old"})
	checkpoint(graph, source.Checkpoint{Cursor: "L1"}, true)
	record(graph, source.PipelineOptions{}, &source.Checkpoint{Cursor: "L2"}, source.Message{ID: "b"})
	checkpoint(graph, source.Checkpoint{Cursor: "L2"}, true)
	want := []source.Owed{{UID: 1, ID: "a", Action: imapconf.AfterMove, MoveTo: "Done"}, {UID: 2, ID: "b", Action: imapconf.AfterMove, MoveTo: "Done"}}
	if o := owed(graph); !slices.Equal(o, want) {
		t.Errorf("graph owes %+v, want %+v", o, want)
	}
	if err := graph.Paid(ctx, 0, want[:1]); err != nil {
		t.Fatal(err)
	}
	if err := graph.Forget(ctx, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if o := owed(graph); len(o) != 0 {
		t.Errorf("graph owes %+v after paying a and forgetting b", o)
	}

	imap := create("imap", imapconf.Config{ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword})
	record(imap, source.PipelineOptions{Epoch: 5}, nil, source.Message{UID: 4})
	checkpoint(imap, source.Checkpoint{}, false)
	record(imap, source.PipelineOptions{Epoch: 5, Advance: true}, nil, source.Message{UID: 6})
	checkpoint(imap, source.Checkpoint{Epoch: 5, Last: 6}, true)
	want = []source.Owed{{Epoch: 5, UID: 4, Action: imapconf.AfterMove, MoveTo: "Done"}, {Epoch: 5, UID: 6, Action: imapconf.AfterMove, MoveTo: "Done"}}
	if o := owed(imap); !slices.Equal(o, want) {
		t.Errorf("imap owes %+v, want %+v", o, want)
	}
	if err := imap.ClearOwed(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if o := owed(imap); len(o) != 0 {
		t.Errorf("imap owes %+v after a UIDVALIDITY change", o)
	}
}
