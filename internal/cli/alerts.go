package cli

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/config"
	"mailtrigger/internal/store"
)

// alerting is the service's health alerts: the monitor that turns watcher
// states and the run backlog into alert events, and the sender that
// delivers them (docs/alerts.md).
type alerting struct {
	monitor *alert.Monitor
	sender  *alert.Sender
}

// maxAlertBackoff caps the waits between an alert's attempts (below
// MAILTRIGGER_RETRY_MAX when that is longer).
const maxAlertBackoff = time.Hour

// newAlerting makes the monitor and the sender of cfg's alert settings;
// dial is the egress policy's dialer (nil: any address).
func newAlerting(st *store.Store, cfg config.Config, log *slog.Logger, reg prometheus.Registerer,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*alerting, error) {
	smtpPassword, err := cfg.Alert.SMTP.ReadPassword()
	if err != nil {
		return nil, err
	}
	var smtp *alert.SMTPConfig
	if s := cfg.Alert.SMTP; s.Host != "" {
		smtp = &alert.SMTPConfig{Host: s.Host, Port: s.Port, Username: s.Username, Password: smtpPassword, From: s.From, TLS: s.TLS,
			AllowedDomains: s.AllowedDomains}
		log.Info("alert e-mails through SMTP", "smtp", s.String())
	}
	backoffMax := maxAlertBackoff
	if cfg.RetryMax > 0 && cfg.RetryMax < backoffMax {
		backoffMax = cfg.RetryMax
	}
	a := &alerting{}
	a.sender = alert.NewSender(alert.SenderDeps{Store: st, Logger: log, Registry: reg, Dial: dial, SMTP: smtp, BaseURL: cfg.BaseURL,
		Options: alert.SenderOptions{BackoffBase: cfg.RetryBase, BackoffMax: backoffMax, Rate: cfg.Alert.Rate, Lease: cfg.RunLease}})
	a.monitor = alert.NewMonitor(alert.MonitorDeps{Store: st, Logger: log, ReplicaID: cfg.ReplicaID,
		Secrets: []string{smtpPassword}, Notify: a.sender.Notify,
		Options: alert.MonitorOptions{FailingAfter: cfg.Alert.FailingAfter, BacklogRuns: cfg.Alert.BacklogRuns,
			BacklogAge: cfg.Alert.BacklogAge}})
	return a, nil
}

// start runs the monitor and the sender on wg until ctx ends.
func (a *alerting) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { a.monitor.Run(ctx) })
	wg.Go(func() { a.sender.Run(ctx) })
}

// NotifyAlerts wakes the alert sender (control.AlertNotifier: a test
// delivery was queued).
func (s serviceRuntime) NotifyAlerts() {
	if s.alerts != nil {
		s.alerts.sender.Notify()
	}
}
