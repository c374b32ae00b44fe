package imapsource

import (
	"context"
	"errors"
	"fmt"
	"time"
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

func (c *Conn) waitIdle(ctx context.Context, maxWait time.Duration) error {
	stopGuard := c.guard(ctx, c.timeout)
	idle, err := c.client.Idle()
	stopGuard()
	if err != nil {
		return &StepError{Step: StepWait, Err: fmt.Errorf("starting idle: %w", c.cause(err))}
	}
	c.log.Debug("imap idling", "maxWait", maxWait)

	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	var waitErr error
	select {
	case <-c.newMail:
		c.log.Debug("imap new mail")
	case <-timer.C:
	case <-ctx.Done():
		waitErr = context.Cause(ctx)
	case <-c.client.Closed():
		waitErr = c.cause(nil)
	}
	if waitErr != nil {
		// The connection is of no further use while a command is
		// outstanding: close it rather than wait for the server.
		c.abort(waitErr)
		_ = idle.Close()
		return &StepError{Step: StepWait, Err: waitErr}
	}

	// DONE, then the tagged OK of IDLE.
	stopGuard = c.guard(ctx, c.timeout)
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
