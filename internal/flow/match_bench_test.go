package flow

import "testing"

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
