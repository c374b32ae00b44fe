package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
)

// bigConcurrent is how many mailboxes receive a big message at once in
// scenario 5's second case, each a message of half the size cap.
const bigConcurrent = 4

// big is scenario 5: the service's peak RSS growth while it records big
// messages, read from /proc/PID/status (VmHWM, reset before through
// clear_refs, against VmRSS before). The size cap is set to BigSize, so
// that three cases are measured: one message of exactly the cap (stored
// whole), one a fifth bigger (kept as its header only), and, on a fresh
// service, four mailboxes each receiving a message of half the cap at the
// same moment (25 MB each at the default 50 MB).
func big(ctx context.Context, e *env) error {
	if err := bigSingle(ctx, e); err != nil {
		return err
	}
	return bigFour(ctx, e)
}

// bigSetup is a fresh service with the size cap BigSize watching one
// Dovecot mailbox per name, each with a flow on subjects "Bench big", and a
// logged-in client per mailbox to append with. close stops it all.
type bigSetup struct {
	s       *service
	db      *sql.DB
	clients []*imapclient.Client
	close   func()
}

func newBigSetup(ctx context.Context, e *env, names ...string) (_ *bigSetup, err error) {
	d := e.dovecot
	const password = "bench-big-pw"
	b := &bigSetup{}
	var closers []func()
	b.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	addrs := make([]string, len(names))
	for i, name := range names {
		if addrs[i], err = d.NewUser(name, password); err != nil {
			return nil, err
		}
	}
	s, err := e.startService(ctx, ScenarioBig, e.dbs[0], "-size-cap", strconv.FormatInt(e.o.BigSize, 10))
	if err != nil {
		return nil, err
	}
	b.s = s
	closers = append(closers, func() {
		if err := s.close(); err != nil {
			e.log("stopping the service: %v", err)
		}
	})
	if b.db, err = s.db(); err != nil {
		return nil, err
	}
	closers = append(closers, func() { b.db.Close() })
	for i, name := range names {
		mb := mailbox{name: name, host: d.Host, port: d.IMAPSPort, user: addrs[i], password: password, caPEM: d.CACertPEM,
			backlog: imapconf.BacklogNew}
		if err := createIMAP(ctx, s.api, mb, true); err != nil {
			return nil, err
		}
		if err := createFlow(ctx, s.api, name, mb.name, "Bench big", e.hooks.url); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		if err := waitState(ctx, s.api, name, imapconf.StateIdle, 30*time.Second); err != nil {
			return nil, err
		}
		app, err := dialIMAPS(d.Addr(d.IMAPSPort), d.TLSConfig(), addrs[i], password, nil)
		if err != nil {
			return nil, err
		}
		b.clients = append(b.clients, app)
		closers = append(closers, func() { app.Close() })
	}
	return b, nil
}

// peak measures the service's peak RSS growth while do runs: it lets the
// service settle, reads VmRSS, resets the peak, runs do, and reads VmHWM.
func (b *bigSetup) peak(do func() error) (before, peak int64, took time.Duration, err error) {
	time.Sleep(2 * time.Second) // let the service settle
	if before, err = b.s.procStatus("VmRSS"); err != nil {
		return 0, 0, 0, err
	}
	if err := b.s.resetPeak(); err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if err := do(); err != nil {
		return 0, 0, 0, err
	}
	took = time.Since(start)
	if peak, err = b.s.procStatus("VmHWM"); err != nil {
		return 0, 0, 0, err
	}
	return before, peak, took, nil
}

// checkRecorded checks that the message of subject was recorded, whole or
// as its header only.
func (b *bigSetup) checkRecorded(ctx context.Context, subject string, size, sizeCap int64, whole bool) error {
	var tooLarge bool
	if err := b.db.QueryRowContext(ctx, "SELECT too_large FROM messages WHERE subject = $1", subject).Scan(&tooLarge); err != nil {
		return fmt.Errorf("reading the record of %q: %w", subject, err)
	}
	if tooLarge == whole {
		return fmt.Errorf("message of %d bytes with a cap of %d: too_large %v", size, sizeCap, tooLarge)
	}
	return nil
}

// bigSingle measures one message at the size cap, then one over it.
func bigSingle(ctx context.Context, e *env) error {
	size := e.o.BigSize
	b, err := newBigSetup(ctx, e, "big")
	if err != nil {
		return err
	}
	defer b.close()
	e.hooks.reset()
	for k, c := range []struct {
		size  int64
		what  string
		whole bool
	}{
		{size, "at the size cap, stored whole", true},
		{size + size/5, "over the size cap, header kept", false},
	} {
		subject := fmt.Sprintf("Bench big %d", k)
		raw := bigMessage(c.size, subject, fmt.Sprintf("big-%d", k))
		before, peak, took, err := b.peak(func() error {
			if err := appendMessage(b.clients[0], raw); err != nil {
				return err
			}
			return e.hooks.waitRuns(ctx, k+1, 2*time.Minute)
		})
		if err != nil {
			return err
		}
		if err := b.checkRecorded(ctx, subject, c.size, size, c.whole); err != nil {
			return err
		}
		growth := peak - before
		e.add(Result{Scenario: "5 big message", Database: "sqlite",
			Metric: fmt.Sprintf("peak RSS growth, %s (%s)", c.what, mib(int64(len(raw)))),
			Value:  fmt.Sprintf("%s (RSS %s before, peak %s; append → webhook %v)", mib(growth), mib(before), mib(peak), took.Round(time.Millisecond)),
			Goal:   "≤ 20 MB", Met: met(growth <= 20<<20)})
	}
	return nil
}

// bigFour measures bigConcurrent mailboxes each receiving a message of half
// the size cap at the same moment (appended in parallel), on a fresh
// service: the peak RSS growth until the last webhook, and the time from
// the start of the appends to each webhook.
func bigFour(ctx context.Context, e *env) error {
	size := e.o.BigSize / 2
	names := make([]string, bigConcurrent)
	for i := range names {
		names[i] = fmt.Sprintf("big4_%d", i)
	}
	b, err := newBigSetup(ctx, e, names...)
	if err != nil {
		return err
	}
	defer b.close()
	e.hooks.reset()
	raws := make([][]byte, len(names))
	subjects := make([]string, len(names))
	for i := range names {
		subjects[i] = fmt.Sprintf("Bench big four %d", i)
		raws[i] = bigMessage(size, subjects[i], fmt.Sprintf("big4-%d", i))
	}
	var start time.Time
	before, peak, took, err := b.peak(func() error {
		start = time.Now()
		errs := make([]error, len(names))
		var wg sync.WaitGroup
		for i := range names {
			wg.Go(func() { errs[i] = appendMessage(b.clients[i], raws[i]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return e.hooks.waitRuns(ctx, len(names), 4*time.Minute)
	})
	if err != nil {
		return err
	}
	var lat []time.Duration
	for _, subject := range subjects {
		if err := b.checkRecorded(ctx, subject, size, e.o.BigSize, true); err != nil {
			return err
		}
		at, ok := e.hooks.subjectAt(subject)
		if !ok {
			return fmt.Errorf("no webhook for %q", subject)
		}
		lat = append(lat, at.Sub(start))
	}
	s := sorted(lat)
	growth := peak - before
	e.add(Result{Scenario: "5 big message", Database: "sqlite",
		Metric: fmt.Sprintf("peak RSS growth, %d mailboxes receiving %s each at once, stored whole", len(names), mib(int64(len(raws[0])))),
		Value: fmt.Sprintf("%s (RSS %s before, peak %s; appends started → webhooks %v first, %v last; all done %v)",
			mib(growth), mib(before), mib(peak), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), took.Round(time.Millisecond)),
		Goal: "≤ 60 MB", Met: met(growth <= 60<<20)})
	return nil
}
