package run_test

import (
	"context"
	"strings"
	"testing"

	"mailtrigger/internal/egress"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestEgressDeniedWebhookFailsForGood: with MAILTRIGGER_EGRESS=public a
// webhook to a loopback address, by IP or by a name that resolves to it, is
// refused when the connection is made, and the run fails at once (a denied
// address does not pass by retrying); the endpoint never sees a request.
// With 127.0.0.0/8 allowed, the same webhook is delivered.
func TestEgressDeniedWebhookFailsForGood(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		h := newHook(t)
		port := h.Listener.Addr().String()[len("127.0.0.1"):]
		denied, err := egress.Parse("public", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{"127.0.0.1", "localhost"} {
			t.Run(host, func(t *testing.T) {
				f := newFlow(t, s, "to_"+strings.ReplaceAll(host, ".", "_"), flowDef(webhook("http://"+host+port+"/hook")))
				r := newRun(t, s, f)
				o := fastOptions()
				o.MaxAttempts = 3
				startDialWorker(t, s, o, denied.Dialer())
				got, attempts := waitRun(t, s, r.PublicID, store.RunFailed)
				if len(attempts) != 1 {
					t.Fatalf("got %d attempts %+v, want 1: a denied address is not retried", len(attempts), attempts)
				}
				want := "egress denied: 127.0.0.1 is a loopback address (MAILTRIGGER_EGRESS=public)"
				if !strings.Contains(attempts[0].Error, want) || got.LastError != attempts[0].Error {
					t.Errorf("got attempt error %q, last error %q, want %q", attempts[0].Error, got.LastError, want)
				}
			})
		}
		if n := len(h.got()); n != 0 {
			t.Fatalf("the endpoint got %d requests, want none", n)
		}

		allowed, err := egress.Parse("public", "10.0.0.0/8, 127.0.0.0/8")
		if err != nil {
			t.Fatal(err)
		}
		f := newFlow(t, s, "allowed", flowDef(webhook("http://localhost"+port+"/hook")))
		r := newRun(t, s, f)
		startDialWorker(t, s, fastOptions(), allowed.Dialer())
		waitRun(t, s, r.PublicID, store.RunDelivered)
		if n := len(h.got()); n != 1 {
			t.Errorf("the endpoint got %d requests, want 1", n)
		}
	})
}

// startDialWorker runs a worker whose client connects with dial until the
// test ends.
func startDialWorker(t *testing.T, s *store.Store, o run.Options, dial egress.DialFunc) {
	t.Helper()
	w := run.New(run.Deps{Store: s, Logger: testLogger(t), Dial: dial, Options: o})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
