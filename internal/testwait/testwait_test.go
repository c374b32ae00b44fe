package testwait

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsWhenTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	Until(t, 5*time.Second, func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n.Load() != 3 {
		t.Errorf("check called %d times, want 3", n.Load())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Until took %v for three looks", d)
	}
}

func TestUntilErrGivesTheLastError(t *testing.T) {
	err := UntilErr(30*time.Millisecond, func() error { return errors.New("still 2 runs") })
	if err == nil || err.Error() != "still 2 runs" {
		t.Errorf("got %v, want the check's error", err)
	}
}

func TestNeverWatchesTheWholeWindow(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	Never(t, 50*time.Millisecond, func() error { n.Add(1); return nil })
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Never returned after %v, before its window of 50ms", d)
	}
	if n.Load() < 2 {
		t.Errorf("check called %d times, want at least 2", n.Load())
	}
}
