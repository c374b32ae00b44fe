package cli

import (
	"context"
	"log/slog"
	"sync"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/config"
	"mailtrigger/internal/store"
)

// alerting is the service's health alerts: the monitor that turns watcher
// states and the run backlog into alert events, and the sender that
// delivers them (docs/alerts.md).
type alerting struct {
	monitor *alert.Monitor
}

// newAlerting makes the monitor and the sender of cfg's alert settings.
func newAlerting(st *store.Store, cfg config.Config, log *slog.Logger) (*alerting, error) {
	smtpPassword, err := cfg.Alert.SMTP.ReadPassword()
	if err != nil {
		return nil, err
	}
	a := &alerting{}
	a.monitor = alert.NewMonitor(alert.MonitorDeps{Store: st, Logger: log, ReplicaID: cfg.ReplicaID,
		Secrets: []string{smtpPassword},
		Options: alert.MonitorOptions{FailingAfter: cfg.Alert.FailingAfter, BacklogRuns: cfg.Alert.BacklogRuns,
			BacklogAge: cfg.Alert.BacklogAge}})
	return a, nil
}

// start runs the monitor and the sender on wg until ctx ends.
func (a *alerting) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { a.monitor.Run(ctx) })
}
