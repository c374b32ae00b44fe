package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/api"
	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// rejectBody is what the rejecting endpoint answers with its 400.
const rejectBody = `{"error":"customer_id is missing"}`

// TestDeliverySemantics checks how the real binary delivers to endpoints that
// do not take a delivery at once (with the backoff shortened to 300 ms … 1 s
// through MAILTRIGGER_RETRY_BASE and MAILTRIGGER_RETRY_MAX):
//   - 503, 503, then 200: delivered at the third attempt, each attempt
//     recorded with its status and response, waiting longer each time;
//   - 429 with Retry-After: 1, then 200: the second attempt comes no sooner
//     than a second later, although the backoff alone would wait 375 ms at
//     most;
//   - 400: the run fails at once, its attempt showing the response; it is
//     not retried by itself; once the endpoint is fixed, a retry through the
//     API delivers it, and a delivered run cannot be retried again (409).
func TestDeliverySemantics(t *testing.T) {
	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "hooks", "pw-hooks")
	hooks := newHookListener(t)
	s := newService(t, fastRetryEnv...)
	s.start()
	c := s.api()
	createMailbox(s, c, d, "hooks_inbox", addr, imapconf.BacklogAll)

	flaky := hooks.handle("/flaky", "", func(n int) hookResponse {
		if n <= 2 {
			return hookResponse{status: http.StatusServiceUnavailable, body: fmt.Sprintf("try later (%d)", n)}
		}
		return hookResponse{status: http.StatusOK, body: "ok"}
	})
	throttled := hooks.handle("/throttled", "", func(n int) hookResponse {
		if n == 1 {
			return hookResponse{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "1"}, body: "slow down"}
		}
		return hookResponse{status: http.StatusOK, body: "ok"}
	})
	rejecting := hooks.handle("/rejecting", "", func(int) hookResponse {
		return hookResponse{status: http.StatusBadRequest, header: map[string]string{"Content-Type": "application/json"}, body: rejectBody}
	})
	for _, f := range []struct{ name, subject, path, url string }{
		{"flaky", "Flaky", "/flaky", flaky},
		{"throttled", "Throttled", "/throttled", throttled},
		{"rejecting", "Rejected", "/rejecting", rejecting},
	} {
		secret := createFlow(s, c, flowSpec{name: f.name, imap: "hooks_inbox", subject: f.subject, match: "exact", url: f.url})
		hooks.setSecret(f.path, secret)
	}
	waitState(s, c, "hooks_inbox", imapconf.StateIdle, 15*time.Second)
	conn := d.DialIMAPS(t, addr, nil)
	for i, subject := range []string{"Flaky", "Throttled", "Rejected"} {
		appendOrFail(s, conn, mailMessage(fmt.Sprintf("delivery-%d@e2e.example.org", i), addr, subject, "Deliver me."))
	}

	// The three cases run at once; they are checked in turn. (Not as
	// subtests: the helpers fail the test through s, the parent.)
	finished := func(flow string) api.RunView {
		t.Helper()
		var r api.RunView
		poll(s, 30*time.Second, 100*time.Millisecond, "the run of flow "+flow+" finished", func() (bool, any) {
			runs := listRuns(s, c, url.Values{"flow": {flow}})
			if len(runs) != 1 {
				return false, fmt.Sprintf("%d runs", len(runs))
			}
			r = runs[0]
			return r.Status == "delivered" || r.Status == "failed", r
		})
		return getRun(s, c, r.ID)
	}

	// 503 twice, then 200.
	{
		r := finished("flaky")
		checkAttempts(t, r, "delivered", []int{503, 503, 200})
		for _, a := range r.Attempts[:2] {
			if !strings.Contains(a.Error, "503") || !strings.Contains(a.Response, "try later") {
				t.Errorf("attempt %d: error %q, response %q; want the 503 and the response's text", a.N, a.Error, a.Response)
			}
		}
		dls := checkSameRun(t, hooks.on("/flaky"), r, "flaky", 3)
		if len(dls) == 3 {
			// Exponential backoff from 300 ms (±25 %): at least 225 ms,
			// then at least 675 ms.
			if gap := dls[1].at.Sub(dls[0].at); gap < 200*time.Millisecond {
				t.Errorf("second attempt %v after the first, want a backoff of at least 225 ms", gap)
			}
			if gap := dls[2].at.Sub(dls[1].at); gap < 600*time.Millisecond {
				t.Errorf("third attempt %v after the second, want a backoff of at least 675 ms", gap)
			}
		}
	}

	// 429 with Retry-After: 1, then 200.
	{
		r := finished("throttled")
		checkAttempts(t, r, "delivered", []int{429, 200})
		dls := checkSameRun(t, hooks.on("/throttled"), r, "throttled", 2)
		if len(dls) == 2 {
			if gap := dls[1].at.Sub(dls[0].at); gap < 950*time.Millisecond {
				t.Errorf("second attempt %v after the 429 with Retry-After: 1, want at least 1 s", gap)
			} else {
				t.Logf("second attempt %v after the 429 with Retry-After: 1", gap.Round(time.Millisecond))
			}
		}
		if len(r.Attempts) == 2 {
			if gap := r.Attempts[1].StartedAt.Sub(r.Attempts[0].StartedAt); gap < 950*time.Millisecond {
				t.Errorf("recorded attempts %v apart, want at least 1 s", gap)
			}
		}
	}

	// 400: failed at once; a retry through the API delivers it once the
	// endpoint is fixed.
	{
		r := finished("rejecting")
		checkAttempts(t, r, "failed", []int{400})
		if len(r.Attempts) == 1 && (!strings.Contains(r.Attempts[0].Response, rejectBody) || !strings.Contains(r.Attempts[0].Error, "400")) {
			t.Errorf("attempt: error %q, response %q; want the 400 and the response %s", r.Attempts[0].Error, r.Attempts[0].Response, rejectBody)
		}
		if r.LastError == "" {
			t.Errorf("failed run has no lastError")
		}
		// Not retried by itself: for three times the longest backoff
		// there is still one request.
		testwait.Never(t, 3*time.Second, func() error {
			if n := len(hooks.on("/rejecting")); n != 1 {
				return fmt.Errorf("the endpoint got %d requests for the failed run, want 1", n)
			}
			return nil
		})
		if r2 := getRun(s, c, r.ID); r2.Status != "failed" || r2.AttemptCount != 1 {
			t.Errorf("3 s later the run is %s after %d attempts, want failed after 1", r2.Status, r2.AttemptCount)
		}

		hooks.setResponder("/rejecting", nil) // fixed: 200
		var retried api.RunView
		if err := c.Do(context.Background(), http.MethodPost, "/api/v1/runs/"+r.ID+"/retry", nil, &retried); err != nil {
			s.fatalf("retrying run %s: %v", r.ID, err)
		}
		if retried.ID != r.ID || retried.Status != "pending" {
			t.Errorf("retry answered run %s %s, want %s pending", retried.ID, retried.Status, r.ID)
		}
		r = finished("rejecting")
		checkAttempts(t, r, "delivered", []int{400, 200})
		checkSameRun(t, hooks.on("/rejecting"), r, "rejecting", 2)

		// A delivered run is not retried.
		err := c.Do(context.Background(), http.MethodPost, "/api/v1/runs/"+r.ID+"/retry", nil, nil)
		var ae *client.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Errorf("retrying the delivered run: %v, want 409", err)
		}
	}

	if inc, unk := hooks.counts(); inc != 0 || unk != 0 {
		t.Errorf("the listener got %d incomplete requests and %d on unknown paths, want none", inc, unk)
	}
	s.stop()
}

// checkAttempts checks that run r has status and its attempts, numbered from
// 1, got the status codes.
func checkAttempts(t *testing.T, r api.RunView, status string, codes []int) {
	t.Helper()
	var got []int
	for i, a := range r.Attempts {
		got = append(got, a.StatusCode)
		if a.N != i+1 {
			t.Errorf("run %s: attempt %d numbered %d", r.ID, i+1, a.N)
		}
		if a.StartedAt.IsZero() {
			t.Errorf("run %s: attempt %d has no start time", r.ID, a.N)
		}
		if (a.StatusCode >= 200 && a.StatusCode < 300) != (a.Error == "") {
			t.Errorf("run %s: attempt %d with status %d has error %q", r.ID, a.N, a.StatusCode, a.Error)
		}
	}
	if r.Status != status || r.AttemptCount != len(codes) || fmt.Sprint(got) != fmt.Sprint(codes) {
		t.Errorf("run %s: %s after %d attempts with status codes %v, want %s after %d with %v",
			r.ID, r.Status, r.AttemptCount, got, status, len(codes), codes)
	}
	if (status == "delivered") != (r.DeliveredAt != nil) {
		t.Errorf("run %s: %s with deliveredAt %v", r.ID, r.Status, r.DeliveredAt)
	}
}

// checkSameRun checks that the endpoint got n requests, all deliveries of run
// r (same webhook-id, valid signature) with run.attempt counting from 1, and
// returns them.
func checkSameRun(t *testing.T, dls []delivery, r api.RunView, flow string, n int) []delivery {
	t.Helper()
	if len(dls) != n {
		t.Errorf("the endpoint of flow %s got %d requests, want %d", flow, len(dls), n)
	}
	for i, dl := range dls {
		if err := checkDelivery(dl, flow, "hooks_inbox"); err != nil {
			t.Errorf("request %d: %v", i+1, err)
		}
		if dl.id != r.ID || dl.payload.Run.Attempt != i+1 {
			t.Errorf("request %d: webhook-id %s, run.attempt %d; want %s and %d", i+1, dl.id, dl.payload.Run.Attempt, r.ID, i+1)
		}
	}
	return dls
}

// appendOrFail appends raw to INBOX over c.
func appendOrFail(s *service, c *imapclient.Client, raw []byte) uint32 {
	s.t.Helper()
	uid, err := appendMessage(c, raw)
	if err != nil {
		s.fatalf("appending a message: %v", err)
	}
	return uid
}
