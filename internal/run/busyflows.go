package run

import (
	"slices"
	"sync"
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
}

type busyFlow struct {
	endpoint string
	caps     caps
}

func newBusyFlows() *busyFlows { return &busyFlows{flows: map[int64]busyFlow{}} }

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
