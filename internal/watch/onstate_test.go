package watch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source"
	"mailtrigger/internal/source/sourcefake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// TestOnStateSeesEveryChange: the manager tells OnState each change of a
// watcher's state, with the mailbox's id and name and the statuses before
// and after, and a disabled mailbox as StateDisabled.
func TestOnStateSeesEveryChange(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, store.SQLite)
	cfg := imapconf.Config{Name: "hooked", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Auth: imapconf.AuthPassword,
		Host: "fake.invalid", Enabled: true, Folder: "INBOX", AfterProcessing: imapconf.AfterSeen, Backlog: imapconf.BacklogAll,
		PollInterval: 60}
	if err := st.CreateIMAP(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	src := sourcefake.New(3, time.Minute, "")
	src.FailConnect(errors.New("connect: connection refused"), fmt.Errorf("login: %w", source.ErrAuth))

	var mu sync.Mutex
	var seen []string
	onState := func(_ context.Context, id int64, name string, prev, next imapconf.Status) {
		mu.Lock()
		defer mu.Unlock()
		if id != cfg.ID {
			t.Errorf("OnState for id %d, want %d", id, cfg.ID)
		}
		if prev.State == next.State {
			t.Errorf("OnState without a change: %s", next.State)
		}
		if next.State == imapconf.StateError && next.LastError != "connect: connection refused" {
			t.Errorf("error state with last error %q", next.LastError)
		}
		seen = append(seen, prev.State+">"+next.State+"@"+name)
	}
	mgr := watch.New(watch.Deps{Store: st, Ingester: ingest.New(ingest.Deps{Store: st}), OnState: onState,
		Options: watch.Options{Sources: func(imapconf.Config) (source.Source, error) { return src, nil },
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, AuthBackoff: 20 * time.Millisecond, ResyncEvery: time.Hour}})
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(rctx) })
	defer func() { cancel(); wg.Wait() }()

	want := "connecting>error@hooked error>connecting@hooked connecting>auth_failed@hooked auth_failed>connecting@hooked " +
		"connecting>syncing@hooked syncing>idle@hooked"
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(seen, " ")
	}
	testwait.Until(t, 10*time.Second, func() error {
		if got() != want {
			return fmt.Errorf("OnState saw %q, want %q", got(), want)
		}
		return nil
	})
	cfg.Enabled = false
	if err := st.UpdateIMAP(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	mgr.Changed(ctx)
	testwait.Until(t, 10*time.Second, func() error {
		if w := want + " idle>disabled@"; got() != w {
			return fmt.Errorf("OnState saw %q, want %q", got(), w)
		}
		return nil
	})
}
