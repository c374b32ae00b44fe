package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

// memServer is an in-process go-imap v2 server (imapmemserver) over
// implicit TLS on loopback, which counts the sessions in IDLE. Dovecot
// runs a process per IMAP connection, which 10,000 mailboxes would turn
// into 10,000 processes on a 2-core machine; this server holds them all in
// one process, so that the service is what is measured.
type memServer struct {
	mem   *imapmemserver.Server
	srv   *imapserver.Server
	ln    net.Listener
	addr  string
	caPEM []byte
	tls   *tls.Config // for clients
	idles atomic.Int64
	users map[string]*imapmemserver.User
}

func newMemServer() (*memServer, error) {
	caPEM, certPEM, keyPEM, err := testenv.Certificates("127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("making certificates: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate: %w", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("listening for imaps: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	m := &memServer{mem: imapmemserver.New(), ln: ln, addr: ln.Addr().String(), caPEM: caPEM,
		tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, users: map[string]*imapmemserver.User{}}
	m.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &countingSession{Session: m.mem.NewSession(), idles: &m.idles}, nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger: log.New(discard{}, "", 0),
	})
	go m.srv.Serve(ln)
	return m, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (m *memServer) close() error { return m.srv.Close() }

// addUser adds a user with an INBOX.
func (m *memServer) addUser(name, password string) error {
	u := imapmemserver.NewUser(name, password)
	if err := u.Create("INBOX", nil); err != nil {
		return fmt.Errorf("creating the INBOX of %s: %w", name, err)
	}
	m.mem.AddUser(u)
	m.users[name] = u
	return nil
}

// deliver appends raw to name's INBOX, as an arriving message.
func (m *memServer) deliver(name string, raw []byte) error {
	if _, err := m.users[name].Append("INBOX", bytes.NewReader(raw), &imap.AppendOptions{}); err != nil {
		return fmt.Errorf("appending to %s: %w", name, err)
	}
	return nil
}

// countingSession counts the sessions waiting in IDLE.
type countingSession struct {
	imapserver.Session
	idles *atomic.Int64
}

func (s *countingSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idles.Add(1)
	defer s.idles.Add(-1)
	return s.Session.Idle(w, stop)
}

// idle is scenario 3: N mailboxes watched in IDLE on the in-process server;
// the service's RSS and CPU at rest, and the latency of messages to random
// mailboxes under that load beside bare IDLE clients on the same mailboxes.
func idle(ctx context.Context, e *env) error {
	n := e.o.Mailboxes
	srv, err := newMemServer()
	if err != nil {
		return err
	}
	defer srv.close()
	host, portText, _ := net.SplitHostPort(srv.addr)
	port, _ := strconv.Atoi(portText)
	user := func(i int) string { return fmt.Sprintf("mbox%d@example.test", i) }
	const password = "bench-idle-pw"
	for i := range n {
		if err := srv.addUser(user(i), password); err != nil {
			return err
		}
	}

	s, err := e.startService(ctx, ScenarioIdle, e.dbs[0])
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	base, err := s.procStatus("VmRSS")
	if err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(3, 4))
	probes := rng.Perm(n)[:min(e.o.Probes, n)]
	mb := func(i int) mailbox {
		return mailbox{name: fmt.Sprintf("mbox_%d", i), host: host, port: port, user: user(i), password: password,
			caPEM: srv.caPEM, backlog: imapconf.BacklogNew}
	}
	// The probes' mailboxes get a flow each before they are watched.
	for k, i := range probes {
		if err := createIMAP(ctx, s.api, mb(i), false); err != nil {
			return err
		}
		if err := createFlow(ctx, s.api, fmt.Sprintf("probe_%d", k), mb(i).name, "Bench probe", e.hooks.url); err != nil {
			return err
		}
	}
	e.log("creating %d imap configurations", n)
	isProbe := map[int]bool{}
	for _, i := range probes {
		isProbe[i] = true
	}
	next := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	cctx, cancel := context.WithCancel(ctx)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				var err error
				if isProbe[i] {
					err = enableIMAP(cctx, s.api, mb(i))
				} else {
					err = createIMAP(cctx, s.api, mb(i), true)
				}
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					errMu.Unlock()
				}
			}
		})
	}
	created := time.Now()
feed:
	for i := range n {
		select {
		case next <- i:
		case <-cctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	cancel()
	if firstErr != nil {
		return firstErr
	}
	e.log("created in %v; waiting for %d sessions in IDLE", time.Since(created).Round(time.Millisecond), n)
	within := 2*time.Minute + time.Duration(n)*20*time.Millisecond
	deadline := time.Now().Add(within)
	for srv.idles.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d mailboxes in IDLE after %v: %w", srv.idles.Load(), n, within, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	allIdle := time.Since(created)
	e.log("all %d in IDLE after %v", n, allIdle.Round(time.Millisecond))

	// At rest: let the start's garbage be collected, then measure.
	settle := min(10*time.Second, e.o.Rest)
	time.Sleep(settle)
	rss, err := s.procStatus("VmRSS")
	if err != nil {
		return err
	}
	cpu0, err := s.cpuTime()
	if err != nil {
		return err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(e.o.Rest):
	}
	cpu1, err := s.cpuTime()
	if err != nil {
		return err
	}
	rest := time.Since(t0)
	rssAfter, err := s.procStatus("VmRSS")
	if err != nil {
		return err
	}
	if got := srv.idles.Load(); got != int64(n) {
		return fmt.Errorf("%d of %d mailboxes in IDLE after the rest", got, n)
	}
	gm, err := s.metrics(ctx, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
		"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes")
	if err != nil {
		return err
	}
	goroutines := int(gm["go_goroutines"])
	cpuShare := (cpu1 - cpu0).Seconds() / rest.Seconds()
	perBox := float64(rss-base) / float64(n)
	e.add(Result{Scenario: "3 idle mailboxes", Database: "sqlite", Metric: fmt.Sprintf("RSS with %d mailboxes in IDLE", n),
		Value: fmt.Sprintf("%s (%s with none: %.1f KB more per mailbox)", mib(rss), mib(base), perBox/1024),
		Goal:  "≤ 50 KB per mailbox, ≤ 500 MB for 10,000", Met: met(perBox <= 50*1024 && float64(rss) <= 500*(1<<20)*max(1, float64(n)/10000)),
		Note: fmt.Sprintf("all in IDLE %v after the first configuration was created; %d goroutines (%.1f per mailbox); "+
			"after the rest: RSS %s (%.1f KB more per mailbox), Go heap in use %s, free but not returned to the system %s, stacks %s",
			allIdle.Round(time.Second), goroutines, float64(goroutines)/float64(n),
			mib(rssAfter), float64(rssAfter-base)/float64(n)/1024,
			mib(int64(gm["go_memstats_heap_inuse_bytes"])),
			mib(int64(gm["go_memstats_heap_idle_bytes"]-gm["go_memstats_heap_released_bytes"])),
			mib(int64(gm["go_memstats_stack_inuse_bytes"])))})
	e.add(Result{Scenario: "3 idle mailboxes", Database: "sqlite", Metric: fmt.Sprintf("CPU at rest over %v", rest.Round(time.Second)),
		Value: fmt.Sprintf("%.2f %% of one core", 100*cpuShare), Goal: "≤ 5 % of one core", Met: met(cpuShare <= 0.05)})

	// Latency under load: bare clients idle on the probes' mailboxes too.
	var mu sync.Mutex
	seen := map[int]time.Time{}
	for k, i := range probes {
		c, err := dialIMAPS(srv.addr, srv.tls, user(i), password, &imapclient.Options{
			UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(m *imapclient.UnilateralDataMailbox) {
				if m.NumMessages != nil && *m.NumMessages > 0 {
					mu.Lock()
					if _, ok := seen[k]; !ok {
						seen[k] = time.Now()
					}
					mu.Unlock()
				}
			}},
		})
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			return fmt.Errorf("floor client: selecting: %w", err)
		}
		cmd, err := c.Idle()
		if err != nil {
			return fmt.Errorf("floor client: idling: %w", err)
		}
		defer cmd.Close()
	}
	time.Sleep(200 * time.Millisecond)
	e.hooks.reset()
	subject := func(k int) string { return fmt.Sprintf("Bench probe %d", k) }
	appended := make([]time.Time, len(probes))
	for k, i := range probes {
		if err := srv.deliver(user(i), smallMessage(subject(k), fmt.Sprintf("probe-%d", k))); err != nil {
			return err
		}
		appended[k] = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	if err := e.hooks.waitRuns(ctx, len(probes), 30*time.Second); err != nil {
		return err
	}
	var lat, flo []time.Duration
	var errs []error
	for k := range probes {
		at, ok := e.hooks.subjectAt(subject(k))
		mu.Lock()
		ft, fok := seen[k]
		mu.Unlock()
		if !ok || !fok {
			errs = append(errs, fmt.Errorf("probe %d: webhook %v, floor client %v", k, ok, fok))
			continue
		}
		lat, flo = append(lat, at.Sub(appended[k])), append(flo, ft.Sub(appended[k]))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	e.add(Result{Scenario: "3 idle mailboxes", Database: "sqlite",
		Metric: fmt.Sprintf("latency of %d messages to random mailboxes under that load", len(probes)),
		Value:  quantiles(lat), Floor: quantiles(flo) + " (bare IDLE client on the same mailbox)"})
	return nil
}
