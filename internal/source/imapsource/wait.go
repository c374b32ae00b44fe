package imapsource

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// WaitForMail waits until the server reports new mail in the selected
// folder, for at most maxWait (<= 0 means DefaultMaxWait), and then returns
// nil, as it does when maxWait has passed without news. The caller then
// reads with FetchAfter, which it must do in any case: a return is a hint,
// not a promise of new mail (any EXISTS response wakes it, including one
// that arrived during an earlier command, so that nothing is missed between
// a fetch and the wait).
//
// With IDLE it idles once; the caller re-issues it, about every 10 minutes
// as the server may drop a client idle for longer (imapclient itself only
// restarts IDLE after 28 minutes). Without IDLE it sends NOOP every
// pollInterval (<= 0 means DefaultPollInterval).
//
// It returns an error matching ErrClosed when the connection dies, and the
// context's error when ctx ends (the connection is then closed).
func (c *Conn) WaitForMail(ctx context.Context, maxWait, pollInterval time.Duration) error {
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	if pollInterval <= 0 {
		pollInterval = DefaultPollInterval
	}
	if err := c.alive(); err != nil {
		return &StepError{Step: StepWait, Err: err}
	}
	select {
	case <-c.newMail:
		return nil
	default:
	}
	if c.idle {
		return c.waitIdle(ctx, maxWait)
	}
	return c.waitPoll(ctx, maxWait, pollInterval)
}

// waitIdle idles once. It is where a watcher waits for its life, so the
// frames under the wait are kept small: starting and ending the IDLE
// (writing to the TLS connection, deep) are calls of their own, and the
// wait itself (idleFor) keeps little on the stack. The collector can then
// shrink the waiting goroutine's stack to 4 KB.
func (c *Conn) waitIdle(ctx context.Context, maxWait time.Duration) error {
	idle, err := c.startIdle(ctx, maxWait)
	if err != nil {
		return err
	}
	return c.endIdle(ctx, idle, c.idleFor(ctx, maxWait))
}

// startIdle sends IDLE and waits for the server's continuation.
//
//go:noinline
func (c *Conn) startIdle(ctx context.Context, maxWait time.Duration) (*imapclient.IdleCommand, error) {
	stopGuard := c.guard(ctx, c.timeout)
	idle, err := c.client.Idle()
	stopGuard()
	if err != nil {
		return nil, &StepError{Step: StepWait, Err: fmt.Errorf("starting idle: %w", c.cause(err))}
	}
	c.log.Debug("imap idling", "maxWait", maxWait)
	return idle, nil
}

// idleFor waits in IDLE for news of mail or maxWait; the error says why
// it stopped otherwise: ctx ended, or the connection closed.
func (c *Conn) idleFor(ctx context.Context, maxWait time.Duration) error {
	timer := time.NewTimer(maxWait)
	var err error
	select {
	case <-c.newMail:
	case <-timer.C:
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-c.client.Closed():
		err = c.cause(nil)
	}
	timer.Stop()
	return err
}

// endIdle ends idle, which stopped waiting with waitErr.
//
//go:noinline
func (c *Conn) endIdle(ctx context.Context, idle *imapclient.IdleCommand, waitErr error) error {
	if waitErr != nil {
		// The connection is of no further use while a command is
		// outstanding: close it rather than wait for the server.
		c.abort(waitErr)
		_ = idle.Close()
		return &StepError{Step: StepWait, Err: waitErr}
	}

	// DONE, then the tagged OK of IDLE.
	stopGuard := c.guard(ctx, c.timeout)
	defer stopGuard()
	if err := idle.Close(); err != nil {
		return &StepError{Step: StepWait, Err: fmt.Errorf("ending idle: %w", c.cause(err))}
	}
	if err := idle.Wait(); err != nil {
		return &StepError{Step: StepWait, Err: fmt.Errorf("ending idle: %w", c.cause(err))}
	}
	return nil
}

func (c *Conn) waitPoll(ctx context.Context, maxWait, pollInterval time.Duration) error {
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.newMail:
			return nil
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			err := context.Cause(ctx)
			c.abort(err)
			return &StepError{Step: StepWait, Err: err}
		case <-c.client.Closed():
			return &StepError{Step: StepWait, Err: c.cause(nil)}
		case <-ticker.C:
			if err := c.Noop(ctx); err != nil {
				var se *StepError
				if errors.As(err, &se) {
					err = se.Err
				}
				return &StepError{Step: StepWait, Err: err}
			}
		}
	}
}
