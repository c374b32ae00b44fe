package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Alert subscriptions, the conditions that make alert events happen once, and
// the queue of alert deliveries: a queue of its own, claimed with leases as
// runs are, so that alert deliveries never count as runs.

// Alert subscription kinds.
const (
	AlertWebhook = "webhook"
	AlertEmail   = "email"
)

// alertsVersion is the migration that makes the alert tables.
const alertsVersion = 13

// purposeAlertSecret is bound to a subscription's sealed signing secret.
const purposeAlertSecret = "alert.secret"

// The event types the store queues itself (the same strings as the
// alert.Type… constants; package alert imports this one, not the reverse).
const (
	alertRunFailed   = "run.failed"
	alertReplicaLost = "replica.lost"
)

// ConditionOK is the condition of a key with no row.
const ConditionOK = "ok"

// NewAlertDeliveryID returns a new public alert delivery id.
func NewAlertDeliveryID() string { return "alrt_" + strings.ToLower(rand.Text()) }

// NewAlertEventID returns a new public alert event id.
func NewAlertEventID() string { return "evt_" + strings.ToLower(rand.Text()) }

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
	// SecretError says why the stored secret does not open (a wrong
	// MAILTRIGGER_SECRET_KEY); Secret is "" then. GetAlertByID, which the
	// sender reads, fails with a *SecretError instead.
	SecretError string
}

// Wants reports whether the subscription asks for events of type typ.
func (a AlertSubscription) Wants(typ string) bool { return slices.Contains(a.Events, typ) }

const alertColumns = `id, name, description, kind, url, recipients, secret_sealed, events, enabled, created_at, updated_at`

func (s *Store) scanAlert(row interface{ Scan(...any) error }) (AlertSubscription, error) {
	var a AlertSubscription
	var to, events string
	var sealed []byte
	if err := row.Scan(&a.ID, &a.Name, &a.Description, &a.Kind, &a.URL, &to, &sealed, &events, &a.Enabled,
		&a.CreatedAt, &a.UpdatedAt); err != nil {
		return a, err
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	if err := json.Unmarshal([]byte(to), &a.To); err != nil {
		return a, fmt.Errorf("reading the recipients of alert subscription %s: %w", a.Name, err)
	}
	if err := json.Unmarshal([]byte(events), &a.Events); err != nil {
		return a, fmt.Errorf("reading the events of alert subscription %s: %w", a.Name, err)
	}
	var err error
	if a.Secret, err = s.box.OpenRow(sealed, purposeAlertSecret, a.ID); err != nil {
		a.Secret, a.SecretError = "", "secret: "+err.Error()
	}
	return a, nil
}

func jsonList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l) // strings always marshal
	return string(b)
}

// CreateAlert stores a new subscription; ErrConflict when the name is taken.
func (s *Store) CreateAlert(ctx context.Context, a AlertSubscription) (AlertSubscription, error) {
	t := now()
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO alert_subscriptions (name, name_lower, description, kind, url, recipients,
			secret_sealed, events, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $9) RETURNING id`,
			a.Name, lower(a.Name), a.Description, a.Kind, a.URL, jsonList(a.To), jsonList(a.Events), a.Enabled, t).Scan(&a.ID); err != nil {
			return err
		}
		return s.sealAlertSecret(ctx, tx, a.ID, a.Secret)
	})
	if isUnique(err) {
		return AlertSubscription{}, fmt.Errorf("alert subscription %q: %w", a.Name, ErrConflict)
	}
	if err != nil {
		return AlertSubscription{}, fmt.Errorf("creating alert subscription %s: %w", a.Name, err)
	}
	a.CreatedAt, a.UpdatedAt = t, t
	return a, nil
}

// sealAlertSecret stores secret, sealed for row id.
func (s *Store) sealAlertSecret(ctx context.Context, tx *sql.Tx, id int64, secret string) error {
	sealed, err := s.box.SealRow(secret, purposeAlertSecret, id)
	if err != nil {
		return fmt.Errorf("sealing the secret: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE alert_subscriptions SET secret_sealed = $1 WHERE id = $2`, sealed, id)
	return err
}

// GetAlert returns the subscription named name (case-insensitively);
// ErrNotFound when none.
func (s *Store) GetAlert(ctx context.Context, name string) (AlertSubscription, error) {
	a, err := s.scanAlert(s.r.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alert_subscriptions WHERE name_lower = $1`, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alert subscription %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("reading alert subscription %s: %w", name, err)
	}
	return a, nil
}

// GetAlertByID returns the subscription with internal id id (the sender
// reads a delivery's subscription so, whatever it was renamed to since).
func (s *Store) GetAlertByID(ctx context.Context, id int64) (AlertSubscription, error) {
	a, err := s.scanAlert(s.r.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alert_subscriptions WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alert subscription %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("reading alert subscription %d: %w", id, err)
	}
	if a.SecretError != "" {
		return a, fmt.Errorf("alert subscription %s: %w", a.Name, &SecretError{Field: a.SecretError})
	}
	return a, nil
}

// ListAlerts returns up to limit subscriptions with names after after, by name.
func (s *Store) ListAlerts(ctx context.Context, after string, limit int) ([]AlertSubscription, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+alertColumns+` FROM alert_subscriptions WHERE name_lower > $1
		ORDER BY name_lower LIMIT $2`, lower(after), limit)
	if err != nil {
		return nil, fmt.Errorf("listing alert subscriptions: %w", err)
	}
	defer rows.Close()
	out := []AlertSubscription{}
	for rows.Next() {
		a, err := s.scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("listing alert subscriptions: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing alert subscriptions: %w", err)
	}
	return out, nil
}

// UpdateAlert replaces the subscription named name with a (a.Name may rename
// it; a.Secret "" keeps the stored secret); ErrNotFound, ErrConflict.
func (s *Store) UpdateAlert(ctx context.Context, name string, a AlertSubscription) (AlertSubscription, error) {
	t := now()
	var out AlertSubscription
	err := s.Write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE alert_subscriptions SET name = $1, name_lower = $2, description = $3, kind = $4,
			url = $5, recipients = $6, events = $7, enabled = $8, updated_at = $9 WHERE name_lower = $10 RETURNING id`,
			a.Name, lower(a.Name), a.Description, a.Kind, a.URL, jsonList(a.To), jsonList(a.Events), a.Enabled, t, lower(name)).Scan(&a.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alert subscription %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// An email subscription keeps no secret.
		if a.Secret != "" || a.Kind == AlertEmail {
			if err := s.sealAlertSecret(ctx, tx, a.ID, a.Secret); err != nil {
				return err
			}
		}
		out, err = s.scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alert_subscriptions WHERE id = $1`, a.ID))
		return err
	})
	if isUnique(err) {
		return AlertSubscription{}, fmt.Errorf("alert subscription %q: %w", a.Name, ErrConflict)
	}
	if err != nil {
		return AlertSubscription{}, fmt.Errorf("updating alert subscription %s: %w", name, err)
	}
	return out, nil
}

// DeleteAlert deletes the subscription and its deliveries; ErrNotFound.
func (s *Store) DeleteAlert(ctx context.Context, name string) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM alert_subscriptions WHERE name_lower = $1`, lower(name))
		if err != nil {
			return fmt.Errorf("deleting alert subscription %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("alert subscription %q: %w", name, ErrNotFound)
		}
		// Events no delivery refers to any more go with them.
		if _, err := tx.ExecContext(ctx, `DELETE FROM alert_events WHERE NOT EXISTS
			(SELECT 1 FROM alert_deliveries d WHERE d.event_id = alert_events.id)`); err != nil {
			return fmt.Errorf("deleting the events of alert subscription %s: %w", name, err)
		}
		return nil
	})
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
	err = s.Write(ctx, func(tx *sql.Tx) error {
		var err error
		prev, queued, err = s.swapConditionTx(ctx, tx, key, cond, errText, now(), event)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("setting alert condition %s to %s: %w", key, cond, err)
	}
	return prev, queued, nil
}

// swapConditionTx is SwapAlertCondition in tx. The row is locked before it
// is read (PostgreSQL; SQLite has one writer), and a missing row is
// inserted with ON CONFLICT DO NOTHING, after which a racing transaction
// reads the winner's row: of two transactions changing the same condition
// at once, one sees the other's result and queues nothing.
func (s *Store) swapConditionTx(ctx context.Context, tx *sql.Tx, key, cond, errText string, t time.Time, event func(prev string) (AlertEvent, bool)) (prev string, queued bool, err error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	errText = alertText(errText)
	written := false
	for range 2 {
		var prevErr string
		err := tx.QueryRowContext(ctx, `SELECT condition, error FROM alert_conditions WHERE key = $1`+lock, key).Scan(&prev, &prevErr)
		if errors.Is(err, sql.ErrNoRows) {
			prev = ConditionOK
			if cond == ConditionOK {
				return prev, false, nil
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO alert_conditions (key, condition, since, error, updated_at)
				VALUES ($1, $2, $3, $4, $3) ON CONFLICT (key) DO NOTHING`, key, cond, t, errText)
			if err != nil {
				return "", false, fmt.Errorf("recording: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue // another transaction inserted it meanwhile: read its row
			}
			written = true
			break
		}
		if err != nil {
			return "", false, fmt.Errorf("reading: %w", err)
		}
		if prev == cond {
			if prevErr != errText && errText != "" {
				if _, err := tx.ExecContext(ctx, `UPDATE alert_conditions SET error = $1, updated_at = $2 WHERE key = $3`,
					errText, t, key); err != nil {
					return "", false, fmt.Errorf("recording: %w", err)
				}
			}
			return prev, false, nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE alert_conditions SET condition = $1, since = $2, error = $3, updated_at = $2
			WHERE key = $4`, cond, t, errText, key); err != nil {
			return "", false, fmt.Errorf("recording: %w", err)
		}
		written = true
		break
	}
	if !written {
		return "", false, errors.New("recording: the row came and went")
	}
	if event == nil {
		return prev, false, nil
	}
	ev, ok := event(prev)
	if !ok {
		return prev, false, nil
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = t
	}
	if _, err := s.queueAlertTx(ctx, tx, ev); err != nil {
		return "", false, err
	}
	return prev, true, nil
}

// AlertConditions returns the conditions whose key starts with prefix and
// which are not "ok".
func (s *Store) AlertConditions(ctx context.Context, prefix string) ([]AlertCondition, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, condition, since, error FROM alert_conditions
		WHERE substr(key, 1, length($1)) = $1 AND condition <> $2 ORDER BY key`, prefix, ConditionOK)
	if err != nil {
		return nil, fmt.Errorf("reading alert conditions %s…: %w", prefix, err)
	}
	defer rows.Close()
	out := []AlertCondition{}
	for rows.Next() {
		var c AlertCondition
		if err := rows.Scan(&c.Key, &c.Condition, &c.Since, &c.Error); err != nil {
			return nil, fmt.Errorf("reading alert conditions %s…: %w", prefix, err)
		}
		c.Since = c.Since.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading alert conditions %s…: %w", prefix, err)
	}
	return out, nil
}

// ForgetAlertCondition removes key's condition without an event.
func (s *Store) ForgetAlertCondition(ctx context.Context, key string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM alert_conditions WHERE key = $1`, key); err != nil {
		return fmt.Errorf("forgetting alert condition %s: %w", key, err)
	}
	return nil
}

// QueueAlert records ev and queues it to every enabled subscription that
// wants its type; it returns how many deliveries were queued. An event no
// subscription wants is not recorded.
func (s *Store) QueueAlert(ctx context.Context, ev AlertEvent) (int, error) {
	var n int
	err := s.Write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = s.queueAlertTx(ctx, tx, ev)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// queueAlertTx queues ev in tx to every enabled subscription that wants it.
func (s *Store) queueAlertTx(ctx context.Context, tx *sql.Tx, ev AlertEvent) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, events FROM alert_subscriptions WHERE enabled ORDER BY id`)
	var subs []int64
	err = scanRows(rows, err, func(rs *sql.Rows) error {
		var id int64
		var events string
		if err := rs.Scan(&id, &events); err != nil {
			return err
		}
		var types []string
		if json.Unmarshal([]byte(events), &types) == nil && slices.Contains(types, ev.Type) {
			subs = append(subs, id)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queueing alert %s: reading subscriptions: %w", ev.Type, err)
	}
	if len(subs) == 0 {
		return 0, nil
	}
	if _, err := insertAlertEvent(ctx, tx, &ev); err != nil {
		return 0, err
	}
	for _, sub := range subs {
		if _, err := insertAlertDelivery(ctx, tx, sub, ev); err != nil {
			return 0, err
		}
	}
	return len(subs), nil
}

// maxAlertError bounds the error text an alert event or condition keeps:
// a server's answer (a Graph error body, say) can be tens of kilobytes,
// and every delivery, e-mail and page would carry it.
const maxAlertError = 2000

// alertText is s made storable (no NUL) and cut to maxAlertError bytes, on
// a character boundary, with "…" saying so.
func alertText(s string) string {
	s = text(s)
	if len(s) <= maxAlertError {
		return s
	}
	cut := maxAlertError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// insertAlertEvent records ev (setting its ID and times when unset) and
// returns its internal id.
func insertAlertEvent(ctx context.Context, tx *sql.Tx, ev *AlertEvent) (int64, error) {
	if ev.ID == "" {
		ev.ID = NewAlertEventID()
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = now()
	}
	ev.OccurredAt = ev.OccurredAt.UTC()
	var since *time.Time
	if !ev.Since.IsZero() {
		ev.Since = ev.Since.UTC()
		since = &ev.Since
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO alert_events (public_id, type, object_kind, object_name, previous, current,
		error, since, occurred_at, test, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		ev.ID, ev.Type, ev.ObjectKind, text(ev.ObjectName), ev.Previous, ev.Current, alertText(ev.Error), since, ev.OccurredAt,
		ev.Test, string(ev.Details)).Scan(&id); err != nil {
		return 0, fmt.Errorf("recording alert event %s: %w", ev.Type, err)
	}
	return id, nil
}

// insertAlertDelivery queues event ev (recorded) to subscription sub.
func insertAlertDelivery(ctx context.Context, tx *sql.Tx, sub int64, ev AlertEvent) (AlertDelivery, error) {
	t := now()
	d := AlertDelivery{PublicID: NewAlertDeliveryID(), SubscriptionID: sub, Event: ev, Status: RunPending,
		NextAttemptAt: t, CreatedAt: t}
	if err := tx.QueryRowContext(ctx, `INSERT INTO alert_deliveries (public_id, subscription_id, event_id, status, attempts,
		next_attempt_at, created_at, last_error) SELECT $1, $2, id, $3, 0, $4, $4, '' FROM alert_events WHERE public_id = $5
		RETURNING id`, d.PublicID, sub, RunPending, t, ev.ID).Scan(&d.ID); err != nil {
		return d, fmt.Errorf("queueing alert %s to subscription %d: %w", ev.Type, sub, err)
	}
	return d, nil
}

// QueueAlertTest queues ev to the subscription named name alone, enabled
// or not, whatever events it wants.
func (s *Store) QueueAlertTest(ctx context.Context, name string, ev AlertEvent) (AlertDelivery, error) {
	var d AlertDelivery
	err := s.Write(ctx, func(tx *sql.Tx) error {
		var sub int64
		var subName string
		err := tx.QueryRowContext(ctx, `SELECT id, name FROM alert_subscriptions WHERE name_lower = $1`, lower(name)).Scan(&sub, &subName)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alert subscription %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := insertAlertEvent(ctx, tx, &ev); err != nil {
			return err
		}
		d, err = insertAlertDelivery(ctx, tx, sub, ev)
		d.Subscription = subName
		return err
	})
	if err != nil {
		return AlertDelivery{}, fmt.Errorf("queueing a test alert to %s: %w", name, err)
	}
	return d, nil
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

const deliveryColumns = `d.id, d.public_id, d.subscription_id, s.name, d.status, d.attempts, d.next_attempt_at, d.created_at,
	d.delivered_at, d.last_error, e.public_id, e.type, e.object_kind, e.object_name, e.previous, e.current, e.error, e.since,
	e.occurred_at, e.test, e.details`

const deliveryFrom = ` FROM alert_deliveries d JOIN alert_subscriptions s ON s.id = d.subscription_id
	JOIN alert_events e ON e.id = d.event_id`

func scanDelivery(row interface{ Scan(...any) error }) (AlertDelivery, error) {
	var d AlertDelivery
	var since *time.Time
	var details string
	ev := &d.Event
	err := row.Scan(&d.ID, &d.PublicID, &d.SubscriptionID, &d.Subscription, &d.Status, &d.Attempts, &d.NextAttemptAt,
		&d.CreatedAt, &d.DeliveredAt, &d.LastError, &ev.ID, &ev.Type, &ev.ObjectKind, &ev.ObjectName, &ev.Previous,
		&ev.Current, &ev.Error, &since, &ev.OccurredAt, &ev.Test, &details)
	if err != nil {
		return d, err
	}
	d.NextAttemptAt, d.CreatedAt, ev.OccurredAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC(), ev.OccurredAt.UTC()
	if d.DeliveredAt != nil {
		t := d.DeliveredAt.UTC()
		d.DeliveredAt = &t
	}
	if since != nil {
		ev.Since = since.UTC()
	}
	if details != "" {
		ev.Details = json.RawMessage(details)
	}
	return d, nil
}

func collectDeliveries(rows *sql.Rows, err error) ([]AlertDelivery, error) {
	out := []AlertDelivery{}
	err = scanRows(rows, err, func(rs *sql.Rows) error {
		d, err := scanDelivery(rs)
		out = append(out, d)
		return err
	})
	return out, err
}

// The conditions of the partial indexes alert_deliveries_waiting and
// alert_deliveries_leased, as literals (see waitingRuns).
const (
	waitingAlerts = `status IN ('` + RunPending + `', '` + RunRetrying + `')`
	leasedAlerts  = `status = '` + RunDelivering + `'`
)

// ClaimAlertDeliveries leases up to limit due deliveries until now+lease,
// oldest due first; a delivery whose lease ran out (its sender died) is due
// again. Two senders, in one process or in several replicas, never claim
// the same delivery at once.
func (s *Store) ClaimAlertDeliveries(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]AlertDelivery, error) {
	now = now.UTC()
	var out []AlertDelivery
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE alert_deliveries SET status = CASE WHEN attempts = 0 THEN $1 ELSE $2 END,
			next_attempt_at = $3, locked_until = NULL WHERE `+leasedAlerts+` AND locked_until < $3`,
			RunPending, RunRetrying, now); err != nil {
			return fmt.Errorf("recovering deliveries whose lease ended: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE alert_deliveries SET status = $1, locked_until = $2
			WHERE `+idsClaimed(s.dialect, `SELECT id FROM alert_deliveries WHERE `+waitingAlerts+` AND next_attempt_at <= $3
				ORDER BY next_attempt_at LIMIT $4`)+` RETURNING id`, RunDelivering, now.Add(lease), now, limit)
		var ids []any
		var ps []string
		err = scanRows(rows, err, func(rs *sql.Rows) error {
			var id int64
			ids = append(ids, &id)
			ps = append(ps, fmt.Sprintf("$%d", len(ids)))
			return rs.Scan(&id)
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		for i, p := range ids {
			ids[i] = *p.(*int64)
		}
		out, err = collectDeliveries(tx.QueryContext(ctx, `SELECT `+deliveryColumns+deliveryFrom+` WHERE d.id IN (`+
			strings.Join(ps, ", ")+`)`, ids...))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming alert deliveries: %w", err)
	}
	slices.SortFunc(out, func(a, b AlertDelivery) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// FinishAlertAttempt records attempt a of delivery id and moves it to
// status (delivered, failed, or retrying at next), releasing its lease.
func (s *Store) FinishAlertAttempt(ctx context.Context, id int64, a Attempt, status string, next time.Time) error {
	t := now()
	var delivered *time.Time
	if status == RunDelivered {
		delivered = &t
	}
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `UPDATE alert_deliveries SET attempts = attempts + 1, status = $1, next_attempt_at = $2,
			locked_until = NULL, delivered_at = COALESCE($3, delivered_at), last_error = $4 WHERE id = $5 RETURNING attempts`,
			status, next.UTC(), delivered, text(a.Error), id).Scan(&a.N); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO alert_attempts (delivery_id, n, started_at, duration_ms, status_code, error, response)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, a.N, a.StartedAt.UTC(), a.Duration.Milliseconds(), a.StatusCode,
			text(a.Error), text(strings.ToValidUTF8(a.Response, "\uFFFD")))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("alert delivery %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("recording an attempt of alert delivery %d: %w", id, err)
	}
	return nil
}

// ReleaseAlertDelivery hands a claimed delivery back without an attempt,
// due at next (the rate limit).
func (s *Store) ReleaseAlertDelivery(ctx context.Context, id int64, next time.Time) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE alert_deliveries SET status = CASE WHEN attempts = 0 THEN $1 ELSE $2 END,
		next_attempt_at = $3, locked_until = NULL WHERE id = $4 AND status = $5`,
		RunPending, RunRetrying, next.UTC(), id, RunDelivering); err != nil {
		return fmt.Errorf("releasing alert delivery %d: %w", id, err)
	}
	return nil
}

// ListAlertDeliveries returns the subscription's deliveries, newest first,
// with ids below before (0: from the newest). ErrNotFound when there is no
// such subscription.
func (s *Store) ListAlertDeliveries(ctx context.Context, subscription string, before int64, limit int) ([]AlertDelivery, error) {
	var sub int64
	err := s.r.QueryRowContext(ctx, `SELECT id FROM alert_subscriptions WHERE name_lower = $1`, lower(subscription)).Scan(&sub)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("alert subscription %q: %w", subscription, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("listing deliveries of alert subscription %s: %w", subscription, err)
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	out, err := collectDeliveries(s.r.QueryContext(ctx, `SELECT `+deliveryColumns+deliveryFrom+`
		WHERE d.subscription_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3`, sub, before, limit))
	if err != nil {
		return nil, fmt.Errorf("listing deliveries of alert subscription %s: %w", subscription, err)
	}
	return out, nil
}

// GetAlertDelivery returns a delivery and its attempts.
func (s *Store) GetAlertDelivery(ctx context.Context, publicID string) (AlertDelivery, []Attempt, error) {
	d, err := scanDelivery(s.r.QueryRowContext(ctx, `SELECT `+deliveryColumns+deliveryFrom+` WHERE d.public_id = $1`, publicID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, nil, fmt.Errorf("alert delivery %q: %w", publicID, ErrNotFound)
	}
	if err != nil {
		return d, nil, fmt.Errorf("reading alert delivery %s: %w", publicID, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT n, started_at, duration_ms, status_code, error, response FROM alert_attempts
		WHERE delivery_id = $1 ORDER BY n`, d.ID)
	attempts := []Attempt{}
	err = scanRows(rows, err, func(rs *sql.Rows) error {
		var a Attempt
		var ms int64
		if err := rs.Scan(&a.N, &a.StartedAt, &ms, &a.StatusCode, &a.Error, &a.Response); err != nil {
			return err
		}
		a.StartedAt = a.StartedAt.UTC()
		a.Duration = time.Duration(ms) * time.Millisecond
		attempts = append(attempts, a)
		return nil
	})
	if err != nil {
		return d, nil, fmt.Errorf("reading attempts of alert delivery %s: %w", publicID, err)
	}
	return d, attempts, nil
}

// NextAlertDue returns when the next waiting delivery is due.
func (s *Store) NextAlertDue(ctx context.Context) (t time.Time, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT next_attempt_at FROM alert_deliveries WHERE `+waitingAlerts+`
		ORDER BY next_attempt_at LIMIT 1`).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("reading the next due alert delivery: %w", err)
	}
	return t.UTC(), true, nil
}

// runFailedTx queues run.failed for run id, which attempt a just moved to
// failed, in the transaction that did.
func (s *Store) runFailedTx(ctx context.Context, tx *sql.Tx, id int64, a Attempt, t time.Time) error {
	var publicID, flow, imap string
	var messageID int64
	var attempts int
	if err := tx.QueryRowContext(ctx, `SELECT public_id, flow_name, imap_name, message_id, attempts FROM runs WHERE id = $1`, id).
		Scan(&publicID, &flow, &imap, &messageID, &attempts); err != nil {
		return fmt.Errorf("reading failed run %d: %w", id, err)
	}
	details, err := json.Marshal(struct {
		Flow       string `json:"flow"`
		IMAP       string `json:"imap"`
		MessageID  int64  `json:"messageId"`
		Attempts   int    `json:"attempts"`
		StatusCode int    `json:"statusCode"`
		LastError  string `json:"lastError"`
	}{flow, imap, messageID, attempts, a.StatusCode, a.Error})
	if err != nil {
		return err
	}
	_, err = s.queueAlertTx(ctx, tx, AlertEvent{Type: alertRunFailed, ObjectKind: "run", ObjectName: publicID,
		Current: RunFailed, Error: a.Error, OccurredAt: t, Details: details})
	return err
}

// pruneAlerts deletes the alert deliveries finished (delivered or failed)
// before cutoff, their attempts, and the events left without a delivery.
func pruneAlerts(ctx context.Context, tx *sql.Tx, cutoff time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM alert_deliveries WHERE status IN ($1, $2)
		AND COALESCE(delivered_at, next_attempt_at) < $3`, RunDelivered, RunFailed, cutoff)
	if err != nil {
		return 0, fmt.Errorf("pruning alert deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM alert_events WHERE NOT EXISTS
			(SELECT 1 FROM alert_deliveries d WHERE d.event_id = alert_events.id)`); err != nil {
			return 0, fmt.Errorf("pruning alert events: %w", err)
		}
	}
	return n, nil
}
