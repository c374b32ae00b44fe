package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// hooks is the local webhook listener: it answers 200 at once and records
// when each run's first delivery arrived, by run id and by subject.
type hooks struct {
	srv *http.Server
	url string

	mu       sync.Mutex
	runs     map[string]time.Time // run id → first delivery
	subjects map[string]time.Time // subject → first delivery
	order    []time.Time          // first deliveries in the order they came
	first    time.Time
	last     time.Time
	requests int
	bad      int // requests that were not a delivery
	changed  chan struct{}
}

// newHooks starts a listener on 127.0.0.1.
func newHooks() (*hooks, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for webhooks: %w", err)
	}
	h := &hooks{url: "http://" + ln.Addr().String() + "/hook", changed: make(chan struct{}, 1)}
	h.reset()
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *hooks) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}

// reset forgets what was received.
func (h *hooks) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs, h.subjects, h.order = map[string]time.Time{}, map[string]time.Time{}, nil
	h.first, h.last, h.requests, h.bad = time.Time{}, time.Time{}, 0, 0
}

// payload is the part of the webhook payload the bench reads.
type payload struct {
	Run struct {
		ID string `json:"id"`
	} `json:"run"`
	Message struct {
		Subject string `json:"subject"`
	} `json:"message"`
}

func (h *hooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	head, err := readHead(r.Body)
	var d payload
	if err == nil {
		err = json.Unmarshal(head, &d)
	}
	w.WriteHeader(http.StatusOK)
	h.mu.Lock()
	h.requests++
	if err != nil || d.Run.ID == "" || r.Header.Get("webhook-signature") == "" {
		h.bad++
	} else {
		if _, ok := h.runs[d.Run.ID]; !ok {
			h.runs[d.Run.ID] = at
			h.order = append(h.order, at)
		}
		if _, ok := h.subjects[d.Message.Subject]; !ok {
			h.subjects[d.Message.Subject] = at
		}
		if h.first.IsZero() {
			h.first = at
		}
		h.last = at
	}
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// readHead reads a webhook payload from body and returns the part of it the
// bench reads: the run and the message up to its text, closed as JSON. The
// bodies and attachments after it (most of a backlog message's payload)
// are read into io.Discard's buffer, neither held nor decoded: reading
// each whole (io.ReadAll) and decoding 10,000 payloads of 40 KB cost the
// bench seconds of CPU on the machine it shares with the service it
// measures, where a real endpoint is elsewhere. The message object is the
// payload's last field, and ,"text": cannot occur inside a JSON string (its
// quotes would be escaped), so the first one is the text field's. A body
// without it is returned whole.
func readHead(body io.Reader) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		// The key may straddle two reads: search from just before
		// what this one added.
		from := max(0, len(buf)-len(textField))
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf[from:], textField); i >= 0 {
			if _, err := io.Copy(io.Discard, body); err != nil {
				return nil, err
			}
			return append(buf[:from+i:from+i], "}}"...), nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// textField is the key that starts the message's text in a payload.
var textField = []byte(`,"text":`)

// count returns how many distinct runs were delivered, and how many
// requests came in all.
func (h *hooks) count() (runs, requests int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.runs), h.requests
}

// subjectAt returns when the first delivery of a message with subject came.
func (h *hooks) subjectAt(subject string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.subjects[subject]
	return t, ok
}

// nth returns when the n-th (from 1) run's first delivery came.
func (h *hooks) nth(n int) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n < 1 || n > len(h.order) {
		return time.Time{}
	}
	return h.order[n-1]
}

// span returns the first and last delivery times.
func (h *hooks) span() (first, last time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first, h.last
}

// badRequests counts requests that were not a signed delivery.
func (h *hooks) badRequests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}

var errTimeout = errors.New("timed out")

// waitRuns waits until n distinct runs were delivered, at most within.
func (h *hooks) waitRuns(ctx context.Context, n int, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if got, _ := h.count(); got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			got, _ := h.count()
			return fmt.Errorf("waiting for %d deliveries: %d within %v: %w", n, got, within, errTimeout)
		case <-h.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
