package control_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func fixedSecret() string { return "whsec_generated0000000000000000000000000000=" }

func TestBuildAlertAccepts(t *testing.T) {
	// A webhook with defaults: kind webhook, enabled, a generated secret.
	a, gen, err := control.BuildAlert(control.AlertInput{Name: p("ops"), URL: p("https://hooks.example.com/alerts"),
		Events: []string{"mailbox.auth_failed", "run.failed", "mailbox.auth_failed"}}, nil, fixedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind != store.AlertWebhook || !a.Enabled || !gen || a.Secret != fixedSecret() ||
		!slices.Equal(a.Events, []string{"mailbox.auth_failed", "run.failed"}) {
		t.Errorf("got %+v, generated %v", a, gen)
	}
	// An edit leaving the secret out keeps it; one giving it sets it (shown).
	prev := a
	prev.Secret = testSecret
	b, gen, err := control.BuildAlert(control.AlertInput{Name: p("ops"), URL: p("https://hooks.example.com/alerts"),
		Events: []string{"run.failed"}, Enabled: p(false)}, &prev, fixedSecret)
	if err != nil || gen || b.Secret != testSecret || b.Enabled {
		t.Errorf("edit without secret: got %+v, %v, %v", b, gen, err)
	}
	b, gen, err = control.BuildAlert(control.AlertInput{Name: p("ops"), URL: p("https://hooks.example.com/alerts"),
		Events: []string{"run.failed"}, RotateSecret: p(true)}, &prev, fixedSecret)
	if err != nil || !gen || b.Secret != fixedSecret() {
		t.Errorf("rotate: got %+v, %v, %v", b, gen, err)
	}
	// E-mail: recipients, no secret.
	c, gen, err := control.BuildAlert(control.AlertInput{Name: p("mail_ops"), Kind: p("email"),
		To: []string{"ops@example.com", " oncall@example.com "}, Events: []string{"runs.backlog"}}, nil, fixedSecret)
	if err != nil || gen || c.Secret != "" || !slices.Equal(c.To, []string{"ops@example.com", "oncall@example.com"}) {
		t.Errorf("email: got %+v, %v, %v", c, gen, err)
	}
}

// A stored alert secret is kept on edit only while the url keeps its
// scheme, host and port; moved elsewhere without a secret, the
// subscription gets a new one (shown once), never the old receiver's.
func TestBuildAlertSecretFollowsTheOrigin(t *testing.T) {
	prev := store.AlertSubscription{Name: "ops", Kind: store.AlertWebhook, URL: "https://receiver.example.com/alerts",
		Events: []string{"run.failed"}, Enabled: true, Secret: testSecret}
	const given = "whsec_Z2l2ZW4tc2VjcmV0LWZvci10aGUtbmV3LWhvc3Q="
	for _, tc := range []struct {
		name, url string
		secret    *string
		want      string
		wantGen   bool
	}{
		{"same origin, another path", "https://receiver.example.com/other", nil, testSecret, false},
		{"same origin, explicit default port", "https://Receiver.Example.com:443/alerts", nil, testSecret, false},
		{"another host", "https://attacker.example.net/alerts", nil, fixedSecret(), true},
		{"another scheme", "http://receiver.example.com/alerts", nil, fixedSecret(), true},
		{"another port", "https://receiver.example.com:8443/alerts", nil, fixedSecret(), true},
		{"another host, secret given", "https://attacker.example.net/alerts", p(given), given, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, gen, err := control.BuildAlert(control.AlertInput{Name: p("ops"), URL: p(tc.url), Secret: tc.secret,
				Events: []string{"run.failed"}}, &prev, fixedSecret)
			if err != nil {
				t.Fatal(err)
			}
			if a.Secret != tc.want || gen != tc.wantGen {
				t.Errorf("got secret %q (shown %v), want %q (shown %v)", a.Secret, gen, tc.want, tc.wantGen)
			}
		})
	}
}

func TestBuildAlertRejects(t *testing.T) {
	many := make([]string, control.MaxAlertRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("a%d@example.com", i)
	}
	for _, tc := range []struct {
		name string
		in   control.AlertInput
		want map[string]string // field → a word of its message
	}{
		{"empty", control.AlertInput{}, map[string]string{"name": "required", "url": "required", "events": "required"}},
		{"bad name", control.AlertInput{Name: p("a b"), URL: p("https://x.example"), Events: []string{"run.failed"}},
			map[string]string{"name": "letters"}},
		{"unknown event", control.AlertInput{Name: p("a"), URL: p("https://x.example"), Events: []string{"run.failed", "run.exploded", "alert.test"}},
			map[string]string{"events[1]": "unknown", "events[2]": "unknown"}},
		{"ftp url", control.AlertInput{Name: p("a"), URL: p("ftp://x.example/"), Events: []string{"run.failed"}}, map[string]string{"url": "http"}},
		{"relative url", control.AlertInput{Name: p("a"), URL: p("/hooks"), Events: []string{"run.failed"}}, map[string]string{"url": "absolute"}},
		{"userinfo", control.AlertInput{Name: p("a"), URL: p("https://u:pw@x.example/"), Events: []string{"run.failed"}}, map[string]string{"url": "password"}},
		{"fragment", control.AlertInput{Name: p("a"), URL: p("https://x.example/#f"), Events: []string{"run.failed"}}, map[string]string{"url": "fragment"}},
		{"bad secret", control.AlertInput{Name: p("a"), URL: p("https://x.example"), Secret: p("hunter2"), Events: []string{"run.failed"}},
			map[string]string{"secret": "whsec_"}},
		{"short secret", control.AlertInput{Name: p("a"), URL: p("https://x.example"), Secret: p("whsec_c2hvcnQ="), Events: []string{"run.failed"}},
			map[string]string{"secret": "16 bytes"}},
		{"kind", control.AlertInput{Name: p("a"), Kind: p("sms"), Events: []string{"run.failed"}}, map[string]string{"kind": "webhook, email"}},
		{"email without to", control.AlertInput{Name: p("a"), Kind: p("email"), Events: []string{"run.failed"}}, map[string]string{"to": "required"}},
		{"email bad to", control.AlertInput{Name: p("a"), Kind: p("email"), To: []string{"ok@example.com", "nope"}, Events: []string{"run.failed"}},
			map[string]string{"to[1]": "e-mail address"}},
		{"email too many", control.AlertInput{Name: p("a"), Kind: p("email"), To: many, Events: []string{"run.failed"}}, map[string]string{"to": "at most 20"}},
		{"email with url", control.AlertInput{Name: p("a"), Kind: p("email"), To: []string{"ok@example.com"}, URL: p("https://x.example"), Events: []string{"run.failed"}},
			map[string]string{"url": "only for kind webhook"}},
		{"webhook with to", control.AlertInput{Name: p("a"), URL: p("https://x.example"), To: []string{"ok@example.com"}, Events: []string{"run.failed"}},
			map[string]string{"to": "only for kind email"}},
		{"NUL", control.AlertInput{Name: p("a"), URL: p("https://x.example/\x00"), Events: []string{"run.failed"}}, map[string]string{"url": "NUL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := control.BuildAlert(tc.in, nil, fixedSecret)
			var ve valid.Errors
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want field errors", err)
			}
			for f, word := range tc.want {
				if !strings.Contains(ve[f], word) {
					t.Errorf("%s: got %q, want it to mention %q (all: %v)", f, ve[f], word, ve)
				}
			}
			if len(ve) != len(tc.want) {
				t.Errorf("got fields %v, want %v", slices.Sorted(maps.Keys(ve)), slices.Sorted(maps.Keys(tc.want)))
			}
		})
	}
}
