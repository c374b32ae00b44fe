package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/alert"
	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// alertEnv makes the alerts of a test come quickly: a mailbox failing for
// 3 s is failing, a refused login is tried again after 2 s, failed
// deliveries are retried within about a second, a
// delivery a killed incarnation left in flight is taken up within 3 s, and
// the rate limit does not hold back the retries.
var alertEnv = []string{
	"MAILTRIGGER_ALERT_FAILING_AFTER=3s",
	"MAILTRIGGER_ALERT_RATE=1000",
	"MAILTRIGGER_RETRY_BASE=100ms",
	"MAILTRIGGER_RETRY_MAX=1s",
	"MAILTRIGGER_RUN_LEASE=3s",
	"MAILTRIGGER_AUTH_RETRY=2s",
}

const alertPath = "/alerts"

// alertSink is an alert subscription of the service under test delivering
// to the test's webhook listener.
type alertSink struct {
	s     *service
	hooks *hookListener
}

// alertDelivery is one alert request the listener took.
type alertDelivery struct {
	delivery
	alert alert.Payload
}

// subscribe creates the webhook subscription "ops" to every event type on
// a path of hooks, through the API, and learns the secret the service
// generated (shown once, in the answer).
func subscribe(s *service, c *client.Client, hooks *hookListener) *alertSink {
	s.t.Helper()
	u := hooks.handle(alertPath, "", nil)
	var v map[string]any
	body := map[string]any{"name": "ops", "kind": "webhook", "url": u, "events": alert.Types}
	if err := c.Do(context.Background(), http.MethodPost, "/api/v1/alerts", body, &v); err != nil {
		s.fatalf("creating the alert subscription: %v", err)
	}
	secret, _ := v["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || v["hasSecret"] != true {
		s.fatalf("alert subscription created as %v, want a generated whsec_… secret shown once", v)
	}
	hooks.setSecret(alertPath, secret)
	return &alertSink{s: s, hooks: hooks}
}

// all returns the alert requests so far, each checked: signed (the
// listener verifies with the documented algorithm and run.Verify), the
// documented payload, the delivery id as webhook-id.
func (a *alertSink) all() []alertDelivery {
	a.s.t.Helper()
	var out []alertDelivery
	for _, d := range a.hooks.on(alertPath) {
		ad := alertDelivery{delivery: d}
		if d.sigErr != nil {
			a.s.errorf("alert %s: signature: %v", d.id, d.sigErr)
		}
		if err := json.Unmarshal(d.body, &ad.alert); err != nil {
			a.s.errorf("alert %s: body %q: %v", d.id, d.body, err)
		}
		p := ad.alert
		if p.Version != alert.PayloadVersion || p.ID == "" || p.Delivery.ID != d.id || !strings.HasPrefix(d.id, "alrt_") ||
			p.Delivery.Subscription != "ops" || p.Delivery.Attempt < 1 || p.OccurredAt.IsZero() || p.Test {
			a.s.errorf("alert %s: payload %s: want version, id, delivery {id = webhook-id alrt_…, subscription ops, attempt}, occurredAt", d.id, d.body)
		}
		out = append(out, ad)
	}
	return out
}

// delivered returns the alerts answered 2xx, in order.
func (a *alertSink) delivered() []alertDelivery {
	var out []alertDelivery
	for _, d := range a.all() {
		if d.answered >= 200 && d.answered < 300 {
			out = append(out, d)
		}
	}
	return out
}

// types lists the types of alerts.
func alertTypes(ds []alertDelivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.alert.Type)
	}
	return out
}

// waitTypes waits until the alerts delivered are exactly want, in order,
// and checks that no other comes for settle afterwards.
func (a *alertSink) waitTypes(within, settle time.Duration, want ...string) []alertDelivery {
	a.s.t.Helper()
	var got []alertDelivery
	waitFor(a.s, within, fmt.Sprintf("alerts %v", want), func() (bool, any) {
		got = a.delivered()
		return slices.Equal(alertTypes(got), want), alertTypes(got)
	})
	if settle > 0 {
		testwait.Never(a.s.t, settle, func() error {
			if n := len(a.delivered()); n != len(want) {
				return fmt.Errorf("%d alerts delivered, want %d: %v", n, len(want), alertTypes(a.delivered()))
			}
			return nil
		})
	}
	return got
}

// checkMailboxAlert checks an alert about mailbox name.
func checkMailboxAlert(s *service, d alertDelivery, name, previous, current string, secrets ...string) {
	s.t.Helper()
	p := d.alert
	if p.Object.Kind != "mailbox" || p.Object.Name != name || p.Previous != previous || p.Current != current || p.Since == nil {
		s.errorf("alert %s: %s; want about mailbox %s, %s → %s, since", p.Type, d.body, name, previous, current)
	}
	var details struct {
		ServerType string `json:"serverType"`
		Host       string `json:"host"`
		Replica    string `json:"replica"`
	}
	if err := json.Unmarshal(p.Details, &details); err != nil || details.ServerType != imapconf.ServerIMAPS || details.Host == "" ||
		details.Replica == "" {
		s.errorf("alert %s: details %s (%v), want serverType, host, replica", p.Type, p.Details, err)
	}
	for _, secret := range secrets {
		if strings.Contains(string(d.body), secret) {
			s.errorf("alert %s shows a secret: %s", p.Type, d.body)
		}
	}
}

// TestAlertsAuthFailedAndRecovered: the mailbox's password changes on the
// server: exactly one signed mailbox.auth_failed within 30 s, however
// often the login is refused; the password restored on the server: one
// mailbox.recovered once the watcher logs in again.
func TestAlertsAuthFailedAndRecovered(t *testing.T) {
	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "alerted", "pw-alerted-original")
	hooks := newHookListener(t)
	s := newService(t, alertEnv...)
	s.start()
	c := s.api()
	sink := subscribe(s, c, hooks)
	createMailbox(s, c, d, "alerted", addr, imapconf.BacklogAll)
	waitState(s, c, "alerted", imapconf.StateIdle, 15*time.Second)

	d.SetPassword(t, addr, "pw-alerted-changed")
	d.Doveadm(t, "kick", addr)
	waitState(s, c, "alerted", imapconf.StateAuthFailed, 30*time.Second)
	got := sink.waitTypes(30*time.Second, 4*time.Second, alert.TypeAuthFailed)
	checkMailboxAlert(s, got[0], "alerted", "ok", "auth_failed", "pw-alerted-original", "pw-alerted-changed")
	if got[0].alert.Error == "" {
		s.errorf("auth_failed without the error text: %s", got[0].body)
	}

	// Fixed on the server alone: the watcher's next login (MAILTRIGGER_AUTH_RETRY) succeeds.
	d.SetPassword(t, addr, "pw-alerted-original")
	got = sink.waitTypes(30*time.Second, 3*time.Second, alert.TypeAuthFailed, alert.TypeRecovered)
	checkMailboxAlert(s, got[1], "alerted", "auth_failed", "ok", "pw-alerted-original", "pw-alerted-changed")
}

// TestAlertsDovecotOutage: the mail server stopped for longer than the
// threshold: mailbox.failing, not before the threshold; started again:
// mailbox.recovered.
func TestAlertsDovecotOutage(t *testing.T) {
	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "outage", "pw-outage")
	hooks := newHookListener(t)
	s := newService(t, alertEnv...)
	s.start()
	c := s.api()
	sink := subscribe(s, c, hooks)
	createMailbox(s, c, d, "outage", addr, imapconf.BacklogAll)
	waitState(s, c, "outage", imapconf.StateIdle, 15*time.Second)

	stopped := time.Now()
	d.Stop(t)
	got := sink.waitTypes(30*time.Second, 0, alert.TypeFailing)
	if after := got[0].at.Sub(stopped); after < 3*time.Second {
		s.errorf("mailbox.failing %v after the server stopped, before the 3 s threshold", after)
	}
	checkMailboxAlert(s, got[0], "outage", "ok", "failing", "pw-outage")
	if got[0].alert.Since == nil || got[0].alert.Since.Before(stopped.Add(-time.Second)) || got[0].alert.Error == "" {
		s.errorf("mailbox.failing since %v (server stopped at %v), error %q: want since the outage, with the error", got[0].alert.Since, stopped, got[0].alert.Error)
	}
	testwait.Never(t, 2*time.Second, func() error { // the outage goes on: nothing more
		if got := sink.delivered(); len(got) != 1 {
			return fmt.Errorf("alerts %v during the outage, want the one mailbox.failing", alertTypes(got))
		}
		return nil
	})
	d.Start(t)
	got = sink.waitTypes(45*time.Second, 3*time.Second, alert.TypeFailing, alert.TypeRecovered)
	checkMailboxAlert(s, got[1], "outage", "failing", "ok", "pw-outage")
}

// failingFlow creates a mailbox and a flow on it whose webhook answers 400,
// so that every matching message's run fails for good at once; it returns
// the mailbox's address.
func failingFlow(s *service, c *client.Client, d *testenv.Dovecot, hooks *hookListener) string {
	s.t.Helper()
	addr := d.AddUser(s.t, "failing", "pw-failing")
	createMailbox(s, c, d, "failing", addr, imapconf.BacklogAll)
	u := hooks.handle("/flow", "", func(int) hookResponse { return hookResponse{status: http.StatusBadRequest, body: "no"} })
	createFlow(s, c, flowSpec{name: "refused", imap: "failing", subject: "Invoice", match: "exact", url: u})
	waitState(s, c, "failing", imapconf.StateIdle, 15*time.Second)
	return addr
}

// failedRuns waits until n runs failed and returns their ids.
func failedRuns(s *service, c *client.Client, n int) []string {
	s.t.Helper()
	var ids []string
	waitFor(s, 30*time.Second, fmt.Sprintf("%d failed runs", n), func() (bool, any) {
		rs := listRuns(s, c, url.Values{"status": {"failed"}})
		ids = ids[:0]
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return len(ids) == n, ids
	})
	slices.Sort(ids)
	return ids
}

// checkRunFailedOnce checks that the alerts delivered are one run.failed
// per id of runs, each delivered once (by webhook-id and by event id).
func checkRunFailedOnce(s *service, ds []alertDelivery, runs []string) {
	s.t.Helper()
	byHook, byEvent := map[string]int{}, map[string]int{}
	var objects []string
	for _, d := range ds {
		byHook[d.id]++
		byEvent[d.alert.ID]++
		if d.alert.Type != alert.TypeRunFailed || d.alert.Object.Kind != "run" {
			s.errorf("alert %s about %s %q, want run.failed about a run", d.alert.Type, d.alert.Object.Kind, d.alert.Object.Name)
		}
		objects = append(objects, d.alert.Object.Name)
	}
	for id, n := range byHook {
		if n != 1 {
			s.errorf("webhook-id %s delivered %d times", id, n)
		}
	}
	for id, n := range byEvent {
		if n != 1 {
			s.errorf("event %s delivered %d times", id, n)
		}
	}
	slices.Sort(objects)
	if !slices.Equal(objects, runs) {
		s.errorf("run.failed about runs %v, want one about each failed run %v", objects, runs)
	}
}

// TestAlertsRunFailed: a flow's webhook answers 400: one run.failed per
// failed run.
func TestAlertsRunFailed(t *testing.T) {
	d := testenv.StartDovecot(t)
	hooks := newHookListener(t)
	s := newService(t, alertEnv...)
	s.start()
	c := s.api()
	sink := subscribe(s, c, hooks)
	addr := failingFlow(s, c, d, hooks)
	for i := range 3 {
		d.Append(t, addr, "INBOX", mailMessage(fmt.Sprintf("fail-%d@e2e", i), addr, "Invoice", "pay"))
	}
	d.Append(t, addr, "INBOX", mailMessage("nomatch@e2e", addr, "Hello", "no run"))
	runs := failedRuns(s, c, 3)
	got := sink.waitTypes(30*time.Second, 3*time.Second, alert.TypeRunFailed, alert.TypeRunFailed, alert.TypeRunFailed)
	checkRunFailedOnce(s, got, runs)
}

// TestAlertsDeliveredLateAfterKill: the alert endpoint is down while runs
// fail and while the service is killed (SIGKILL) and started again; once it
// is up every alert arrives, late, none lost and none twice.
func TestAlertsDeliveredLateAfterKill(t *testing.T) {
	d := testenv.StartDovecot(t)
	hooks := newHookListener(t)
	s := newService(t, alertEnv...)
	s.start()
	c := s.api()
	sink := subscribe(s, c, hooks)
	hooks.setResponder(alertPath, func(int) hookResponse { return hookResponse{status: http.StatusServiceUnavailable, body: "down"} })
	addr := failingFlow(s, c, d, hooks)
	const n = 4
	for i := range n {
		d.Append(t, addr, "INBOX", mailMessage(fmt.Sprintf("late-%d@e2e", i), addr, "Invoice", "pay"))
	}
	runs := failedRuns(s, c, n)
	// Each alert tried, refused, and that attempt recorded, at least once
	// (the listener seeing a request is not enough: an attempt the kill
	// cuts off before it is recorded is made again under its number).
	waitFor(s, 30*time.Second, "a recorded attempt of every alert while the endpoint is down", func() (bool, any) {
		var page struct {
			Items      []map[string]any `json:"items"`
			NextCursor *string          `json:"nextCursor"`
		}
		if err := c.Do(context.Background(), http.MethodGet, "/api/v1/alerts/ops/deliveries", nil, &page); err != nil {
			return false, err
		}
		tried := map[string]float64{}
		for _, d := range page.Items {
			if n, _ := d["attemptCount"].(float64); n > 0 {
				tried[fmt.Sprint(d["id"])] = n
			}
		}
		return len(tried) == n, tried
	})
	s.kill()
	s.start()
	testwait.Never(t, 2*time.Second, func() error { // still down after the restart
		if got := sink.delivered(); len(got) != 0 {
			return fmt.Errorf("alerts delivered while the endpoint answers 503: %v", alertTypes(got))
		}
		return nil
	})
	hooks.setResponder(alertPath, nil)
	got := sink.waitTypes(45*time.Second, 4*time.Second, alert.TypeRunFailed, alert.TypeRunFailed, alert.TypeRunFailed, alert.TypeRunFailed)
	checkRunFailedOnce(s, got, runs)
	for _, d := range got {
		if d.alert.Delivery.Attempt < 2 {
			s.errorf("alert %s delivered at attempt %d, want a later one (the endpoint was down)", d.id, d.alert.Delivery.Attempt)
		}
	}
}
