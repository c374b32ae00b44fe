package flow

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"mailtrigger/internal/store"
)

// record returns a stored flow with id on a trigger matching subject.
func record(id int64, subject, match string) store.FlowRecord {
	in := validInput()
	in.Name = p(fmt.Sprintf("flow_%d", id))
	in.Start.EmailTrigger.Subject, in.Start.EmailTrigger.Match = p(subject), p(match)
	f, _, err := Build(in, nil, NewSecret)
	if err != nil {
		panic(err)
	}
	return store.FlowRecord{ID: id, Name: f.Name, Enabled: true, Definition: f.Definition()}
}

func (ms *Matchers) compilations() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.compiles
}

func (ms *Matchers) size() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.flows)
}

func started(t *testing.T, ms *Matchers, flows []store.FlowRecord, subject string) string {
	t.Helper()
	vs, err := ms.Evaluate(flows, subject, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		if v.Start {
			out = append(out, v.FlowName)
		}
	}
	return strings.Join(out, ",")
}

func TestMatchersCompileOncePerDefinition(t *testing.T) {
	ms := NewMatchers()
	flows := []store.FlowRecord{record(1, `^Order #\d+`, MatchRegex), record(2, "invoice", MatchContains)}
	for range 5 {
		if got := started(t, ms, flows, "Order #12 and invoice"); got != "flow_1,flow_2" {
			t.Fatalf("got %q", got)
		}
	}
	if n := ms.compilations(); n != 2 {
		t.Errorf("got %d compilations for 2 unchanged flows matched 5 times, want 2", n)
	}
	// A record read again (a new batch) with the same definition is the
	// same flow version.
	again := []store.FlowRecord{record(1, `^Order #\d+`, MatchRegex), record(2, "invoice", MatchContains)}
	started(t, ms, again, "x")
	if n := ms.compilations(); n != 2 {
		t.Errorf("got %d compilations after reading the flows again, want 2", n)
	}

	// Flow 1 edited: its new trigger is used at once, flow 2 is kept.
	flows[0] = record(1, `^Ticket \d+`, MatchRegex)
	if got := started(t, ms, flows, "Order #12 and invoice"); got != "flow_2" {
		t.Errorf("after the edit: got %q, want flow_2 only", got)
	}
	if got := started(t, ms, flows, "Ticket 7: invoice"); got != "flow_1,flow_2" {
		t.Errorf("after the edit: got %q, want both", got)
	}
	if n := ms.compilations(); n != 3 {
		t.Errorf("got %d compilations after editing one flow, want 3", n)
	}
	// Enabled is the record's: disabling needs no compilation.
	flows[1].Enabled = false
	if got := started(t, ms, flows, "Ticket 7: invoice"); got != "flow_1" {
		t.Errorf("flow 2 disabled: got %q, want flow_1", got)
	}
	if n := ms.compilations(); n != 3 {
		t.Errorf("got %d compilations after disabling a flow, want 3", n)
	}
}

func TestMatchersDropFlowsNoLongerMatched(t *testing.T) {
	ms := NewMatchers()
	ms.every = 4
	a, b := record(1, "a", MatchExact), record(2, "b", MatchExact)
	started(t, ms, []store.FlowRecord{a, b}, "a")
	// Flow 2 deleted (or moved): after a sweep without it, it is gone.
	for range 2 * ms.every {
		started(t, ms, []store.FlowRecord{a}, "a")
	}
	if n := ms.size(); n != 1 {
		t.Errorf("got %d flows held, want 1", n)
	}
	// Flow 1, matched all along, was never compiled again.
	if n := ms.compilations(); n != 2 {
		t.Errorf("got %d compilations, want 2", n)
	}
}

func TestMatchersErrors(t *testing.T) {
	ms := NewMatchers()
	bad := store.FlowRecord{ID: 3, Name: "broken", Definition: `{"start":{"emailTrigger":{"imap":"inbox","subject":"Order (","match":"regex"}},"activities":[]}`}
	for range 2 {
		if _, err := ms.Evaluate([]store.FlowRecord{record(1, "a", MatchExact), bad}, "a", ""); err == nil || !strings.Contains(err.Error(), "flow broken: compiling the subject regex") {
			t.Errorf("got %v, want the regex error", err)
		}
	}
	if n := ms.compilations(); n != 2 {
		t.Errorf("got %d compilations, want 2 (a broken flow is not compiled again until it changes)", n)
	}
	// A definition whose activities break a rule still matches: the
	// worker fails its runs, saying why.
	legacy := store.FlowRecord{ID: 4, Name: "legacy", Enabled: true, Definition: `{"start":{"emailTrigger":{"imap":"inbox","subject":"Invoice"}},` +
		`"activities":[{"type":"webhook","url":"https://hooks.example.com/","timeout":15}]}`}
	if got := started(t, ms, []store.FlowRecord{legacy}, "invoice"); got != "legacy" {
		t.Errorf("got %q, want legacy started", got)
	}
	if _, err := ms.Evaluate([]store.FlowRecord{{ID: 5, Name: "garbled", Definition: "{"}}, "a", ""); err == nil || !strings.Contains(err.Error(), "flow garbled: reading flow definition") {
		t.Errorf("got %v, want a reading error", err)
	}
}

// TestMatchersConcurrent: mailboxes ingest at once and flows change under
// them (run with -race).
func TestMatchersConcurrent(t *testing.T) {
	ms := NewMatchers()
	ms.every = 16
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := int64(g%4 + 1)
				subject := fmt.Sprintf("^Order %d", i%3) // edited now and then
				flows := []store.FlowRecord{record(id, subject, MatchRegex), record(10, "invoice", MatchContains)}
				vs, err := ms.Evaluate(flows, fmt.Sprintf("Order %d invoice", i%3), "")
				if err != nil {
					t.Error(err)
					return
				}
				if !vs[0].Start || !vs[1].Start {
					t.Errorf("got %+v, want both started", vs)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := ms.size(); n > 5 {
		t.Errorf("got %d flows held, want at most 5", n)
	}
}

// TestEvaluateUncached: Evaluate (Retrigger's) compiles as it goes, with the
// same verdicts.
func TestEvaluateUncached(t *testing.T) {
	flows := []store.FlowRecord{record(1, `^Order #\d+`, MatchRegex), record(2, "invoice", MatchContains)}
	a, err := Evaluate(flows, "Order #1 invoice", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMatchers().Evaluate(flows, "Order #1 invoice", "")
	if err != nil || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("got %+v and %+v, %v", a, b, err)
	}
}
