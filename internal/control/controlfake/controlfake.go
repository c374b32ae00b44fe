// Package controlfake is a control.Runtime for tests: it counts what it is
// told (Changed, Notify) and answers what it is asked with the functions a
// test sets, or as control.Offline does when none is set.
package controlfake

import (
	"context"
	"sync"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
)

// Runtime is a fake running service. Its zero value is ready to use.
type Runtime struct {
	// OnChanged, when set, is called by Changed (after counting), e.g. to
	// pass the announcement on to real watchers.
	OnChanged func(ctx context.Context)
	// StatusOf, when set, answers Status; else there is none.
	StatusOf func(c imapconf.Config) *imapconf.Status
	// TestWith, when set, answers Test; else it is control.ErrUnavailable.
	TestWith func(ctx context.Context, c imapconf.Config) any
	// ClusterView, when set, answers Cluster; else it is control.ErrUnavailable.
	ClusterView func(ctx context.Context) (store.ClusterView, error)

	mu       sync.Mutex
	changed  int
	notified int
}

var _ control.Runtime = (*Runtime)(nil)

// Changed counts an announcement to the watchers.
func (r *Runtime) Changed(ctx context.Context) {
	r.mu.Lock()
	r.changed++
	r.mu.Unlock()
	if r.OnChanged != nil {
		r.OnChanged(ctx)
	}
}

// Notify counts a wake-up of the run worker.
func (r *Runtime) Notify() {
	r.mu.Lock()
	r.notified++
	r.mu.Unlock()
}

// Status answers with StatusOf, or nil.
func (r *Runtime) Status(c imapconf.Config) *imapconf.Status {
	if r.StatusOf == nil {
		return nil
	}
	return r.StatusOf(c)
}

// Test answers with TestWith, or control.ErrUnavailable.
func (r *Runtime) Test(ctx context.Context, c imapconf.Config) (any, error) {
	if r.TestWith == nil {
		return nil, control.ErrUnavailable
	}
	return r.TestWith(ctx, c), nil
}

// Cluster answers with ClusterView, or control.ErrUnavailable.
func (r *Runtime) Cluster(ctx context.Context) (store.ClusterView, error) {
	if r.ClusterView == nil {
		return store.ClusterView{}, control.ErrUnavailable
	}
	return r.ClusterView(ctx)
}

// Counts returns how often Changed and Notify were called.
func (r *Runtime) Counts() (changed, notified int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed, r.notified
}
