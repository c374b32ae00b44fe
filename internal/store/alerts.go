package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Alert subscriptions, the conditions that make alert events happen once, and
// the queue of alert deliveries. (Contract stubs: the bodies are filled in by
// the alert store work; the signatures are what internal/alert, internal/api
// and internal/web code against.)

var errNotBuilt = errors.New("alerts: not built yet")

// Alert subscription kinds.
const (
	AlertWebhook = "webhook"
	AlertEmail   = "email"
)

// AlertSubscription says where alerts go and which ones.
type AlertSubscription struct {
	ID          int64
	Name        string
	Description string
	Kind        string   // AlertWebhook or AlertEmail
	URL         string   // webhook
	To          []string // email recipients
	Secret      string   // whsec_…: plaintext in memory, sealed at rest; "" for email
	Events      []string // event types wanted; validated, never empty
	Enabled     bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// CreateAlert stores a new subscription; ErrConflict when the name is taken.
func (s *Store) CreateAlert(ctx context.Context, a AlertSubscription) (AlertSubscription, error) {
	return AlertSubscription{}, errNotBuilt
}

// GetAlert returns the subscription named name; ErrNotFound when none.
func (s *Store) GetAlert(ctx context.Context, name string) (AlertSubscription, error) {
	return AlertSubscription{}, errNotBuilt
}

// ListAlerts returns up to limit subscriptions with names after after, by name.
func (s *Store) ListAlerts(ctx context.Context, after string, limit int) ([]AlertSubscription, error) {
	return nil, errNotBuilt
}

// UpdateAlert replaces the subscription named name with a (a.Name may rename
// it; a.Secret "" keeps the stored secret); ErrNotFound, ErrConflict.
func (s *Store) UpdateAlert(ctx context.Context, name string, a AlertSubscription) (AlertSubscription, error) {
	return AlertSubscription{}, errNotBuilt
}

// DeleteAlert deletes the subscription and its deliveries; ErrNotFound.
func (s *Store) DeleteAlert(ctx context.Context, name string) error {
	return errNotBuilt
}

// AlertEvent is one thing that happened, queued to every enabled
// subscription that wants its type.
type AlertEvent struct {
	ID         string // "evt_…"; set by the store when ""
	Type       string // alert.Type… constants
	ObjectKind string // "mailbox", "run", "runs", "replica", "alert" (test)
	ObjectName string // mailbox name, run public id, "", replica id, subscription name
	Previous   string
	Current    string
	Error      string // already redacted
	Since      time.Time
	OccurredAt time.Time
	Test       bool
	Details    json.RawMessage // type-specific object; nil for none
}

// AlertCondition is the recorded condition of a key.
type AlertCondition struct {
	Key       string
	Condition string
	Since     time.Time
	Error     string // the last error text when it changed (redacted)
}

// SwapAlertCondition sets key's condition to cond. When the recorded one
// (prev, "ok" when none) differs and event(prev) returns ok, the event is
// recorded and queued to every matching subscription in the same
// transaction. queued reports whether it was.
func (s *Store) SwapAlertCondition(ctx context.Context, key, cond, errText string, event func(prev string) (AlertEvent, bool)) (prev string, queued bool, err error) {
	return "", false, errNotBuilt
}

// AlertConditions returns the conditions whose key starts with prefix and
// which are not "ok".
func (s *Store) AlertConditions(ctx context.Context, prefix string) ([]AlertCondition, error) {
	return nil, errNotBuilt
}

// ForgetAlertCondition removes key's condition without an event.
func (s *Store) ForgetAlertCondition(ctx context.Context, key string) error {
	return errNotBuilt
}

// QueueAlert records ev and queues it to every enabled subscription that
// wants its type; it returns how many deliveries were queued.
func (s *Store) QueueAlert(ctx context.Context, ev AlertEvent) (int, error) {
	return 0, errNotBuilt
}

// QueueAlertTest queues ev to the subscription named name alone, enabled
// or not, whatever events it wants.
func (s *Store) QueueAlertTest(ctx context.Context, name string, ev AlertEvent) (AlertDelivery, error) {
	return AlertDelivery{}, errNotBuilt
}

// AlertDelivery is one event on its way to one subscription.
type AlertDelivery struct {
	ID             int64
	PublicID       string // "alrt_…": the webhook-id
	SubscriptionID int64
	Subscription   string
	Event          AlertEvent
	Status         string // the Run… statuses: pending, retrying, delivering, delivered, failed
	Attempts       int
	NextAttemptAt  time.Time
	CreatedAt      time.Time
	DeliveredAt    *time.Time
	LastError      string
}

// ClaimAlertDeliveries leases up to limit due deliveries until now+lease.
func (s *Store) ClaimAlertDeliveries(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]AlertDelivery, error) {
	return nil, errNotBuilt
}

// FinishAlertAttempt records attempt a of delivery id and moves it to
// status (delivered, failed, or retrying at next).
func (s *Store) FinishAlertAttempt(ctx context.Context, id int64, a Attempt, status string, next time.Time) error {
	return errNotBuilt
}

// ReleaseAlertDelivery hands a claimed delivery back without an attempt,
// due at next (the rate limit).
func (s *Store) ReleaseAlertDelivery(ctx context.Context, id int64, next time.Time) error {
	return errNotBuilt
}

// ListAlertDeliveries returns the subscription's deliveries, newest first,
// with ids below before (0: from the newest).
func (s *Store) ListAlertDeliveries(ctx context.Context, subscription string, before int64, limit int) ([]AlertDelivery, error) {
	return nil, errNotBuilt
}

// GetAlertDelivery returns a delivery and its attempts.
func (s *Store) GetAlertDelivery(ctx context.Context, publicID string) (AlertDelivery, []Attempt, error) {
	return AlertDelivery{}, nil, errNotBuilt
}

// NextAlertDue returns when the next waiting delivery is due.
func (s *Store) NextAlertDue(ctx context.Context) (t time.Time, ok bool, err error) {
	return time.Time{}, false, errNotBuilt
}
