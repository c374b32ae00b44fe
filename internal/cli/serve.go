package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/clientip"
	"mailtrigger/internal/config"
	"mailtrigger/internal/control"
	"mailtrigger/internal/egress"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	runs "mailtrigger/internal/run"
	"mailtrigger/internal/server"
	"mailtrigger/internal/store"
	"mailtrigger/internal/watch"
	"mailtrigger/internal/web"
)

func serve(ctx context.Context, args []string, env Env) error {
	cfg := config.FromEnv(env.Getenv)
	fs := newFlags("serve", "[flags]", "Run the service: web UI, REST API, probes and metrics, and the mailbox watchers.", env)
	cfg.ServeFlags(fs)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file when the service stops (for go tool pprof)")
	memProfile := fs.String("memprofile", "", "write a heap profile (in use and allocated since start) to this file when the service stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	log := newLogger(cfg, env.Stderr)
	limit, from, err := cfg.ApplyMemoryLimit(env.Getenv, os.DirFS("/"))
	if err != nil {
		return err
	}
	if limit > 0 {
		log.Info("soft memory limit", "limit", fmt.Sprintf("%.0f MiB", float64(limit)/(1<<20)), "from", from)
	}
	_, stopGC := config.TuneGC(env.Getenv) // the collector's headroom (docs/memory.md)
	defer stopGC()
	if !cfg.IsPostgres() {
		// SQLite is for one process: a second one would read the same
		// mailboxes again.
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	stopCPUProfile, writeHeapProfile, err := startProfiles(*cpuProfile, *memProfile, log)
	if err != nil {
		return err
	}
	defer stopCPUProfile()
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := ensureAdmin(ctx, st, cfg, env, log); err != nil {
		return err
	}

	door, err := openFrontDoor(cfg, log)
	if err != nil {
		return err
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = defaultReplicaID()
	}
	address := cfg.BaseURL
	if address == "" {
		address = door.url()
	}
	fence, err := cfg.EgressPolicy()
	if err != nil {
		return err
	}
	if fence.Public() {
		log.Info("egress fenced: only public addresses, and those allowed, are connected to", "egress", cfg.Egress, "allow", cfg.EgressAllow)
		for _, v := range egress.ProxyVars {
			if env.Getenv(v) != "" {
				log.Warn("an HTTP proxy is set but not used: webhooks, token and Graph requests connect directly, "+
					"since through a proxy the egress fence would see only the proxy's address", "variable", v, "egress", cfg.Egress)
				break
			}
		}
	}
	// Before any mailbox is read: what a crash left in the spool goes.
	spooler, err := openSpool(cfg.DataDir, env.Getenv("MAILTRIGGER_SPOOL_THRESHOLD"), log)
	if err != nil {
		return err
	}
	reg := server.NewRegistry()
	alerts, err := newAlerting(st, cfg, log, reg, fence.Dialer())
	if err != nil {
		return err
	}
	worker := runs.New(runs.Deps{Store: st, Logger: log, Registry: reg, Dial: fence.Dialer(), Options: runs.Options{BaseURL: cfg.BaseURL,
		BackoffBase: cfg.RetryBase, BackoffMax: cfg.RetryMax, Lease: cfg.RunLease}})
	watcher := watch.New(watch.Deps{
		Store: st,
		Ingester: ingest.New(ingest.Deps{Store: st, Logger: log, Registry: reg,
			Hook: flow.Hook(st), Committed: worker.Notify,
			// A test hook of the crash-loop breaker's end-to-end test only.
			TestCrashOnSubject: env.Getenv("MAILTRIGGER_TEST_CRASH_ON_SUBJECT")}),
		Logger:   log,
		Registry: reg,
		Options:  watch.Options{SizeCap: cfg.SizeCap, Egress: fence, Spool: spooler, AuthBackoff: cfg.AuthRetry},
		Cluster: watch.Cluster{ReplicaID: cfg.ReplicaID, Address: address, Version: version(),
			LeaseTTL: cfg.LeaseTTL, RenewEvery: cfg.LeaseRenew},
		OnState: alerts.monitor.OnState,
	})
	var background sync.WaitGroup
	background.Go(func() { watcher.Run(ctx) })
	background.Go(func() { worker.Run(ctx) })
	background.Go(func() { prune(ctx, st, time.Duration(cfg.RetentionDays)*24*time.Hour, log) })
	alerts.start(ctx, &background)
	// Let a batch being recorded and deliveries in flight finish.
	defer background.Wait()

	proxies, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("MAILTRIGGER_TRUSTED_PROXIES: %w", err)
	}
	rt := serviceRuntime{watcher: watcher, worker: worker, alerts: alerts}
	ui, err := web.New(web.Deps{Store: st, Logger: log, Version: version(), Runtime: rt, Proxies: proxies,
		BaseURL: cfg.BaseURL, HTTPClient: egressClient(fence)})
	if err != nil {
		return err
	}
	srv := server.HTTPServer(server.Handler(server.Deps{Store: st, Logger: log, Version: version(), Registry: reg,
		Runtime: rt, WebRoutes: ui.Routes, BaseURL: cfg.BaseURL, Proxies: proxies, MetricsToken: cfg.MetricsToken}), log, server.Timeouts{})
	log.Info("mailtrigger serving", "version", version(), "addr", door.url(), "database", st.Dialect(),
		"replica", cfg.ReplicaID)
	errc := door.serve(srv, log)
	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	// The heap as it was running, before the watchers and workers stop.
	writeHeapProfile()
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := door.shutdown(shutdownCtx, srv); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down http: %w", err)
	}
	return nil
}

// egressClient is the HTTP client of the sign-in's code exchange: through
// the egress fence, like the mail servers' token endpoints.
func egressClient(fence *egress.Policy) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	egress.Fence(tr, fence.Dialer())
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// serviceRuntime is the running service as the API and the UI see it
// (control.Runtime): the watchers and the run worker.
type serviceRuntime struct {
	watcher *watch.Manager
	worker  *runs.Worker
	alerts  *alerting
}

var _ control.Runtime = serviceRuntime{}

func (s serviceRuntime) Changed(ctx context.Context) { s.watcher.Changed(ctx) }

func (s serviceRuntime) Status(c imapconf.Config) *imapconf.Status { return s.watcher.Status(c) }

func (s serviceRuntime) Test(ctx context.Context, c imapconf.Config) (any, error) {
	return s.watcher.TestConnection(ctx, c), nil
}

func (s serviceRuntime) Notify() { s.worker.Notify() }

func (s serviceRuntime) Cluster(ctx context.Context) (store.ClusterView, error) {
	return s.watcher.Cluster(ctx)
}

// startProfiles starts the CPU profile to cpuPath, if set, and returns a
// function that stops it and one that writes the heap profile (in use, and
// allocated since the start) to memPath, if set.
func startProfiles(cpuPath, memPath string, log *slog.Logger) (stopCPU, writeHeap func(), err error) {
	var cpu *os.File
	if cpuPath != "" {
		if cpu, err = os.Create(cpuPath); err != nil {
			return nil, nil, fmt.Errorf("creating the cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, nil, fmt.Errorf("starting the cpu profile: %w", err)
		}
	}
	stopCPU = func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				log.Error("writing the cpu profile", "path", cpuPath, "err", err)
			}
		}
	}
	writeHeap = func() {
		if memPath == "" {
			return
		}
		f, err := os.Create(memPath)
		if err == nil {
			// In use as of now, not as of the last collection (which in a
			// service at rest may be minutes old).
			runtime.GC()
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			log.Error("writing the heap profile", "path", memPath, "err", err)
		}
	}
	return stopCPU, writeHeap, nil
}

// ensureAdmin creates the user admin when there is no user at all, with
// MAILTRIGGER_ADMIN_PASSWORD or a random password printed once on stdout
// (never through the logger).
func ensureAdmin(ctx context.Context, st *store.Store, cfg config.Config, env Env, log *slog.Logger) error {
	n, err := st.CountUsers(ctx)
	if err != nil || n > 0 {
		return err
	}
	password, generated := cfg.AdminPassword, false
	if password == "" {
		password, generated = auth.RandomPassword(), true
	} else if m := auth.CheckNewPassword(password); m != "" {
		return fmt.Errorf("MAILTRIGGER_ADMIN_PASSWORD %s (it sets the first admin's password); unset it to get a random one", m)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	created, err := st.CreateFirstUser(ctx, "admin", hash)
	if err != nil || !created {
		return err
	}
	if generated {
		fmt.Fprintf(env.Stdout, "\nCreated user \"admin\" with password: %s\n"+
			"It is shown only this once. Change it with: mailtrigger user set-password admin\n"+
			"Create an API token with: mailtrigger token create NAME\n\n", password)
	} else {
		log.Info("created user admin with the password from MAILTRIGGER_ADMIN_PASSWORD")
	}
	return nil
}

// prune drops old message bodies and run details every hour.
func prune(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		p, err := st.Prune(ctx, time.Now().Add(-keep))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("pruning old messages and runs", "err", err)
		case p.Messages > 0 || p.Runs > 0:
			log.Info("pruned old messages and runs", "messages", p.Messages, "runs", p.Runs, "older_than", keep)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// defaultReplicaID is the host name and a random suffix: unique among the
// replicas, and new at every start (a restarted replica is a new one; the
// old one's leases expire or were released).
func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "mailtrigger"
	}
	var b [3]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
