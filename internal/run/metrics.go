package run

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	runs     *prometheus.CounterVec // runs that reached delivered or failed, by flow and status
	attempts *prometheus.CounterVec // attempts by flow and result
	latency  prometheus.Histogram   // one webhook request
	trigger  prometheus.Histogram   // message read → run delivered
	depth    prometheus.Gauge
	limit    *prometheus.GaugeVec // the adaptive concurrency limit, by endpoint (scheme://host:port)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtrigger_runs_total",
			Help: "Runs that reached a final status, by flow and status (delivered, failed)."}, []string{"flow", "status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtrigger_run_attempts_total",
			Help: "Delivery attempts by flow and result (2xx, 3xx, 4xx, 5xx: the last response's class; error: no response)."},
			[]string{"flow", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailtrigger_webhook_request_seconds",
			Help:    "Time from sending a webhook request to the end of reading its response.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		trigger: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailtrigger_run_trigger_latency_seconds",
			Help:    "Time from reading a message to delivering the run it started.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtrigger_run_queue_depth",
			Help: "Runs not finished yet (pending, delivering, retrying), in the whole database."}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailtrigger_webhook_endpoint_limit",
			Help: "Requests this process may have in flight to an endpoint (scheme://host:port) now: its adaptive limit."},
			[]string{"endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.attempts, m.latency, m.trigger, m.depth, m.limit)
	}
	return m
}
