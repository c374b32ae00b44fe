package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailtrigger/internal/control/controlfake"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/source/delegated"
	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/watch"
)

// TestBrowserSignInReadsMail: the UI runs over real watchers and a Dovecot
// that accepts only tokens of the fake provider (its oauth2 passdb asks the
// provider's introspection endpoint). In Chromium, an IMAP and a POP3
// oauth2-delegated configuration (provider custom) are created with Sign in;
// while the consent page is open the mailbox is auth_failed "nobody signed
// in yet" and reads nothing; after Allow the card says "Signed in as …", the
// watcher logs in with the delegated token, and a message appended to the
// mailbox is recorded.
func TestBrowserSignInReadsMail(t *testing.T) {
	fake := oauthfake.New(t)
	d := testenv.StartDovecot(t, testenv.DovecotOAuth2(fake.IntrospectionURL()))
	st := storetest.Open(t, store.SQLite)
	var mgr *watch.Manager
	h := newHarnessWith(t, st, false, func(log *slog.Logger, rt *controlfake.Runtime) {
		mgr = watch.New(watch.Deps{Store: st, Ingester: ingest.New(ingest.Deps{Store: st, Logger: log}), Logger: log,
			Options: watch.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, AuthBackoff: 2 * time.Second,
				ResyncEvery: 200 * time.Millisecond}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { mgr.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		rt.OnChanged, rt.StatusOf = mgr.Changed, mgr.Status
	})
	fake.AddPublicClient(signInClient)
	ctx := tab(t, startBrowser(t))
	h.browserLogin(t, ctx)
	bg := context.Background()

	for _, b := range []struct{ name, serverType, reading string }{
		{"deleg_imap", imapconf.ServerIMAPS, imapconf.StateIdle},
		{"deleg_pop", imapconf.ServerPOP3S, imapconf.StatePolling},
	} {
		addr := d.AddUser(t, b.name, "unused-password")
		port := d.IMAPSPort
		if b.serverType == imapconf.ServerPOP3S {
			port = d.POP3SPort
		}
		openCreate(t, ctx, h.url)
		do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.querySelector('input[name=serverType][value="+b.serverType+"]').click()"),
			chromedp.SendKeys(chromedp.ID("f-name"), b.name),
			setValue("#f-host", d.Host), setValue("#f-port", strconv.Itoa(port)),
			chromedp.SendKeys(chromedp.ID("f-username"), addr),
			setValue("#f-caCert", string(d.CACertPEM)),
			setValue("#f-pollInterval", strconv.Itoa(imapconf.MinPollInterval)),
			setValue("#f-auth", imapconf.AuthOAuth2Delegated),
			setValue("#f-provider", imapconf.ProviderCustom),
			chromedp.SendKeys(chromedp.ID("f-d-clientId"), signInClient),
			chromedp.SendKeys(chromedp.ID("f-authUrl"), fake.AuthorizeURL()),
			chromedp.SendKeys(chromedp.ID("f-d-tokenUrl"), fake.TokenURL()),
			chromedp.SendKeys(chromedp.ID("f-d-scope"), "openid email offline_access"),
			chromedp.Click(chromedp.ID("sign-in")))
		waitFor(t, ctx, "location.href.startsWith("+jsString(fake.URL)+") && document.querySelector('#allow')")

		// Created, not signed in: the watcher cannot log in and reads nothing.
		c, err := st.GetIMAP(bg, b.name)
		if err != nil {
			t.Fatal(err)
		}
		if c.Auth != imapconf.AuthOAuth2Delegated || c.ServerType != b.serverType || c.Port != port {
			t.Fatalf("%s: created as auth %q, %s port %d", b.name, c.Auth, c.ServerType, c.Port)
		}
		testwait.Until(t, 15*time.Second, func() error {
			if s := mgr.Status(c); s.State != imapconf.StateAuthFailed || s.LastError != "token: "+delegated.MsgNoGrant {
				return fmt.Errorf("%s before the sign-in: got state %s, lastError %q", b.name, s.State, s.LastError)
			}
			return nil
		})

		do(t, ctx, chromedp.Click(chromedp.ID("allow")))
		waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('#signin-"+b.name+"')")
		if got := textOf(t, ctx, "#signin-"+b.name); got != "Signed in as "+addr {
			t.Errorf("%s: the card says %q", b.name, got)
		}
		testwait.Until(t, 15*time.Second, func() error {
			if s := mgr.Status(c); s.State != b.reading {
				return fmt.Errorf("%s after the sign-in: got state %s (%s), want %s", b.name, s.State, s.LastError, b.reading)
			}
			return nil
		})
		if n, err := st.CountMessages(bg, c.ID); err != nil || n != 0 {
			t.Fatalf("%s: %d messages before any was sent (%v)", b.name, n, err)
		}

		subject := "Order 42 via " + b.name
		d.Append(t, addr, "INBOX", []byte("From: Customer <customer@example.org>\r\nTo: "+addr+"\r\nSubject: "+subject+
			"\r\nMessage-ID: <"+b.name+"@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nHello\r\n"))
		testwait.Until(t, 20*time.Second, func() error {
			ms, err := st.ListMessages(bg, b.name, 0, 10)
			if err != nil {
				return err
			}
			if len(ms) != 1 || ms[0].Subject != subject {
				return errors.New(b.name + ": the message is not recorded yet")
			}
			return nil
		})
	}
	if c := fake.Counts(); c.Consents != 2 || c.CodeGrants != 2 {
		t.Errorf("want two consents and two codes redeemed: %+v", c)
	}
}
