package web

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"mailtrigger/internal/source/xoauth2/oauthfake"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestBrowserSignIn: in Chromium, create an oauth2-delegated configuration
// (provider custom, the fake provider), press Sign in, consent on the
// provider's page, and land back on the cards with "Signed in as". Writes
// the screenshots imap-signin-form and imap-signed-in.
func TestBrowserSignIn(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st, false)
	fake := oauthfake.New(t)
	fake.AddPublicClient(signInClient)
	owner := "owner@example.com"
	ctx := tab(t, startBrowser(t))
	h.browserLogin(t, ctx)

	openCreate(t, ctx, h.url)
	do(t, ctx, chromedp.SendKeys(chromedp.ID("f-name"), "owner_mail"),
		chromedp.SendKeys(chromedp.ID("f-description"), "Signed in with the mailbox owner's account"),
		chromedp.SendKeys(chromedp.ID("f-host"), "imap.example.com"),
		chromedp.SendKeys(chromedp.ID("f-username"), owner),
		setValue("#f-auth", "oauth2-delegated"))
	if visible(t, ctx, "#f-password") || !visible(t, ctx, "#f-provider") || !visible(t, ctx, "#sign-in") {
		t.Fatal("Sign in chosen: want the sign-in fields instead of the password")
	}
	if got := eval[string](t, ctx, "document.querySelector('#f-redirectUri').value"); got != h.url+"/oauth/callback" {
		t.Errorf("got redirect URI %q, want %s/oauth/callback", got, h.url)
	}
	if visible(t, ctx, "#f-authUrl") || !visible(t, ctx, "#f-d-clientSecret") || textOf(t, ctx, "#sign-in") != "Sign in with Google" {
		t.Error("Google: want no authorization URL box, the client secret box and Sign in with Google")
	}
	// The screenshot: Google, as most will use it.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("f-d-clientId"), "1234567890-example.apps.googleusercontent.com"),
		chromedp.SendKeys(chromedp.ID("f-d-clientSecret"), "GOCSPX-example-secret"),
		chromedp.Evaluate[chromedp.Void](`(()=>{document.activeElement.blur(); const b=document.querySelector('.panel-body');
		b.scrollTop += document.querySelector('#signin-group').getBoundingClientRect().top - b.getBoundingClientRect().top - 8})()`))
	screenshot(t, ctx, "imap-signin-form")
	do(t, ctx, setValue("#f-d-clientId", ""), setValue("#f-d-clientSecret", ""))
	do(t, ctx, setValue("#f-provider", "microsoft"))
	if !visible(t, ctx, "#f-d-tenantId") || textOf(t, ctx, "#sign-in") != "Sign in with Microsoft" {
		t.Errorf("Microsoft: want the tenant box and the button %q", textOf(t, ctx, "#sign-in"))
	}
	do(t, ctx, setValue("#f-provider", "custom"),
		chromedp.SendKeys(chromedp.ID("f-d-clientId"), signInClient),
		chromedp.SendKeys(chromedp.ID("f-authUrl"), fake.AuthorizeURL()),
		chromedp.SendKeys(chromedp.ID("f-d-tokenUrl"), fake.TokenURL()),
		chromedp.SendKeys(chromedp.ID("f-d-scope"), "openid email offline_access"))
	if visible(t, ctx, "#f-d-tenantId") || !visible(t, ctx, "#f-authUrl") {
		t.Error("custom: want the endpoint boxes and no tenant")
	}

	do(t, ctx, chromedp.Click(chromedp.ID("sign-in")))
	// The provider's consent page names the client and the user.
	waitFor(t, ctx, "location.href.startsWith("+jsString(fake.URL)+") && document.querySelector('#allow')")
	if got := textOf(t, ctx, "#user"); !strings.Contains(got, owner) {
		t.Errorf("the consent page signs in %q, want %s", got, owner)
	}
	do(t, ctx, chromedp.Click(chromedp.ID("allow")))
	waitFor(t, ctx, "location.pathname === '/imap' && document.querySelector('#signin-owner_mail')")
	if got := textOf(t, ctx, ".flash.ok"); !strings.Contains(got, "Signed in as "+owner) {
		t.Errorf("got flash %q, want Signed in as %s", got, owner)
	}
	if got := textOf(t, ctx, "#signin-owner_mail"); got != "Signed in as "+owner {
		t.Errorf("the card says %q", got)
	}
	c, err := st.GetIMAP(context.Background(), "owner_mail")
	if err != nil {
		t.Fatal(err)
	}
	if g, err := st.GetOAuthGrant(context.Background(), c.ID); err != nil || g.Account != owner {
		t.Fatalf("got grant of %q, %v; want %s", g.Account, err, owner)
	}
	do(t, ctx, chromedp.Evaluate[chromedp.Void]("document.querySelector('#imap-owner_mail').scrollIntoView({block:'center'})"))
	screenshot(t, ctx, "imap-signed-in")

	// Deny: back with a clear page, nothing changed.
	h.status.set("owner_mail", mustStatus("auth_failed"))
	do(t, ctx, chromedp.Navigate(h.url+"/imap"))
	waitFor(t, ctx, "document.querySelector('#reconnect-owner_mail')")
	do(t, ctx, chromedp.Click(chromedp.ID("reconnect-owner_mail")))
	waitFor(t, ctx, "location.href.startsWith("+jsString(fake.URL)+") && document.querySelector('#deny')")
	do(t, ctx, chromedp.Click(chromedp.ID("deny")))
	waitFor(t, ctx, "location.pathname === '/oauth/callback' && document.querySelector('h1')")
	if got := textOf(t, ctx, ".error-page"); !strings.Contains(got, "access_denied") || !strings.Contains(got, "Nothing was stored") {
		t.Errorf("denied: the page says %q", got)
	}
}

func jsString(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
