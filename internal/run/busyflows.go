package run

import (
	"cmp"
	"slices"
	"sync"

	"mailtrigger/internal/store"
)

// maxBusyFlows bounds the flows a claim leaves out, and so its parameters.
const maxBusyFlows = 200

// busyFlows are the flows one of whose runs was handed back because the
// flow's first endpoint had no room. While that endpoint stays full the
// worker's claims leave the flow's runs in the queue: claiming them only to
// hand them back would take claims (and, on SQLite, the one writer) from
// the runs of other endpoints. A flow is dropped as soon as its endpoint
// has room, so its runs are claimed again as they come due.
type busyFlows struct {
	mu    sync.Mutex
	flows map[int64]busyFlow
	seen  map[int64]busyFlow // flows delivered lately, with their first endpoint
}

type busyFlow struct {
	endpoint string
	caps     caps
}

func newBusyFlows() *busyFlows {
	return &busyFlows{flows: map[int64]busyFlow{}, seen: map[int64]busyFlow{}}
}

// add notes that a run of flow id found endpoint (with caps c) full.
func (b *busyFlows) add(id int64, endpoint string, c caps) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.flows[id]; ok || len(b.flows) < maxBusyFlows {
		b.flows[id] = busyFlow{endpoint: endpoint, caps: c}
	}
}

// still returns the flows whose endpoint l says is still full, in order,
// and forgets the others.
func (b *busyFlows) still(l *limiter) []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int64
	for id, f := range b.flows {
		if l.full(f.endpoint, f.caps) {
			out = append(out, id)
		} else {
			delete(b.flows, id)
		}
	}
	slices.Sort(out)
	return out
}

// seenFlow notes that flow id delivers to endpoint (with caps c) first, so
// that later claims take no more of its runs than the endpoint has room
// for (flowCaps). At most maxBusyFlows flows are noted.
func (b *busyFlows) seenFlow(id int64, endpoint string, c caps) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.seen[id]; (ok && f == busyFlow{endpoint, c}) || (!ok && len(b.seen) >= maxBusyFlows) {
		return
	}
	b.seen[id] = busyFlow{endpoint: endpoint, caps: c}
}

// maxCappedFlows bounds the flows a claim takes a capped number of runs of
// (a statement each).
const maxCappedFlows = 8

// flowCaps returns the bounds of a claim of up to free runs: none of the
// flows whose endpoint l says has no room (still, or held by Retry-After,
// or its slots and waiters full), and of the flows seen delivering, at
// most the runs their endpoint has room for now (its free slots and the
// waiters it serves quickly) when that is less than free: for the
// maxCappedFlows of them with the least room (a statement each), the others
// unbounded. Flows of one endpoint are each given the endpoint's room. A
// flow whose endpoint l has forgotten is forgotten too.
func (b *busyFlows) flowCaps(l *limiter, free int) []store.FlowCap {
	var out, capped []store.FlowCap
	full := b.still(l)
	for _, id := range full {
		out = append(out, store.FlowCap{FlowID: id})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, f := range b.seen {
		if slices.Contains(full, id) {
			continue
		}
		switch n := l.room(f.endpoint, f.caps); {
		case n < 0:
			delete(b.seen, id)
		case n == 0:
			out = append(out, store.FlowCap{FlowID: id})
		case n < free:
			capped = append(capped, store.FlowCap{FlowID: id, Max: n})
		}
	}
	slices.SortFunc(capped, func(a, b store.FlowCap) int {
		return cmp.Or(cmp.Compare(a.Max, b.Max), cmp.Compare(a.FlowID, b.FlowID))
	})
	out = append(out, capped[:min(len(capped), maxCappedFlows)]...)
	slices.SortFunc(out, func(a, b store.FlowCap) int { return cmp.Compare(a.FlowID, b.FlowID) })
	return out
}
