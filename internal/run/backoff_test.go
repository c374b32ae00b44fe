package run

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/flow"
)

func TestBackoffSchedule(t *testing.T) {
	base, max := 30*time.Second, 4*time.Hour
	want := []time.Duration{30 * time.Second, 90 * time.Second, 270 * time.Second, 810 * time.Second, 2430 * time.Second,
		7290 * time.Second, max, max, max, max, max, max}
	var total time.Duration
	for n := 1; n <= len(want); n++ {
		got := Backoff(n, base, max)
		if got != want[n-1] {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want[n-1])
		}
		if n < 12 { // waits between the 12 default attempts
			total += got
		}
	}
	// The docs promise about 23 hours from the first to the 12th attempt.
	if total < 22*time.Hour || total > 24*time.Hour {
		t.Errorf("12 attempts span %v, want about 23 h", total)
	}
	if got := Backoff(1000, base, max); got != max {
		t.Errorf("Backoff(1000) = %v, want %v", got, max)
	}
	for range 1000 {
		if j := Jitter(time.Minute); j < 45*time.Second || j > 75*time.Second {
			t.Fatalf("Jitter(1m) = %v, want within ±25 %%", j)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, value string
		want        time.Duration
		ok          bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"spaces", " 7 ", 7 * time.Second, true},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"negative", "-5", 0, false},
		{"garbage", "soon", 0, false},
		{"absent", "", 0, false},
		{"huge", "99999999999999", 365 * 24 * time.Hour, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.value != "" {
				h.Set("Retry-After", c.value)
			}
			got, ok := RetryAfter(h, now)
			if got != c.want || ok != c.ok {
				t.Errorf("got %v %v, want %v %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// parseActivities reads a definition with the given activities (JSON) as
// the worker does.
func parseActivities(acts string, defaultTimeout time.Duration) ([]activity, error) {
	f, err := flow.Parse(`{"start":{"emailTrigger":{"imap":"inbox","subject":"Invoice"}},"activities":[`+acts+`]}`, nil)
	if err != nil {
		return nil, err
	}
	return activities(f, defaultTimeout), nil
}

func TestEndpoint(t *testing.T) {
	cases := map[string]string{
		"https://Hooks.Example.com/a?b": "https://hooks.example.com:443",
		"http://example.com/":           "http://example.com:80",
		"HTTP://example.com:8080/x":     "http://example.com:8080",
		"http://[::1]:9000/":            "http://[::1]:9000",
	}
	for in, want := range cases {
		acts, err := parseActivities(`{"type":"webhook","url":"`+in+`"}`, time.Second)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := acts[0].endpoint; got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

// TestTimeouts: the worker takes an activity's timeout by flow.Build's rule
// (a duration from 1s to 2m); a number of seconds, which it once took, is
// refused like any other value Build refuses.
func TestTimeouts(t *testing.T) {
	cases := []struct {
		raw  string
		want time.Duration
		ok   bool
	}{
		{`"10s"`, 10 * time.Second, true},
		{`"1m30s"`, 90 * time.Second, true},
		{`"1s"`, time.Second, true},
		{`"2m"`, 2 * time.Minute, true},
		{`""`, 30 * time.Second, true},
		{`null`, 30 * time.Second, true},
		{`15`, 0, false},
		{`0.5`, 0, false},
		{`"500ms"`, 0, false},
		{`"2m1s"`, 0, false},
		{`"0s"`, 0, false},
		{`"soon"`, 0, false},
		{`true`, 0, false},
	}
	for _, c := range cases {
		acts, err := parseActivities(`{"type":"webhook","url":"http://x","timeout":`+c.raw+`}`, 30*time.Second)
		if (err == nil) != c.ok {
			t.Errorf("%s: got %v, want ok %v", c.raw, err, c.ok)
			continue
		}
		if !c.ok && !strings.Contains(err.Error(), "activities[0].timeout: must be a duration from 1s to 2m") {
			t.Errorf("%s: got %v, want it to name the timeout and the rule", c.raw, err)
		}
		if c.ok && acts[0].timeout != c.want {
			t.Errorf("%s: got %v, want %v", c.raw, acts[0].timeout, c.want)
		}
	}
}
