package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
)

// latency is scenario 1: messages appended one at a time, with random gaps,
// to an INBOX that the service watches in IDLE and a bare go-imap client
// idles on too; the service's latency is webhook received − APPEND
// completed, the floor's is its EXISTS − APPEND completed.
func latency(ctx context.Context, e *env) error {
	n := e.o.LatencyMessages
	d := e.dovecot
	const password = "bench-latency-pw"
	addr, err := d.NewUser("latency", password)
	if err != nil {
		return err
	}
	s, err := e.startService(ctx, ScenarioLatency, e.dbs[0])
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	mb := mailbox{name: "latency", host: d.Host, port: d.IMAPSPort, user: addr, password: password, caPEM: d.CACertPEM,
		backlog: imapconf.BacklogNew}
	if err := createIMAP(ctx, s.api, mb, true); err != nil {
		return err
	}
	if err := createFlow(ctx, s.api, "latency", mb.name, "Bench latency", e.hooks.url); err != nil {
		return err
	}
	if err := waitState(ctx, s.api, mb.name, imapconf.StateIdle, 30*time.Second); err != nil {
		return err
	}

	// The floor: a bare client in IDLE, noting when each EXISTS came.
	var mu sync.Mutex
	var exists []time.Time // exists[k] is when the count reached k+1
	floor, err := dialIMAPS(d.Addr(d.IMAPSPort), d.TLSConfig(), addr, password, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(m *imapclient.UnilateralDataMailbox) {
			if m.NumMessages == nil {
				return
			}
			at := time.Now()
			mu.Lock()
			for len(exists) < int(*m.NumMessages) {
				exists = append(exists, at)
			}
			mu.Unlock()
		}},
	})
	if err != nil {
		return err
	}
	defer floor.Close()
	if _, err := floor.Select("INBOX", nil).Wait(); err != nil {
		return fmt.Errorf("floor client: selecting INBOX: %w", err)
	}
	idle, err := floor.Idle()
	if err != nil {
		return fmt.Errorf("floor client: idling: %w", err)
	}
	defer idle.Close()

	app, err := dialIMAPS(d.Addr(d.IMAPSPort), d.TLSConfig(), addr, password, nil)
	if err != nil {
		return err
	}
	defer app.Close()

	e.hooks.reset()
	appended := make([]time.Time, n)
	subject := func(i int) string { return fmt.Sprintf("Bench latency %d", i) }
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		if err := appendMessage(app, smallMessage(subject(i), fmt.Sprintf("latency-%d", i))); err != nil {
			return err
		}
		appended[i] = time.Now()
		gap := e.o.GapMin + time.Duration(rng.Int64N(int64(e.o.GapMax-e.o.GapMin)+1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gap):
		}
	}
	if err := e.hooks.waitRuns(ctx, n, 30*time.Second); err != nil {
		return err
	}
	// The floor's last EXISTS may come a moment after the last webhook.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := len(exists)
		mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("floor client saw %d of %d messages", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	var lat, flo, excess []time.Duration
	var errs []error
	for i := range n {
		at, ok := e.hooks.subjectAt(subject(i))
		if !ok {
			errs = append(errs, fmt.Errorf("no webhook for message %d", i))
			continue
		}
		lat = append(lat, at.Sub(appended[i]))
		mu.Lock()
		flo = append(flo, exists[i].Sub(appended[i]))
		excess = append(excess, at.Sub(exists[i]))
		mu.Unlock()
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	read, err := readTimes(ctx, s)
	if err != nil {
		return err
	}
	var toRead, toHook []time.Duration
	for i := range n {
		at, _ := e.hooks.subjectAt(subject(i))
		r, ok := read[subject(i)]
		if !ok {
			return fmt.Errorf("message %d is not recorded", i)
		}
		mu.Lock()
		toRead = append(toRead, r.Sub(exists[i]))
		mu.Unlock()
		toHook = append(toHook, at.Sub(r))
	}
	if runs, requests := e.hooks.count(); requests != runs {
		return fmt.Errorf("%d webhook requests for %d runs: duplicates", requests, runs)
	}
	ls, fs := sorted(lat), sorted(flo)
	p50, p99 := percentile(ls, 50)-percentile(fs, 50), percentile(ls, 99)-percentile(fs, 99)
	e.add(Result{Scenario: "1 trigger latency", Database: "sqlite", Metric: fmt.Sprintf("APPEND → webhook, %d messages", n),
		Value: quantiles(lat), Floor: quantiles(flo) + " (bare IDLE client, APPEND → EXISTS)",
		Goal: "p50 ≤ floor + 5 ms, p99 ≤ floor + 20 ms", Met: met(p50 <= 5*time.Millisecond && p99 <= 20*time.Millisecond),
		Note: fmt.Sprintf("over the floor: p50 +%s, p99 +%s", ms(p50), ms(p99))})
	e.add(Result{Scenario: "1 trigger latency", Database: "sqlite", Metric: "per message: webhook − the floor client's EXISTS",
		Value: quantiles(excess), Note: "the two connections are notified by two Dovecot processes, each on its own timer: " +
			"a message's EXISTS can reach one before the other, so this can be negative"})
	e.add(Result{Scenario: "1 trigger latency", Database: "sqlite", Metric: "per message: read by the service − the floor client's EXISTS",
		Value: quantiles(toRead), Note: "when the service read the message (received_at) against the floor client's EXISTS"})
	e.add(Result{Scenario: "1 trigger latency", Database: "sqlite", Metric: "per message: webhook − read by the service",
		Value: quantiles(toHook)})
	return nil
}

// readTimes returns when the service read each message (received_at), by
// subject.
func readTimes(ctx context.Context, s *service) (map[string]time.Time, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT subject, received_at FROM messages")
	if err != nil {
		return nil, fmt.Errorf("reading when messages were read: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var subject string
		var at time.Time
		if err := rows.Scan(&subject, &at); err != nil {
			return nil, fmt.Errorf("reading when messages were read: %w", err)
		}
		out[subject] = at
	}
	return out, rows.Err()
}
