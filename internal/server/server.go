// Package server assembles the HTTP surface of the service: the API, the
// web UI, the probes and the metrics, behind logging, metrics and panic recovery.
package server

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailtrigger/internal/api"
	"mailtrigger/internal/clientip"
	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
)

// Deps are what the server needs.
type Deps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry // nil: a new one
	Version  string
	// Runtime is passed to the API; nil: control.Offline.
	Runtime control.Runtime
	// WebRoutes, when set, registers the web UI's routes on the server's
	// mux (the API, probes and metrics keep their more specific patterns).
	WebRoutes func(mux *http.ServeMux)
	// BaseURL and Proxies are passed to the API (the sign-in callback URL).
	BaseURL string
	Proxies clientip.Resolver
	// MetricsToken, when set, is the bearer token /metrics asks for.
	MetricsToken string
}

// Timeouts bound how long a client may take over a request; a zero field
// takes its default.
type Timeouts struct {
	ReadHeader time.Duration // the request line and headers; default 10 s
	Read       time.Duration // the whole request, body included; default 60 s
	Write      time.Duration // from the end of the headers to the end of the answer; default 5 min
	Idle       time.Duration // a kept-alive connection between requests; default 2 min
}

// HTTPServer returns the http.Server that serves h with the timeouts t. A
// body that stops arriving within the read timeout is answered 408 by the
// API (and the UI's forms), one cut short 400, never 500.
func HTTPServer(h http.Handler, log *slog.Logger, t Timeouts) *http.Server {
	def := func(d, v time.Duration) time.Duration {
		if d == 0 {
			return v
		}
		return d
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: def(t.ReadHeader, 10*time.Second),
		ReadTimeout:       def(t.Read, 60*time.Second),
		WriteTimeout:      def(t.Write, 5*time.Minute),
		IdleTimeout:       def(t.Idle, 2*time.Minute),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// NewRegistry returns a metrics registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler returns the service's whole HTTP handler.
func Handler(d Deps) http.Handler {
	if d.Registry == nil {
		d.Registry = NewRegistry()
	}
	mux := http.NewServeMux()
	api.New(api.Deps{Store: d.Store, Logger: d.Logger, Runtime: d.Runtime, BaseURL: d.BaseURL, Proxies: d.Proxies}).Routes(mux)
	probes(mux, d.Store, d.Logger)
	mux.Handle("GET /metrics", bearer(d.MetricsToken, promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})))
	if d.WebRoutes != nil {
		d.WebRoutes(mux)
	}

	m := newHTTPMetrics(d.Registry)
	return recoverPanics(d.Logger, observe(d.Logger, m, mux))
}

// bearer lets through to h only the requests that carry token as their
// bearer token (Authorization: Bearer …); every request when token is
// empty. /metrics names the flows and the webhook endpoints (scheme, host
// and port), which an operator may not want anyone who reaches the port to
// read.
func bearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailtrigger metrics"`)
			http.Error(w, "this service's /metrics asks for its token (MAILTRIGGER_METRICS_TOKEN) as a bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// notReady is /readyz's whole answer when the database is not usable. The
// probe needs no token, so it says nothing of the database; the error goes
// to the log instead (pgx's connection errors name the host, the user and
// the database, never the password).
const notReady = "not ready: database unavailable; see the server log\n"

func probes(mux *http.ServeMux, st *store.Store, log *slog.Logger) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := st.Ready(ctx); err != nil {
			log.Warn("readiness probe: not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(notReady))
			return
		}
		w.Write([]byte("ready\n"))
	})
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailtrigger_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailtrigger_http_request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe counts and times every request by its route pattern (never the raw
// path, which would make unbounded label values) and logs it. Headers are
// never logged, so neither are tokens.
func observe(log *slog.Logger, m *httpMetrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(route, r.Method).Observe(d.Seconds())
		if route != "GET /metrics" && route != "GET /healthz" && route != "GET /readyz" {
			log.Debug("http request", "method", r.Method, "path", r.URL.Path, "route", route, "status", sw.status, "bytes", sw.bytes, "duration", d)
		}
	})
}

func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
				http.Error(w, `{"error":{"code":"internal","message":"internal error; see the server log"}}`, http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
