package flow

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"mailtrigger/internal/valid"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		name    string
		trigger Trigger
		subject string
		from    string
		want    bool
		reason  string
	}{
		{"exact equal", Trigger{Subject: "Invoice", Match: MatchExact}, "Invoice", "", true, "is"},
		{"exact case", Trigger{Subject: "Invoice", Match: MatchExact}, "INVOICE", "", true, ""},
		{"exact spaces", Trigger{Subject: "New  order", Match: MatchExact}, "  new \t order ", "", true, ""},
		{"exact fold ß", Trigger{Subject: "Straße", Match: MatchExact}, "STRASSE", "", true, ""},
		{"exact nfc", Trigger{Subject: "Caf\u00e9", Match: MatchExact}, "Cafe\u0301", "", true, ""},
		{"exact differs", Trigger{Subject: "Invoice", Match: MatchExact}, "Invoice 42", "", false, `subject "Invoice 42" is not "Invoice"`},
		{"exact reply not ignored", Trigger{Subject: "Invoice", Match: MatchExact}, "RE: Invoice", "", false, "is not"},
		{"exact reply ignored", Trigger{Subject: "Invoice", Match: MatchExact, IgnoreReplyPrefixes: true}, "RE: Fwd: AW: Invoice", "", true, ""},
		{"reply prefixes of many languages", Trigger{Subject: "Invoice", Match: MatchExact, IgnoreReplyPrefixes: true}, "WG: SV: VS: Antw: Re[2]: FW: Invoice", "", true, ""},
		{"contains", Trigger{Subject: "order", Match: MatchContains}, "Your ORDER #12", "", true, "contains"},
		{"contains not", Trigger{Subject: "order", Match: MatchContains}, "Invoice", "", false, "does not contain"},
		{"prefix", Trigger{Subject: "Ticket", Match: MatchPrefix}, "ticket 77: printer", "", true, ""},
		{"prefix not", Trigger{Subject: "Ticket", Match: MatchPrefix}, "Re: ticket 77", "", false, "does not start with"},
		{"regex", Trigger{Subject: `^Order #\d+`, Match: MatchRegex}, "Order #123 shipped", "", true, "matches"},
		{"regex case kept", Trigger{Subject: `^Order #\d+`, Match: MatchRegex}, "order #123", "", false, "does not match"},
		{"regex case-insensitive flag", Trigger{Subject: `(?i)^order #\d+`, Match: MatchRegex}, "ORDER #1", "", true, ""},
		{"from exact", Trigger{Subject: "x", Match: MatchExact, From: "billing@example.com"}, "x", "Billing@Example.com", true, ""},
		{"from other", Trigger{Subject: "x", Match: MatchExact, From: "billing@example.com"}, "x", "spam@example.org", false, "sender"},
		{"from domain", Trigger{Subject: "x", Match: MatchExact, From: "@example.com"}, "x", "a@EXAMPLE.com", true, ""},
		{"empty subject", Trigger{Subject: "Invoice", Match: MatchExact}, "", "", false, "is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.trigger)
			if err != nil {
				t.Fatal(err)
			}
			got, reason := m.Match(tt.subject, tt.from)
			if got != tt.want || !strings.Contains(reason, tt.reason) {
				t.Errorf("got %v %q, want %v with %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func p[T any](v T) *T { return &v }

func validInput() Input {
	return Input{Name: p("invoices"), Start: &StartInput{EmailTrigger: &TriggerInput{IMAP: p("support"), Subject: p("Invoice")}},
		Activities: []ActivityInput{{URL: p("https://hooks.example.com/in")}}}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name, field, message string
		mod                  func(*Input)
	}{
		{"name", "name", "letters", func(in *Input) { in.Name = p("a b") }},
		{"no trigger", "start.emailTrigger", "required", func(in *Input) { in.Start = nil }},
		{"no imap", "start.emailTrigger.imap", "required", func(in *Input) { in.Start.EmailTrigger.IMAP = nil }},
		{"no subject", "start.emailTrigger.subject", "required", func(in *Input) { in.Start.EmailTrigger.Subject = p("  ") }},
		{"bad match", "start.emailTrigger.match", "exact, contains, prefix, regex", func(in *Input) { in.Start.EmailTrigger.Match = p("glob") }},
		{"bad regex", "start.emailTrigger.subject", "regular expression", func(in *Input) {
			in.Start.EmailTrigger.Match = p("regex")
			in.Start.EmailTrigger.Subject = p("Order (")
		}},
		{"bad from", "start.emailTrigger.from", "e-mail address or @domain", func(in *Input) { in.Start.EmailTrigger.From = p("billing") }},
		{"no activities", "activities", "at least one", func(in *Input) { in.Activities = nil }},
		{"bad type", "activities[0].type", "webhook", func(in *Input) { in.Activities[0].Type = p("email") }},
		{"no url", "activities[0].url", "required", func(in *Input) { in.Activities[0].URL = nil }},
		{"ftp url", "activities[0].url", "http", func(in *Input) { in.Activities[0].URL = p("ftp://x/y") }},
		{"url with password", "activities[0].url", "user name", func(in *Input) { in.Activities[0].URL = p("https://u:p@x/y") }},
		{"timeout", "activities[0].timeout", "duration", func(in *Input) { in.Activities[0].Timeout = p("5m") }},
		{"reserved header", "activities[0].headers.webhook-id", "cannot be overridden", func(in *Input) {
			in.Activities[0].Headers = map[string]string{"webhook-id": "x"}
		}},
		{"bad header name", "activities[0].headers.a b", "header name", func(in *Input) { in.Activities[0].Headers = map[string]string{"a b": "x"} }},
		{"maxConcurrency 0", "activities[0].maxConcurrency", "from 1 to 1000", func(in *Input) { in.Activities[0].MaxConcurrency = new(0) }},
		{"maxConcurrency too high", "activities[0].maxConcurrency", "from 1 to 1000", func(in *Input) { in.Activities[0].MaxConcurrency = new(5000) }},
		{"ratePerSecond negative", "activities[0].ratePerSecond", "from 0.01", func(in *Input) { in.Activities[0].RatePerSecond = new(-1.0) }},
		{"ratePerSecond 0", "activities[0].ratePerSecond", "from 0.01", func(in *Input) { in.Activities[0].RatePerSecond = new(0.0) }},
		{"bad secret", "activities[0].secret", "whsec_", func(in *Input) { in.Activities[0].Secret = p("hunter2") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.mod(&in)
			_, _, err := Build(in, nil, func() string { return "whsec_generatedgeneratedgenerated" })
			var ve valid.Errors
			if !errors.As(err, &ve) || len(ve) != 1 || !strings.Contains(ve[tt.field], tt.message) {
				t.Errorf("got %v, want only %s: …%s…", err, tt.field, tt.message)
			}
		})
	}
}

func TestBuildSecrets(t *testing.T) {
	gen := func() string { return "whsec_generatedgeneratedgenerated" }
	f, generated, err := Build(validInput(), nil, gen)
	if err != nil || len(generated) != 1 || f.Activities[0].Secret != gen() || f.Start.EmailTrigger.Match != MatchExact || !f.Enabled {
		t.Fatalf("got %+v %v %v", f, generated, err)
	}
	if strings.Contains(f.Definition(), "whsec_") {
		t.Error("the stored definition holds the secret")
	}
	// An edit without the secret keeps it.
	f2, generated, err := Build(validInput(), &f, func() string { return "whsec_othergeneratedothergenerated" })
	if err != nil || len(generated) != 0 || f2.Activities[0].Secret != gen() {
		t.Errorf("edit: got %+v %v %v", f2.Activities, generated, err)
	}
	back, err := Parse(f.Definition(), f.Secrets())
	if err != nil || back.Activities[0].Secret != gen() || back.Start != f.Start {
		t.Errorf("round trip: got %+v, %v", back, err)
	}
}

// A stored signing secret is kept on edit only while the activity's URL
// keeps its scheme, host and port: moved elsewhere with the secret left
// out, the activity gets a new one (shown once, as a new activity's), so
// that the old receiver's key never signs for a host of the editor's
// choosing.
func TestBuildSecretFollowsTheOrigin(t *testing.T) {
	const stored, given = "whsec_c3RvcmVkLXNlY3JldC1vZi10aGUtcmVjZWl2ZXI=", "whsec_Z2l2ZW4tc2VjcmV0LWZvci10aGUtbmV3LWhvc3Q="
	gen := func() string { return "whsec_generatedgeneratedgenerated" }
	in := validInput()
	in.Activities[0].URL, in.Activities[0].Secret = p("https://receiver.example.com/hook"), p(stored)
	prev, _, err := Build(in, nil, gen)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url string
		secret    *string
		want      string
		wantShown bool // generated: in the answer
	}{
		{"same origin, another path", "https://receiver.example.com/other?x=1", nil, stored, false},
		{"same origin, case and default port", "https://RECEIVER.example.com:443/hook", nil, stored, false},
		{"another host", "https://attacker.example.net/hook", nil, gen(), true},
		{"another scheme", "http://receiver.example.com/hook", nil, gen(), true},
		{"another port", "https://receiver.example.com:8443/hook", nil, gen(), true},
		{"another host, secret given", "https://attacker.example.net/hook", p(given), given, false},
		{"another host, secret empty", "https://attacker.example.net/hook", p(""), gen(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			in.Activities[0].URL, in.Activities[0].Secret = p(tt.url), tt.secret
			f, generated, err := Build(in, &prev, gen)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Activities[0].Secret; got != tt.want {
				t.Errorf("got secret %q, want %q", got, tt.want)
			}
			var wantGenerated []int
			if tt.wantShown {
				wantGenerated = []int{0}
			}
			if !slices.Equal(generated, wantGenerated) {
				t.Errorf("got generated %v, want %v", generated, wantGenerated)
			}
		})
	}
	// Header values at the same time: still refused (they cannot be
	// generated), so a request moving both changes nothing.
	in = validInput()
	in.Activities[0].URL = p("https://attacker.example.net/hook")
	in.Activities[0].Headers = map[string]string{"Authorization": ""}
	prev.Activities[0].Headers = map[string]string{"Authorization": "Bearer receiver-token"}
	var ve valid.Errors
	if _, _, err := Build(in, &prev, gen); !errors.As(err, &ve) || !strings.Contains(ve["activities[0].headers.Authorization"], "required again") {
		t.Errorf("got %v, want the header value required again", err)
	}
}

func TestSecretMustBeBase64(t *testing.T) {
	for _, s := range []string{"whsec_not base64 at all!!", "whsec_c2hvcnQ=", "R2l2ZW5TZWNyZXRPZlRoZU9wZXJhdG9yMTIz"} {
		in := validInput()
		in.Activities[0].Secret = p(s)
		if _, _, err := Build(in, nil, NewSecret); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
	in := validInput()
	in.Activities[0].Secret = p(NewSecret())
	if _, _, err := Build(in, nil, NewSecret); err != nil {
		t.Errorf("a generated secret refused: %v", err)
	}
}
