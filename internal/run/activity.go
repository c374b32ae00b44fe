package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// activity is what delivery needs of one activity of a flow definition. The
// definition belongs to package flow; only these fields are read here.
type activity struct {
	Type               string            `json:"type"`
	URL                string            `json:"url"`
	Headers            map[string]string `json:"headers"`
	Timeout            json.RawMessage   `json:"timeout"` // a Go duration string ("10s"); a number is taken as seconds
	IncludeAttachments bool              `json:"includeAttachments"`
	// MaxConcurrency and RatePerSecond cap the requests to the activity's
	// endpoint (0: only the adaptive limit and its ceiling).
	MaxConcurrency int     `json:"maxConcurrency"`
	RatePerSecond  float64 `json:"ratePerSecond"`

	timeout  time.Duration
	endpoint string // scheme://host:port, the unit of the per-endpoint limit
}

// caps are the activity's own limits on its endpoint.
func (a activity) caps() caps { return caps{max: a.MaxConcurrency, rate: a.RatePerSecond} }

// activities decodes the activities of a flow definition.
func activities(definition string, defaultTimeout time.Duration) ([]activity, error) {
	var def struct {
		Activities []activity `json:"activities"`
	}
	if err := json.Unmarshal([]byte(definition), &def); err != nil {
		return nil, fmt.Errorf("reading the flow definition: %w", err)
	}
	if len(def.Activities) == 0 {
		return nil, errors.New("the flow has no activities to deliver to")
	}
	for i := range def.Activities {
		a := &def.Activities[i]
		if a.Type != "webhook" {
			return nil, fmt.Errorf("activity %d: unknown type %q", i+1, a.Type)
		}
		u, err := url.Parse(a.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("activity %d: url is not an http or https URL", i+1)
		}
		a.endpoint = endpoint(u)
		a.timeout, err = parseTimeout(a.Timeout, defaultTimeout)
		if err != nil {
			return nil, fmt.Errorf("activity %d: %w", i+1, err)
		}
		if a.MaxConcurrency < 0 || a.RatePerSecond < 0 {
			return nil, fmt.Errorf("activity %d: maxConcurrency and ratePerSecond cannot be negative", i+1)
		}
	}
	return def.Activities, nil
}

func parseTimeout(raw json.RawMessage, def time.Duration) (time.Duration, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == `""` {
		return def, nil
	}
	var d time.Duration
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		d, err = time.ParseDuration(str)
		if err != nil {
			return 0, fmt.Errorf("timeout %q is not a duration like 10s", str)
		}
	} else if secs, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(secs * float64(time.Second))
	} else {
		return 0, fmt.Errorf("timeout %s is not a duration like \"10s\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("timeout %s is not positive", d)
	}
	return d, nil
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
