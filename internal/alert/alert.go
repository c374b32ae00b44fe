// Package alert tells the operator when something stops working: it turns
// watcher states, failed runs, a run backlog and lost replicas into alert
// events (Monitor), and delivers them to the subscriptions, signed webhooks
// or e-mail, through a durable queue (Sender).
package alert

import (
	"encoding/json"
	"time"
)

// Event types.
const (
	TypeAuthFailed  = "mailbox.auth_failed"
	TypeFailing     = "mailbox.failing"
	TypeRecovered   = "mailbox.recovered"
	TypeRunFailed   = "run.failed"
	TypeRunsBacklog = "runs.backlog"
	TypeReplicaLost = "replica.lost"
	// TypeTest is the sample event of "Send test"; nobody subscribes to it.
	TypeTest = "alert.test"
)

// Types are the event types a subscription can ask for, in display order.
var Types = []string{TypeAuthFailed, TypeFailing, TypeRecovered, TypeRunFailed, TypeRunsBacklog, TypeReplicaLost}

// PayloadVersion is the version of the payload's shape.
const PayloadVersion = 1

// Payload is the JSON body of an alert webhook (and the content of an
// alert e-mail).
type Payload struct {
	Version    int             `json:"version"`
	Type       string          `json:"type"`
	ID         string          `json:"id"`   // the event's id (evt_…)
	Test       bool            `json:"test"` // a sample from "Send test"
	OccurredAt time.Time       `json:"occurredAt"`
	Object     Object          `json:"object"`
	Previous   string          `json:"previous,omitempty"`
	Current    string          `json:"current,omitempty"`
	Since      *time.Time      `json:"since,omitempty"`
	Error      string          `json:"error,omitempty"` // redacted
	Details    json.RawMessage `json:"details,omitempty"`
	Delivery   Delivery        `json:"delivery"`
}

// Object is what the event is about.
type Object struct {
	Kind string `json:"kind"` // mailbox, run, runs, replica, alert
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"` // in the UI; only with MAILTRIGGER_BASE_URL
}

// Delivery identifies this delivery of the event.
type Delivery struct {
	ID           string `json:"id"` // alrt_…, also the webhook-id header
	Subscription string `json:"subscription"`
	Attempt      int    `json:"attempt"`
}
