// Package control is the control plane: every change an operator makes
// through the REST API or the web UI (IMAP configurations, flows, a run
// retried, a message re-triggered) is made here, once for both surfaces:
// validated, stored, logged and announced to the running service (the
// watchers follow a changed configuration, the run worker wakes for runs
// that became due).
//
// The surfaces decode their input (JSON, a form) into the domain inputs
// (imapconf.Input, flow.Input) and map the errors returned here to their
// answers; they never store a change themselves. Runtime is what they and
// this package need of the running service.
package control

import (
	"context"
	"errors"
	"log/slog"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
)

// ErrUnavailable is returned by a Runtime that cannot do what is asked in
// this process: test a connection, list the replicas.
var ErrUnavailable = errors.New("not available in this process")

// Runtime is the running service as the control plane and the HTTP
// surfaces see it: the watchers and the run worker.
type Runtime interface {
	// Changed tells the watchers that IMAP configurations were created,
	// edited, duplicated, enabled, disabled or deleted, so that they follow
	// without a restart.
	Changed(ctx context.Context)
	// Status reports what the watcher of a configuration is doing; nil when
	// none runs in this process.
	Status(c imapconf.Config) *imapconf.Status
	// Test tries a configuration (connect, TLS, log in, open the folder) and
	// returns the result to answer as JSON, or ErrUnavailable.
	Test(ctx context.Context, c imapconf.Config) (any, error)
	// Notify wakes the run worker: runs became due.
	Notify()
	// Cluster lists the replicas serving the database, or ErrUnavailable
	// when this process keeps no replica registry.
	Cluster(ctx context.Context) (store.ClusterView, error)
}

// Offline is the Runtime of a process with no watchers and no run worker:
// announcements go nowhere, there is no status, and testing and the replica
// list are unavailable.
type Offline struct{}

// Changed does nothing.
func (Offline) Changed(context.Context) {}

// Status returns nil: no watcher runs here.
func (Offline) Status(imapconf.Config) *imapconf.Status { return nil }

// Test returns ErrUnavailable.
func (Offline) Test(context.Context, imapconf.Config) (any, error) { return nil, ErrUnavailable }

// Notify does nothing.
func (Offline) Notify() {}

// Cluster returns ErrUnavailable.
func (Offline) Cluster(context.Context) (store.ClusterView, error) {
	return store.ClusterView{}, ErrUnavailable
}

// Changes makes configuration changes. Every method takes by, the user the
// change is logged for ("" for an API token).
type Changes struct {
	store *store.Store
	log   *slog.Logger
	rt    Runtime
}

// New returns the control plane over st. A nil log discards; a nil rt is
// Offline.
func New(st *store.Store, log *slog.Logger, rt Runtime) *Changes {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if rt == nil {
		rt = Offline{}
	}
	return &Changes{store: st, log: log, rt: rt}
}

// logAs logs msg with attrs, and the user when there is one.
func (c *Changes) logAs(by, msg string, attrs ...any) {
	if by != "" {
		attrs = append(attrs, "user", by)
	}
	c.log.Info(msg, attrs...)
}
