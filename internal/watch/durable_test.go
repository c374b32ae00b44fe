package watch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source/graphsource/graphfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// durEnv is a SQLite store whose durability step (BeforeDestructive)
// reports to a hook, and a watch manager on it.
type durEnv struct {
	st     *store.Store
	mgr    *watch.Manager
	mu     sync.Mutex
	onSync func() error
}

func newDurEnv(t *testing.T, opts watch.Options) *durEnv {
	t.Helper()
	e := &durEnv{}
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir(), Box: storetest.Box(t),
		Synced: func() error {
			e.mu.Lock()
			f := e.onSync
			e.mu.Unlock()
			if f == nil {
				return nil
			}
			return f()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.MinBackoff, opts.MaxBackoff, opts.ResyncEvery = 100*time.Millisecond, 300*time.Millisecond, 100*time.Millisecond
	e.mgr = watch.New(watch.Deps{Store: st, Ingester: ingest.New(ingest.Deps{Store: st, Logger: log}), Logger: log, Options: opts})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.mgr.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

func (e *durEnv) setOnSync(f func() error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onSync = f
}

// add creates an enabled configuration reading address on d with backlog
// all and the after-processing given.
func (e *durEnv) add(t *testing.T, d *testenv.Dovecot, name, address, serverType, after, moveTo string) {
	t.Helper()
	port := d.IMAPSPort
	if serverType == imapconf.ServerPOP3S {
		port = d.POP3SPort
	}
	c := imapconf.Config{Name: name, ServerType: serverType, Type: imapconf.TypeGeneric, Enabled: true, Host: d.Host, Port: port,
		Username: address, Password: d.Password(t, address), CACert: string(d.CACertPEM), Folder: "INBOX", TLS: imapconf.TLSImplicit,
		AfterProcessing: after, MoveTo: moveTo, PollInterval: imapconf.MinPollInterval, Backlog: imapconf.BacklogAll,
		Auth: imapconf.AuthPassword}
	if err := e.st.CreateIMAP(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	e.mgr.Changed(context.Background())
}

// waitRecorded waits until name has n messages recorded.
func (e *durEnv) waitRecorded(t *testing.T, name string, n int) {
	t.Helper()
	testwait.Until(t, 30*time.Second, func() error {
		got, err := e.st.ListMessages(context.Background(), name, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			return fmt.Errorf("%s: %d messages recorded, want %d", name, len(got), n)
		}
		return nil
	})
}

// folderCounts returns how many messages each folder of address holds, and
// how many of them are \Seen, read on a connection of its own.
func folderCounts(d *testenv.Dovecot, address, password string, folders ...string) (total, seen []int, err error) {
	c, err := imapclient.DialTLS(d.Addr(d.IMAPSPort), &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if err := c.Login(address, password).Wait(); err != nil {
		return nil, nil, err
	}
	for _, f := range folders {
		st, err := c.Status(f, &imap.StatusOptions{NumMessages: true, NumUnseen: true}).Wait()
		if err != nil {
			return nil, nil, fmt.Errorf("status %s: %w", f, err)
		}
		total = append(total, int(*st.NumMessages))
		seen = append(seen, int(*st.NumMessages)-int(*st.NumUnseen))
	}
	return total, seen, nil
}

// waitFolder waits until folder of address holds n messages, of which
// seenN are \Seen (-1: any).
func waitFolder(t *testing.T, d *testenv.Dovecot, address, folder string, n, seenN int) {
	t.Helper()
	pw := d.Password(t, address)
	testwait.Until(t, 30*time.Second, func() error {
		total, seen, err := folderCounts(d, address, pw, folder)
		if err == nil && total[0] == n && (seenN < 0 || seen[0] == seenN) {
			return nil
		}
		return fmt.Errorf("%s %s: got %v messages, %v seen (%v), want %d, %d seen", address, folder, total, seen, err, n, seenN)
	})
}

// TestDurableBeforeDelete: on SQLite (synchronous=NORMAL), the commits that
// recorded messages are fsynced before the messages are deleted or moved
// on the server: IMAP delete and move, POP3 DELE (a sync for each batch).
// At each sync the server still holds every message (nothing was removed
// before it); when the sync fails, nothing is removed at all; a mailbox
// that only marks messages seen, or keeps them, never pays for a sync.
func TestDurableBeforeDelete(t *testing.T) {
	d := testenv.StartDovecot(t)
	const n = 5
	fill := func(t *testing.T, local string) (address, password string) {
		address = d.AddUser(t, local, "pw-"+local)
		for i := range n {
			d.Append(t, address, "INBOX", message(fmt.Sprintf("Invoice %d", i), "body"))
		}
		return address, "pw-" + local
	}

	for _, tt := range []struct {
		name, serverType, after, moveTo string
		batch                           int
		minSyncs                        int64
	}{
		{"imap delete", imapconf.ServerIMAPS, imapconf.AfterDelete, "", 2, 1},
		{"imap move", imapconf.ServerIMAPS, imapconf.AfterMove, "Processed", 2, 1},
		// DELE once batches are committed: after the reads that find
		// one or more committed, and at the end; how many of the 3
		// batches one DELE covers depends on how their records overlap
		// the reads (the pipeline records while it reads on).
		{"pop3 delete", imapconf.ServerPOP3S, imapconf.AfterDelete, "", 2, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			local := fmt.Sprintf("dur%d", time.Now().UnixNano()%1e9)
			address, pw := fill(t, local)
			e := newDurEnv(t, watch.Options{BatchMessages: tt.batch})
			var atSync []int
			var syncErr error
			e.setOnSync(func() error {
				total, _, err := folderCounts(d, address, pw, "INBOX")
				e.mu.Lock()
				defer e.mu.Unlock()
				if err != nil {
					syncErr = err
				} else {
					atSync = append(atSync, total[0])
				}
				return nil
			})
			e.add(t, d, "box", address, tt.serverType, tt.after, tt.moveTo)
			e.waitRecorded(t, "box", n)
			waitFolder(t, d, address, "INBOX", 0, -1)
			if tt.moveTo != "" {
				waitFolder(t, d, address, tt.moveTo, n, -1)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if syncErr != nil {
				t.Fatalf("reading the server at a sync: %v", syncErr)
			}
			if got := e.st.Syncs(); got < tt.minSyncs {
				t.Errorf("got %d syncs, want at least %d", got, tt.minSyncs)
			}
			for i, c := range atSync {
				if c != n {
					t.Errorf("sync %d: the server held %d messages, want all %d (removed before the sync)", i+1, c, n)
				}
			}
		})
	}

	t.Run("sync fails: nothing removed", func(t *testing.T) {
		for _, serverType := range []string{imapconf.ServerIMAPS, imapconf.ServerPOP3S} {
			local := fmt.Sprintf("durfail%d", time.Now().UnixNano()%1e9)
			address, _ := fill(t, local)
			e := newDurEnv(t, watch.Options{})
			var calls atomic.Int32
			e.setOnSync(func() error { calls.Add(1); return errors.New("disk on fire") })
			e.add(t, d, "box", address, serverType, imapconf.AfterDelete, "")
			e.waitRecorded(t, "box", n)
			testwait.Until(t, 30*time.Second, func() error { // the first try and a retry
				if n := calls.Load(); n < 2 {
					return fmt.Errorf("%s: the durability step ran %d times, want a try and a retry", serverType, n)
				}
				return nil
			})
			waitFolder(t, d, address, "INBOX", n, -1)
		}
	})

	t.Run("seen and none pay nothing", func(t *testing.T) {
		e := newDurEnv(t, watch.Options{BatchMessages: 2})
		seenAddr, _ := fill(t, fmt.Sprintf("durseen%d", time.Now().UnixNano()%1e9))
		noneAddr, _ := fill(t, fmt.Sprintf("durnone%d", time.Now().UnixNano()%1e9))
		popAddr, _ := fill(t, fmt.Sprintf("durpop%d", time.Now().UnixNano()%1e9))
		e.add(t, d, "seen", seenAddr, imapconf.ServerIMAPS, imapconf.AfterSeen, "")
		e.add(t, d, "none", noneAddr, imapconf.ServerIMAPS, imapconf.AfterNone, "")
		e.add(t, d, "pop_keep", popAddr, imapconf.ServerPOP3S, imapconf.AfterNone, "")
		e.waitRecorded(t, "seen", n)
		e.waitRecorded(t, "none", n)
		e.waitRecorded(t, "pop_keep", n)
		waitFolder(t, d, seenAddr, "INBOX", n, n)
		waitFolder(t, d, noneAddr, "INBOX", n, 0)
		if got := e.st.Syncs(); got != 0 {
			t.Errorf("got %d syncs for mailboxes that delete nothing, want 0", got)
		}
	})
}

// TestDurableBeforeGraphAction: the same for Microsoft Graph (the fake):
// before the first delete or move request of a round the commits are
// fsynced; marking messages read pays nothing.
func TestDurableBeforeGraphAction(t *testing.T) {
	g := graphfake.New(t)
	removing := func() int { // delete and move requests so far
		n := 0
		for _, r := range g.Requests() {
			if r.Method == http.MethodDelete || (r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/move")) {
				n++
			}
		}
		return n
	}
	for _, tt := range []struct {
		after, moveTo string
		syncs         bool
	}{
		{imapconf.AfterDelete, "", true},
		{imapconf.AfterMove, "Processed", true},
		{imapconf.AfterSeen, "", false},
	} {
		t.Run(tt.after, func(t *testing.T) {
			user := "dur-" + tt.after + "@contoso.example"
			g.AddUser(user, "Processed")
			for i := range 3 {
				g.AddMessage(user, fixedMessage(fmt.Sprintf("%s-%d@x", tt.after, i), fmt.Sprintf("Invoice %d", i)))
			}
			e := newDurEnv(t, watch.Options{BatchMessages: 2})
			before := removing()
			var atSync []int
			e.setOnSync(func() error {
				n := removing() - before
				e.mu.Lock()
				atSync = append(atSync, n)
				e.mu.Unlock()
				return nil
			})
			c := imapconf.Config{Name: "graph", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeMSGraph, Enabled: true,
				Username: user, TenantID: graphfake.TenantID, ClientID: graphfake.ClientID, ClientSecret: graphfake.ClientSecret,
				GraphURL: g.URL, AuthorityURL: g.URL, CACert: g.CACert, Folder: imapconf.DefaultFolder,
				AfterProcessing: tt.after, MoveTo: tt.moveTo, PollInterval: imapconf.MinPollInterval, Backlog: imapconf.BacklogAll,
				Auth: imapconf.AuthPassword}
			if err := e.st.CreateIMAP(context.Background(), &c); err != nil {
				t.Fatal(err)
			}
			e.mgr.Changed(context.Background())
			e.waitRecorded(t, "graph", 3)
			testwait.Until(t, 20*time.Second, func() error {
				ms := g.Messages(user, "inbox")
				done := len(ms) == 0
				if tt.after == imapconf.AfterSeen {
					done = true
					for _, m := range ms {
						done = done && m.IsRead
					}
				}
				if !done {
					return fmt.Errorf("after-processing %s not done: %d messages in the inbox", tt.after, len(ms))
				}
				return nil
			})
			e.mu.Lock()
			defer e.mu.Unlock()
			switch {
			case tt.syncs && (len(atSync) == 0 || atSync[0] != 0):
				t.Errorf("got syncs %v (delete/move requests made before each), want a first sync before any", atSync)
			case !tt.syncs && e.st.Syncs() != 0:
				t.Errorf("got %d syncs for a mailbox that deletes nothing, want 0", e.st.Syncs())
			}
		})
	}
}
