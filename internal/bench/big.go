package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"mailtrigger/internal/imapconf"
)

// big is scenario 5: the service's peak RSS growth while it records one big
// message, read from /proc/PID/status (VmHWM, reset before through
// clear_refs, against VmRSS before). The size cap is set to the message's
// size, so that two messages are measured: one of exactly the cap (stored
// whole) and one a fifth bigger (kept as its header only).
func big(ctx context.Context, e *env) error {
	size := e.o.BigSize
	d := e.dovecot
	const password = "bench-big-pw"
	addr, err := d.NewUser("big", password)
	if err != nil {
		return err
	}
	s, err := e.startService(ctx, ScenarioBig, e.dbs[0], "-size-cap", strconv.FormatInt(size, 10))
	if err != nil {
		return err
	}
	defer func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	}()
	dbh, err := s.db()
	if err != nil {
		return err
	}
	defer dbh.Close()
	mb := mailbox{name: "big", host: d.Host, port: d.IMAPSPort, user: addr, password: password, caPEM: d.CACertPEM,
		backlog: imapconf.BacklogNew}
	if err := createIMAP(ctx, s.api, mb, true); err != nil {
		return err
	}
	if err := createFlow(ctx, s.api, "big", mb.name, "Bench big", e.hooks.url); err != nil {
		return err
	}
	if err := waitState(ctx, s.api, mb.name, imapconf.StateIdle, 30*time.Second); err != nil {
		return err
	}
	app, err := dialIMAPS(d.Addr(d.IMAPSPort), d.TLSConfig(), addr, password, nil)
	if err != nil {
		return err
	}
	defer app.Close()
	e.hooks.reset()

	for k, c := range []struct {
		size  int64
		what  string
		whole bool
	}{
		{size, "at the size cap, stored whole", true},
		{size + size/5, "over the size cap, header kept", false},
	} {
		raw := bigMessage(c.size, fmt.Sprintf("Bench big %d", k), fmt.Sprintf("big-%d", k))
		time.Sleep(2 * time.Second) // let the service settle
		before, err := s.procStatus("VmRSS")
		if err != nil {
			return err
		}
		if err := s.resetPeak(); err != nil {
			return err
		}
		start := time.Now()
		if err := appendMessage(app, raw); err != nil {
			return err
		}
		if err := e.hooks.waitRuns(ctx, k+1, 2*time.Minute); err != nil {
			return err
		}
		took := time.Since(start)
		peak, err := s.procStatus("VmHWM")
		if err != nil {
			return err
		}
		var tooLarge bool
		if err := dbh.QueryRowContext(ctx, "SELECT too_large FROM messages WHERE subject = $1",
			fmt.Sprintf("Bench big %d", k)).Scan(&tooLarge); err != nil {
			return fmt.Errorf("reading the big message's record: %w", err)
		}
		if tooLarge == c.whole {
			return fmt.Errorf("message of %d bytes with a cap of %d: too_large %v", c.size, size, tooLarge)
		}
		growth := peak - before
		e.add(Result{Scenario: "5 big message", Database: "sqlite",
			Metric: fmt.Sprintf("peak RSS growth, %s (%s)", c.what, mib(int64(len(raw)))),
			Value:  fmt.Sprintf("%s (RSS %s before, peak %s; append → webhook %v)", mib(growth), mib(before), mib(peak), took.Round(time.Millisecond)),
			Goal:   "≤ 20 MB", Met: met(growth <= 20<<20)})
	}
	return nil
}
