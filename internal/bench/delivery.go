package bench

import (
	"context"
	"fmt"
	"time"
)

// delivery is scenario 4: N runs are queued in the service's database
// before it starts; the listener answers 200 at once; runs delivered per
// second, on each database.
func delivery(ctx context.Context, e *env) error {
	for _, db := range e.dbs {
		if err := deliveryOn(ctx, e, db); err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
	}
	return nil
}

func deliveryOn(ctx context.Context, e *env, db database) error {
	n := e.o.Runs
	s, err := newService(ctx, e.o.Binary, e.work, db, e.profileFlags(ScenarioDelivery, db)...)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	e.log("queueing %d runs on %s", n, db.name)
	if err := queueFlows(ctx, s, []string{e.hooks.url}, n); err != nil {
		return err
	}
	e.hooks.reset()
	start := time.Now()
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := e.hooks.waitRuns(ctx, n, 2*time.Minute+time.Duration(n)*10*time.Millisecond); err != nil {
		return err
	}
	first, last := e.hooks.span()
	dbh, err := s.db()
	if err != nil {
		return err
	}
	defer dbh.Close()
	// The last attempts may be recorded a moment after their webhook.
	if _, err := waitCount(ctx, dbh, "SELECT COUNT(*) FROM runs WHERE status = 'delivered'", n, 20*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	var attempts int
	if err := dbh.QueryRowContext(ctx, "SELECT COUNT(*) FROM run_attempts").Scan(&attempts); err != nil {
		return fmt.Errorf("counting attempts: %w", err)
	}
	if got, requests := e.hooks.count(); attempts != requests || got != n {
		return fmt.Errorf("%d attempts recorded for %d requests and %d runs, want one each", attempts, requests, got)
	}
	rate := float64(n-1) / last.Sub(first).Seconds()
	e.add(Result{Scenario: "4 delivery", Database: db.name, Metric: fmt.Sprintf("%d queued runs delivered", n),
		Value: fmt.Sprintf("%.0f runs/s", rate), Goal: "≥ 2,000 runs/s", Met: met(rate >= 2000),
		Note: fmt.Sprintf("first to last webhook %v (half of the runs after %v, 90 %% after %v, 99 %% after %v); %v from the service's start",
			last.Sub(first).Round(time.Millisecond), e.hooks.nth(n/2).Sub(first).Round(time.Millisecond),
			e.hooks.nth(n*9/10).Sub(first).Round(time.Millisecond), e.hooks.nth(n*99/100).Sub(first).Round(time.Millisecond),
			last.Sub(start).Round(time.Millisecond))})
	return nil
}
