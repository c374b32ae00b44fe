-- +goose Up
-- Alerts (issue 18). A subscription says where alerts go (a signed webhook or
-- e-mail) and which event types it wants (events: a JSON array of types;
-- recipients: a JSON array of addresses). The webhook signing secret is
-- sealed for its row.
CREATE TABLE alert_subscriptions (
	id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name          TEXT NOT NULL,
	name_lower    TEXT NOT NULL UNIQUE,
	description   TEXT NOT NULL,
	kind          TEXT NOT NULL,
	url           TEXT NOT NULL,
	recipients    TEXT NOT NULL,
	secret_sealed BYTEA,
	events        TEXT NOT NULL,
	enabled       BOOLEAN NOT NULL,
	created_at    TIMESTAMPTZ NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL
);

-- An event is one thing that happened (a mailbox failing, a run failed …),
-- recorded once with the deliveries it was queued to. details is a JSON
-- object of the type's own fields ('' for none).
CREATE TABLE alert_events (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	public_id   TEXT NOT NULL UNIQUE,
	type        TEXT NOT NULL,
	object_kind TEXT NOT NULL,
	object_name TEXT NOT NULL,
	previous    TEXT NOT NULL,
	current     TEXT NOT NULL,
	error       TEXT NOT NULL,
	since       TIMESTAMPTZ,
	occurred_at TIMESTAMPTZ NOT NULL,
	test        BOOLEAN NOT NULL,
	details     TEXT NOT NULL
);

-- A delivery is one event on its way to one subscription: a queue of its
-- own, claimed with a lease as runs are (alert deliveries are not runs).
CREATE TABLE alert_deliveries (
	id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	public_id       TEXT NOT NULL UNIQUE,
	subscription_id BIGINT NOT NULL REFERENCES alert_subscriptions(id) ON DELETE CASCADE,
	event_id        BIGINT NOT NULL REFERENCES alert_events(id) ON DELETE CASCADE,
	status          TEXT NOT NULL,
	attempts        INTEGER NOT NULL,
	next_attempt_at TIMESTAMPTZ NOT NULL,
	locked_until    TIMESTAMPTZ,
	created_at      TIMESTAMPTZ NOT NULL,
	delivered_at    TIMESTAMPTZ,
	last_error      TEXT NOT NULL
);
CREATE INDEX alert_deliveries_waiting ON alert_deliveries(next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX alert_deliveries_leased ON alert_deliveries(locked_until) WHERE status = 'delivering';
CREATE INDEX alert_deliveries_subscription ON alert_deliveries(subscription_id, id);
CREATE INDEX alert_deliveries_event ON alert_deliveries(event_id);

CREATE TABLE alert_attempts (
	delivery_id BIGINT NOT NULL REFERENCES alert_deliveries(id) ON DELETE CASCADE,
	n           INTEGER NOT NULL,
	started_at  TIMESTAMPTZ NOT NULL,
	duration_ms BIGINT NOT NULL,
	status_code INTEGER NOT NULL,
	error       TEXT NOT NULL,
	response    TEXT NOT NULL,
	PRIMARY KEY (delivery_id, n)
);

-- The recorded condition of what alerts watch (mailbox:<id>, runs:backlog,
-- replica:<id>), so that each transition makes one event, across restarts
-- and replicas. No row: ok.
CREATE TABLE alert_conditions (
	key        TEXT PRIMARY KEY,
	condition  TEXT NOT NULL,
	since      TIMESTAMPTZ NOT NULL,
	error      TEXT NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE alert_conditions;
DROP TABLE alert_attempts;
DROP TABLE alert_deliveries;
DROP TABLE alert_events;
DROP TABLE alert_subscriptions;
