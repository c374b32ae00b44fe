package run

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"mailtrigger/internal/flow"
)

// activity is what delivery needs of one activity of a flow: the activity
// as flow.Parse read it (so by flow.Build's rules), its timeout and its
// endpoint.
type activity struct {
	flow.Activity
	timeout  time.Duration
	endpoint string // scheme://host:port, the unit of the per-endpoint limit
}

// caps are the activity's own limits on its endpoint (0: only the adaptive
// limit and its ceiling).
func (a activity) caps() caps { return caps{max: a.MaxConcurrency, rate: a.RatePerSecond} }

// activities returns the activities of f, a flow flow.Parse accepted, ready
// for delivery; one without a timeout gets defaultTimeout.
func activities(f flow.Flow, defaultTimeout time.Duration) []activity {
	out := make([]activity, len(f.Activities))
	for i, a := range f.Activities {
		out[i] = activity{Activity: a, timeout: defaultTimeout}
		if d, err := time.ParseDuration(a.Timeout); err == nil {
			out[i].timeout = d
		}
		if u, err := url.Parse(a.URL); err == nil {
			out[i].endpoint = endpoint(u)
		}
	}
	return out
}

// endpoint returns scheme://host:port of u, the port made explicit.
func endpoint(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port
}

// reserved are the request headers an activity's headers cannot set: the
// signature, the idempotency key, and what describes the body or the
// connection.
var reserved = map[string]bool{
	HeaderID: true, HeaderTimestamp: true, HeaderSignature: true, "Idempotency-Key": true,
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Transfer-Encoding": true,
	"Connection": true, "Host": true, "Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true,
	"Proxy-Connection": true,
}

func isReserved(name string) bool { return reserved[http.CanonicalHeaderKey(strings.TrimSpace(name))] }
