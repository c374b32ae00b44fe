// Package testwait is how tests wait: Until polls for something to happen
// within a bound, Never watches for something not to happen over a stated
// window. Tests use these instead of bare sleeps, so that a wait says what
// it waits for and how long, and ends as soon as it can.
package testwait

import (
	"testing"
	"time"
)

// Every is how often Until and Never look.
const Every = 10 * time.Millisecond

// Until calls check every Every until it returns nil, and fails t with
// check's last error when within has passed first.
func Until(t testing.TB, within time.Duration, check func() error) {
	t.Helper()
	if err := UntilErr(within, check); err != nil {
		t.Fatalf("after %v: %v", within, err)
	}
}

// UntilErr is Until for code that has no testing.TB at hand (a helper
// goroutine, a bench): it returns check's last error when within passed.
func UntilErr(within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(Every)
	}
}

// Never calls check every Every for window (at least twice: at once and at
// the end), and fails t as soon as check returns an error: the thing that
// must not happen did. window is the stated time in which it would have
// happened if it were going to.
func Never(t testing.TB, window time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(window)
	for {
		if err := check(); err != nil {
			t.Fatalf("within %v: %v", window, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		time.Sleep(min(Every, left))
	}
}
