package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
)

// remote is scenario 6: N runs queued for an endpoint that holds each
// answer for a set delay, as a remote one would; runs delivered per second
// beside the ideal (the per-endpoint ceiling ÷ the delay), the limit the
// service's controller settled on, and the requests in flight over time.
func remote(ctx context.Context, e *env) error {
	for _, db := range e.dbs {
		for _, d := range e.o.Delays {
			for _, n := range e.o.RemoteRuns {
				if err := remoteOn(ctx, e, db, d, n); err != nil {
					return fmt.Errorf("%s, %v, %d runs: %w", db.name, d, n, err)
				}
			}
		}
	}
	return nil
}

func remoteOn(ctx context.Context, e *env, db database, delay time.Duration, n int) error {
	ep, err := newEndpoint(delay, 0)
	if err != nil {
		return err
	}
	defer ep.close()
	s, err := newService(ctx, e.o.Binary, e.work, db, e.profileFlags(ScenarioRemote, db)...)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	e.log("queueing %d runs on %s for an endpoint answering in %v", n, db.name, delay)
	if err := queueFlows(ctx, s, []string{ep.url}, n); err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	ideal := float64(run.DefaultCeiling) / delay.Seconds()
	if err := ep.waitRuns(ctx, n, 2*time.Minute+time.Duration(float64(n)/ideal*10*float64(time.Second))); err != nil {
		return err
	}
	limit := "unknown"
	if l, err := s.endpointLimit(ctx, ep.root()); err == nil {
		limit = strconv.Itoa(l) // a build before issue 13 (bench -service) has none
	}
	st := ep.stats()
	if err := st.check(); err != nil {
		return err
	}
	if err := checkRecorded(ctx, s, n, st.requests); err != nil {
		return err
	}
	rate := float64(n-1) / st.last.Sub(st.first).Seconds()
	goal, ok := "", (*bool)(nil)
	switch {
	case delay == 50*time.Millisecond && db.name == "sqlite":
		goal, ok = "≥ 600 runs/s", met(rate >= 600)
	case delay == 50*time.Millisecond:
		goal, ok = "≥ 400 runs/s", met(rate >= 400)
	case delay == 200*time.Millisecond:
		goal, ok = "≥ 250 runs/s", met(rate >= 250)
	}
	e.add(Result{Scenario: "6 remote endpoint", Database: db.name,
		Metric: fmt.Sprintf("%d queued runs, answers held %v", n, delay),
		Value:  fmt.Sprintf("%.0f runs/s (%.0f %% of ideal); limit settled at %s, at most %d in flight", rate, rate/ideal*100, limit, st.maxInflight),
		Floor:  fmt.Sprintf("ideal %.0f runs/s (ceiling %d ÷ %v)", ideal, run.DefaultCeiling, delay),
		Goal:   goal, Met: ok,
		Note: fmt.Sprintf("first to last webhook %v; requests in flight: %s", st.last.Sub(st.first).Round(time.Millisecond),
			inflightChart(st.samples, 20))})
	return nil
}

// retryAfter is scenario 7: an endpoint that answers 503 with Retry-After: 1
// to one request in five. Every run is delivered in the end, and no request
// comes while a Retry-After runs.
func retryAfter(ctx context.Context, e *env) error {
	for _, db := range e.dbs {
		if err := retryAfterOn(ctx, e, db); err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
	}
	return nil
}

func retryAfterOn(ctx context.Context, e *env, db database) error {
	n := e.o.RetryRuns
	ep, err := newEndpoint(0, 5)
	if err != nil {
		return err
	}
	defer ep.close()
	s, err := newService(ctx, e.o.Binary, e.work, db, e.profileFlags(ScenarioRetryAfter, db)...)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	e.log("queueing %d runs on %s for an endpoint answering 503 + Retry-After: 1 to one request in five", n, db.name)
	if err := queueFlows(ctx, s, []string{ep.url}, n); err != nil {
		return err
	}
	start := time.Now()
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := ep.waitRuns(ctx, n, 5*time.Minute+time.Duration(n)*time.Second); err != nil {
		return err
	}
	took := time.Since(start)
	st := ep.stats()
	if err := st.check(); err != nil {
		return err
	}
	if err := checkRecorded(ctx, s, n, st.requests); err != nil {
		return err
	}
	e.add(Result{Scenario: "7 Retry-After", Database: db.name,
		Metric: fmt.Sprintf("%d queued runs, 503 + Retry-After: 1 to 1 request in 5", n),
		Value: fmt.Sprintf("all delivered in %v (%.1f runs/s); %d requests, %d answered 503; %d inside a Retry-After",
			took.Round(time.Millisecond), float64(n)/took.Seconds(), st.requests, st.fails, st.early),
		Goal: "all delivered, none inside a Retry-After", Met: met(st.early == 0 && st.runs == n),
		Note: fmt.Sprintf("a request counts as inside when it came more than %v after a 503 and less than 1 s after it; requests in flight: %s",
			retryGrace, inflightChart(st.samples, 20))})
	return nil
}

// fairness is scenario 8: a flow whose endpoint answers in SlowDelay and one
// whose endpoint answers at once, FairRuns runs each queued (interleaved):
// the fast flow's runs are delivered in the time they take alone.
func fairness(ctx context.Context, e *env) error {
	for _, db := range e.dbs {
		if err := fairnessOn(ctx, e, db); err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
	}
	return nil
}

func fairnessOn(ctx context.Context, e *env, db database) error {
	n := e.o.FairRuns
	// The fast flow alone takes well under a second, so one measurement is
	// at the mercy of a slow claim or a busy core: alone and beside are
	// measured in turn FairRepeat times and their medians compared.
	var alone, mixed []time.Duration
	for range max(e.o.FairRepeat, 1) {
		a, err := fairRun(ctx, e, db, n, false)
		if err != nil {
			return fmt.Errorf("the fast flow alone: %w", err)
		}
		m, err := fairRun(ctx, e, db, n, true)
		if err != nil {
			return fmt.Errorf("beside the slow flow: %w", err)
		}
		alone, mixed = append(alone, a), append(mixed, m)
	}
	a, m := percentile(sorted(alone), 50), percentile(sorted(mixed), 50)
	e.add(Result{Scenario: "8 fairness", Database: db.name,
		Metric: fmt.Sprintf("%d runs to an endpoint answering at once, beside %d to one answering in %v", n, n, e.o.SlowDelay),
		Value:  fmt.Sprintf("%v (%+.0f %%)", m.Round(time.Millisecond), (m.Seconds()/a.Seconds()-1)*100),
		Floor:  fmt.Sprintf("%v alone", a.Round(time.Millisecond)),
		Goal:   "within 20 % of alone", Met: met(m.Seconds() <= a.Seconds()*1.2),
		Note: fmt.Sprintf("medians of %d measurements each (alone %v, beside %v), from the service's first webhook to the fast flow's last; every run of both flows delivered once",
			len(alone), roundAll(alone), roundAll(mixed))})
	return nil
}

// roundAll rounds each of ds to the millisecond, for a note.
func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// fairRun queues n runs for a fast endpoint (and, with slow, n for a slow
// one, interleaved), starts a service and returns how long from its first
// webhook to the fast endpoint's last, once every run is delivered.
func fairRun(ctx context.Context, e *env, db database, n int, slow bool) (time.Duration, error) {
	fast, err := newEndpoint(0, 0)
	if err != nil {
		return 0, err
	}
	defer fast.close()
	eps, urls := []*endpoint{fast}, []string{fast.url}
	if slow {
		sl, err := newEndpoint(e.o.SlowDelay, 0)
		if err != nil {
			return 0, err
		}
		defer sl.close()
		eps, urls = append(eps, sl), append(urls, sl.url)
	}
	s, err := newService(ctx, e.o.Binary, e.work, db, e.profileFlags(ScenarioFairness, db)...)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	e.log("queueing %d runs each for %d endpoints on %s", n, len(urls), db.name)
	if err := queueFlows(ctx, s, urls, n); err != nil {
		return 0, err
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	within := 2*time.Minute + time.Duration(n)*10*time.Millisecond
	if err := fast.waitRuns(ctx, n, within); err != nil {
		return 0, err
	}
	first, requests := fast.stats().arrived, 0
	for _, ep := range eps[1:] {
		if err := ep.waitRuns(ctx, n, within+time.Duration(n/run.DefaultCeiling+1)*e.o.SlowDelay*2); err != nil {
			return 0, err
		}
		if f := ep.stats().arrived; f.Before(first) {
			first = f
		}
	}
	for _, ep := range eps {
		st := ep.stats()
		if err := st.check(); err != nil {
			return 0, err
		}
		requests += st.requests
	}
	if err := checkRecorded(ctx, s, n*len(eps), requests); err != nil {
		return 0, err
	}
	return fast.stats().last.Sub(first), nil
}

// checkRecorded checks that the service's database has runs delivered and
// one attempt recorded per request.
func checkRecorded(ctx context.Context, s *service, runs, requests int) error {
	dbh, err := s.db()
	if err != nil {
		return err
	}
	defer dbh.Close()
	// The last attempts may be recorded a moment after their webhook.
	if _, err := waitCount(ctx, dbh, "SELECT COUNT(*) FROM runs WHERE status = 'delivered'", runs, 20*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	var attempts, total int
	if _, err := waitCount(ctx, dbh, "SELECT COUNT(*) FROM run_attempts", requests, 20*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	if err := dbh.QueryRowContext(ctx, "SELECT COUNT(*) FROM run_attempts").Scan(&attempts); err != nil {
		return fmt.Errorf("counting attempts: %w", err)
	}
	if err := dbh.QueryRowContext(ctx, "SELECT COUNT(*) FROM runs").Scan(&total); err != nil {
		return fmt.Errorf("counting runs: %w", err)
	}
	if attempts != requests || total != runs {
		return fmt.Errorf("%d attempts recorded for %d requests, %d runs for %d queued: want one each", attempts, requests, total, runs)
	}
	return nil
}

// endpointLimit reads the service's adaptive limit for endpoint root
// (scheme://host:port) from /metrics.
func (s *service) endpointLimit(ctx context.Context, root string) (int, error) {
	body, err := s.api.Get(ctx, "/metrics")
	if err != nil {
		return 0, fmt.Errorf("reading the service's metrics: %w", err)
	}
	prefix := `mailtrigger_webhook_endpoint_limit{endpoint="` + root + `"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing the endpoint limit %q: %w", v, err)
			}
			return int(f), nil
		}
	}
	return 0, fmt.Errorf("no mailtrigger_webhook_endpoint_limit for %s in the service's metrics", root)
}

// queueFlows records, in the service's own database and before it starts,
// a disabled mailbox, one flow per url and n messages per flow with one run
// each, the flows' runs interleaved in the queue, as ingest would have (for
// scenario 4 too, with one url).
func queueFlows(ctx context.Context, s *service, urls []string, n int) error {
	st, err := s.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	c := imapconf.Config{Name: "remote", ServerType: imapconf.ServerIMAPS, Type: imapconf.TypeGeneric, Enabled: false,
		Host: "127.0.0.1", Port: 993, Username: "remote@example.test", Password: "unused", Folder: "INBOX",
		TLS: "implicit", AfterProcessing: "none", PollInterval: 60, Backlog: imapconf.BacklogNew, Auth: "password"}
	if err := st.CreateIMAP(ctx, &c); err != nil {
		return fmt.Errorf("creating the mailbox: %w", err)
	}
	var flows []store.FlowRecord
	for i, u := range urls {
		name := fmt.Sprintf("remote_%d", i)
		def, err := json.Marshal(map[string]any{"name": name, "enabled": true,
			"start":      map[string]any{"emailTrigger": map[string]any{"imap": c.Name, "subject": "Remote", "match": "prefix"}},
			"activities": []any{map[string]any{"type": "webhook", "url": u}}})
		if err != nil {
			return err
		}
		f := store.FlowRecord{Name: name, IMAPID: c.ID, IMAPName: c.Name, Enabled: true, Definition: string(def),
			Secrets: []string{run.NewSecret()}}
		if err := st.CreateFlow(ctx, &f); err != nil {
			return fmt.Errorf("creating flow %s: %w", name, err)
		}
		flows = append(flows, f)
	}
	total := n * len(flows)
	uid := uint32(0)
	for left := total; left > 0; left -= 1000 {
		b := store.Batch{IMAPID: c.ID, IMAPName: c.Name}
		for range min(left, 1000) {
			uid++
			raw := smallMessage(fmt.Sprintf("Remote %d", uid), fmt.Sprintf("remote-%d", uid))
			b.Messages = append(b.Messages, store.Incoming{UID: uid, Raw: raw, Msg: mail.Parse(raw), Seen: time.Now()})
			b.Epoch, b.Checkpoint = 1, &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid}
		}
		if _, _, err := st.RecordBatch(ctx, b, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
			f := flows[int(in.UID)%len(flows)]
			r := store.Run{FlowID: f.ID, FlowName: f.Name, MessageID: id, IMAPName: f.IMAPName, ReceivedAt: in.Seen}
			_, err := tx.CreateRun(ctx, &r)
			return err
		}); err != nil {
			return fmt.Errorf("queueing runs: %w", err)
		}
	}
	return nil
}
