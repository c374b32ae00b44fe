package config

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"mailtrigger/internal/testwait"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live int64
		want int
	}{
		{0, 100},
		{10 * mib, 100},  // the floor is more than Go's default
		{64 * mib, 100},  // equal
		{128 * mib, 50},  // the floor
		{256 * mib, 25},  // the floor is the share
		{1024 * mib, 25}, // the share
		{200 * mib, 32},  // 64/200, rounded up
		{4096 * mib, 25}, // never below the share
	} {
		if got := GCPercent(c.live, GCHeadroomMin, GCHeadroomShare); got != c.want {
			t.Errorf("GCPercent(%d MiB) = %d, want %d", c.live/mib, got, c.want)
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestTuneGC: GOGC follows what is live, collection after collection,
// and goes back to 100 when the tuning stops.
func TestTuneGC(t *testing.T) {
	if on, _ := TuneGC(func(k string) string { return map[string]string{"GOGC": "150"}[k] }); on {
		t.Fatal("tuning with GOGC set")
	}
	if gogc() != 100 {
		t.Skipf("GOGC is %d in this test run", gogc())
	}
	tuner := startGCTuner(4<<20, 0.25) // a floor below what the live slice below holds
	t.Cleanup(tuner.stop)
	collectUntil := func(want int) {
		t.Helper()
		testwait.Until(t, 10*time.Second, func() error {
			runtime.GC()
			if got := gogc(); got != want {
				return fmt.Errorf("GOGC %d, want %d", got, want)
			}
			return nil
		})
	}
	live := make([]byte, 64<<20)
	collectUntil(25)
	runtime.KeepAlive(live)
	live = nil
	collectUntil(100)
	live = make([]byte, 64<<20)
	collectUntil(25)
	runtime.KeepAlive(live)
	tuner.stop()
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after stop, want 100", got)
	}
}
