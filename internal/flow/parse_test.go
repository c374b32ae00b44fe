package flow

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestParseRefusesAsBuild: a stored definition that Build would refuse is
// refused by Parse, naming the same fields with the same messages.
func TestParseRefusesAsBuild(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Input)
	}{
		{"timeout too long", func(in *Input) { in.Activities[0].Timeout = p("5m") }},
		{"timeout too short", func(in *Input) { in.Activities[0].Timeout = p("100ms") }},
		{"timeout not a duration", func(in *Input) { in.Activities[0].Timeout = p("soon") }},
		{"maxConcurrency too high", func(in *Input) { in.Activities[0].MaxConcurrency = p(5000) }},
		{"maxConcurrency negative", func(in *Input) { in.Activities[0].MaxConcurrency = p(-1) }},
		{"ratePerSecond too high", func(in *Input) { in.Activities[0].RatePerSecond = p(1e6) }},
		{"ratePerSecond negative", func(in *Input) { in.Activities[0].RatePerSecond = p(-1.0) }},
		{"bad type", func(in *Input) { in.Activities[0].Type = p("email") }},
		{"ftp url", func(in *Input) { in.Activities[0].URL = p("ftp://x/y") }},
		{"url with a user", func(in *Input) { in.Activities[0].URL = p("https://u:pw@hooks.example.com/") }},
		{"no activities", func(in *Input) { in.Activities = nil }},
		{"eleven activities", func(in *Input) {
			for range 10 {
				in.Activities = append(in.Activities, ActivityInput{URL: p("https://hooks.example.com/more")})
			}
		}},
		{"no imap", func(in *Input) { in.Start.EmailTrigger.IMAP = nil }},
		{"no subject", func(in *Input) { in.Start.EmailTrigger.Subject = p("  ") }},
		{"bad match", func(in *Input) { in.Start.EmailTrigger.Match = p("glob") }},
		{"bad regex", func(in *Input) {
			in.Start.EmailTrigger.Match = p("regex")
			in.Start.EmailTrigger.Subject = p("Order (")
		}},
		{"bad from", func(in *Input) { in.Start.EmailTrigger.From = p("billing") }},
		{"two wrong", func(in *Input) {
			in.Activities[0].Timeout = p("1h")
			in.Activities = append(in.Activities, ActivityInput{URL: p("gopher://x"), Type: p("webhook")})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.mod(&in)
			f, _, berr := Build(in, nil, NewSecret)
			if berr == nil {
				t.Fatal("Build took it")
			}
			for len(f.Activities) < len(in.Activities) { // Build reads at most MaxActivities
				f.Activities = append(f.Activities, f.Activities[0])
			}
			// What Build read, stored as CreateFlow would store it.
			got, err := Parse(f.Definition(), f.Secrets())
			var de *DefinitionError
			if !errors.As(err, &de) {
				t.Fatalf("Parse: got %v, want a *DefinitionError like Build's %v", err, berr)
			}
			if got, want := de.Error(), strings.TrimPrefix(berr.Error(), "invalid input: "); !strings.HasSuffix(got, want) {
				t.Errorf("Parse refused with %q, want the fields and messages of Build's %q", got, want)
			}
			if got.Start != f.Start || len(got.Activities) != len(f.Activities) {
				t.Errorf("got %+v, want the flow as read", got)
			}
		})
	}
}

func TestParseTakesWhatBuildTakes(t *testing.T) {
	in := validInput()
	in.Start.EmailTrigger.Match, in.Start.EmailTrigger.Subject = p(MatchRegex), p(`^Order #\d+`)
	in.Start.EmailTrigger.From = p("@example.com")
	in.Activities[0].Timeout, in.Activities[0].MaxConcurrency, in.Activities[0].RatePerSecond = p("2m"), p(8), p(2.5)
	in.Activities[0].Headers = map[string]string{"Authorization": "Bearer x"}
	in.Activities = append(in.Activities, ActivityInput{URL: p("http://127.0.0.1:9/b"), Timeout: p("1s")})
	f, _, err := Build(in, nil, NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(f.Definition(), f.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	if got.Definition() != f.Definition() || !slices.Equal(got.Secrets(), f.Secrets()) {
		t.Errorf("got %s, want %s", got.Definition(), f.Definition())
	}
}

// TestParseNumericTimeout: an older worker took a number as seconds; Build
// never did (the API refuses it as a JSON type error), and Parse refuses it
// with a message that says what to write.
func TestParseNumericTimeout(t *testing.T) {
	def := `{"name":"legacy","start":{"emailTrigger":{"imap":"inbox","subject":"Invoice"}},` +
		`"activities":[{"type":"webhook","url":"https://hooks.example.com/in","timeout":15}]}`
	f, err := Parse(def, []string{"whsec_x"})
	var de *DefinitionError
	if !errors.As(err, &de) || !slices.Equal(slices.Collect(maps.Keys(de.Fields)), []string{"activities[0].timeout"}) ||
		!strings.Contains(err.Error(), `activities[0].timeout: must be a duration from 1s to 2m, such as 30s, in quotes; a number (15) is not one`) {
		t.Fatalf("got %v, want a *DefinitionError on activities[0].timeout", err)
	}
	if len(f.Activities) != 1 || f.Activities[0].Timeout != "15" || f.Activities[0].Secret != "whsec_x" || f.Start.EmailTrigger.Subject != "Invoice" {
		t.Errorf("got %+v, want the flow as read", f)
	}
	// Build refuses the same value.
	in := validInput()
	in.Activities[0].Timeout = p("15")
	if _, _, err := Build(in, nil, NewSecret); err == nil || !strings.Contains(err.Error(), "activities[0].timeout: must be a duration from 1s to 2m") {
		t.Errorf("Build: got %v", err)
	}
}

func TestParseUnreadable(t *testing.T) {
	for _, def := range []string{"", "{", `{"activities":{}}`, `{"activities":[{"maxConcurrency":2.5}]}`} {
		_, err := Parse(def, nil)
		var de *DefinitionError
		if err == nil || errors.As(err, &de) || !strings.Contains(err.Error(), "reading flow definition") {
			t.Errorf("%s: got %v, want a reading error", def, err)
		}
	}
}
