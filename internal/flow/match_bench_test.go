package flow

import (
	"fmt"
	"testing"

	"mailtrigger/internal/store"
)

func BenchmarkMatch(b *testing.B) {
	for _, tt := range []struct {
		name string
		t    Trigger
	}{
		{"exact", Trigger{Subject: "Invoice", Match: MatchExact, IgnoreReplyPrefixes: true}},
		{"contains", Trigger{Subject: "invoice", Match: MatchContains}},
		{"regex", Trigger{Subject: `^Order #\d+`, Match: MatchRegex}},
	} {
		m, err := Compile(tt.t)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Match("RE: Fwd: Invoice 2024-117 from Acme GmbH – Überfällig", "billing@acme.example")
			}
		})
	}
}

// benchFlows are n stored flows on one mailbox with regex triggers, none of
// which matches the benchmark's subject but the last.
func benchFlows(b *testing.B, n int) []store.FlowRecord {
	flows := make([]store.FlowRecord, n)
	for i := range flows {
		in := Input{Name: p(fmt.Sprintf("flow_%d", i)), Start: &StartInput{EmailTrigger: &TriggerInput{IMAP: p("support"),
			Subject: p(fmt.Sprintf(`(?i)^(order|invoice|ticket)[ -]#?%d\d{3,}\b`, i)), Match: p(MatchRegex), IgnoreReplyPrefixes: p(true)}},
			Activities: []ActivityInput{{URL: p(fmt.Sprintf("https://hooks.example.com/in/%d", i)), Timeout: p("10s"),
				Headers: map[string]string{"Authorization": ""}}}}
		f, _, err := Build(in, &Flow{Activities: []Activity{{URL: "https://hooks.example.com/", Headers: map[string]string{"Authorization": "x"}}}},
			func() string { return "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" })
		if err != nil {
			b.Fatal(err)
		}
		flows[i] = store.FlowRecord{ID: int64(i + 1), Name: f.Name, Enabled: true, Definition: f.Definition()}
	}
	return flows
}

// BenchmarkEvaluate matches one message against 20 flows with regex
// triggers, as the ingest hook does for every message: "compiling" reads
// and compiles every flow for every message (Evaluate, what the hook did
// before the Matchers cache), "cached" keeps them compiled (Matchers).
func BenchmarkEvaluate(b *testing.B) {
	flows := benchFlows(b, 20)
	const subject, from = "RE: Invoice 19042 from Acme GmbH – Überfällig", "billing@acme.example"
	b.Run("compiling", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Evaluate(flows, subject, from); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		ms := NewMatchers()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ms.Evaluate(flows, subject, from); err != nil {
				b.Fatal(err)
			}
		}
	})
}
