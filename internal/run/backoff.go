package run

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoffFactor is how much longer each wait is than the one before.
const backoffFactor = 3

// Backoff returns the nominal wait after failed attempt n (1-based): base
// for the first, then three times longer each time, capped at max. With the
// defaults (30 s, 4 h) the waits are 30 s, 1.5 min, 4.5 min, 13.5 min,
// 40.5 min, 2 h 1.5 min, then 4 h: 12 attempts span about 23 hours.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= backoffFactor
	}
	return min(d, max)
}

// Jitter spreads d uniformly over ±25 %, so that runs that failed together
// do not all come back together, while the expected total stays the same.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*3/4 + rand.N(d/2+1)
}

// RetryAfter reads the Retry-After header of resp at now: delay-seconds or
// an HTTP date. ok is false when there is none or it cannot be read.
func RetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(365*24*time.Hour/time.Second) {
			secs = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
