package flow

import (
	"errors"
	"fmt"
	"sync"

	"mailtrigger/internal/store"
)

// Matchers holds the compiled triggers of the flows it has matched, one per
// flow and definition, so that a message is matched without reading a
// definition or compiling a regular expression: a flow is compiled again
// only when its definition changes. A flow it has not matched for a sweep
// (sweepEvery evaluations) is dropped, so deleted flows do not stay. It is
// safe for concurrent use; the zero value is not: use NewMatchers. A nil
// *Matchers compiles every flow each time.
type Matchers struct {
	mu       sync.Mutex
	flows    map[int64]*compiled
	calls    int // evaluations since the last sweep
	every    int // sweepEvery; tests lower it
	compiles int // compilations, for tests
}

// compiled is a flow's trigger compiled from definition def.
type compiled struct {
	def  string
	m    *Matcher
	err  error
	used bool // matched since the last sweep
}

// sweepEvery is how many evaluations pass between two sweeps of the flows
// not matched since the last.
const sweepEvery = 4096

// NewMatchers returns an empty cache.
func NewMatchers() *Matchers {
	return &Matchers{flows: map[int64]*compiled{}, every: sweepEvery}
}

// compile reads the trigger of a stored flow and compiles it. A definition
// that breaks a rule of the activities only still matches (the worker fails
// its runs, saying why); one whose trigger cannot be read or compiled is an
// error.
func compile(fr store.FlowRecord) (*Matcher, error) {
	f, re, err := parse(fr.Definition, nil)
	var de *DefinitionError
	if err != nil && !errors.As(err, &de) {
		return nil, fmt.Errorf("flow %s: %w", fr.Name, err)
	}
	if re != nil { // compiled by the rule check already
		return &Matcher{t: f.Start.EmailTrigger, re: re}, nil
	}
	m, err := Compile(f.Start.EmailTrigger)
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", fr.Name, err)
	}
	return m, nil
}

// matchers returns the compiled triggers of flows, in order.
func (ms *Matchers) matchers(flows []store.FlowRecord) ([]*Matcher, error) {
	out := make([]*Matcher, len(flows))
	if ms == nil {
		for i, fr := range flows {
			m, err := compile(fr)
			if err != nil {
				return nil, err
			}
			out[i] = m
		}
		return out, nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for i, fr := range flows {
		c := ms.flows[fr.ID]
		if c == nil || c.def != fr.Definition {
			c = &compiled{def: fr.Definition}
			c.m, c.err = compile(fr)
			ms.compiles++
			ms.flows[fr.ID] = c
		}
		c.used = true
		if c.err != nil {
			return nil, c.err
		}
		out[i] = c.m
	}
	ms.calls++
	if ms.calls >= ms.every {
		ms.calls = 0
		for id, c := range ms.flows {
			if !c.used {
				delete(ms.flows, id)
			}
			c.used = false
		}
	}
	return out, nil
}

// Evaluate matches a message (decoded subject, first From address) against
// the flows on its mailbox.
func (ms *Matchers) Evaluate(flows []store.FlowRecord, subject, from string) ([]Verdict, error) {
	matchers, err := ms.matchers(flows)
	if err != nil {
		return nil, err
	}
	out := make([]Verdict, 0, len(flows))
	for i, fr := range flows {
		v := Verdict{FlowID: fr.ID, FlowName: fr.Name}
		v.Matched, v.Reason = matchers[i].Match(subject, from)
		v.Start = v.Matched && fr.Enabled
		if v.Matched && !fr.Enabled {
			v.Reason = "flow disabled (" + v.Reason + ")"
		}
		out = append(out, v)
	}
	return out, nil
}
