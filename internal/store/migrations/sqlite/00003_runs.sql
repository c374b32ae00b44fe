-- +goose Up
-- The secrets of a flow's activities (webhook signing secrets), sealed as
-- one JSON array, one entry per activity.
ALTER TABLE flows ADD COLUMN secrets_sealed BLOB;

-- Per recorded message and flow on its mailbox: whether it matched, and why not.
CREATE TABLE message_matches (
	message_id BIGINT NOT NULL,
	flow_id    BIGINT NOT NULL,
	flow_name  TEXT NOT NULL,
	matched    BOOLEAN NOT NULL,
	reason     TEXT NOT NULL,
	PRIMARY KEY (message_id, flow_id)
);

-- A run is one start of a flow by one message, and the delivery job of its
-- activities. seq is 0 for the run the message started; a forced
-- re-trigger adds runs with seq 1, 2 …
CREATE TABLE runs (
	id              INTEGER PRIMARY KEY,
	public_id       TEXT NOT NULL UNIQUE,
	flow_id         BIGINT NOT NULL,
	flow_name       TEXT NOT NULL,
	message_id      BIGINT NOT NULL,
	imap_name       TEXT NOT NULL,
	seq             INTEGER NOT NULL,
	status          TEXT NOT NULL,
	attempts        INTEGER NOT NULL,
	next_attempt_at TIMESTAMP NOT NULL,
	locked_until    TIMESTAMP,
	created_at      TIMESTAMP NOT NULL,
	received_at     TIMESTAMP NOT NULL,
	delivered_at    TIMESTAMP,
	last_error      TEXT NOT NULL,
	UNIQUE (flow_id, message_id, seq)
);
CREATE INDEX runs_due ON runs(status, next_attempt_at);
CREATE INDEX runs_flow ON runs(flow_name, id);

CREATE TABLE run_attempts (
	run_id      BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	n           INTEGER NOT NULL,
	started_at  TIMESTAMP NOT NULL,
	duration_ms BIGINT NOT NULL,
	status_code INTEGER NOT NULL,
	error       TEXT NOT NULL,
	response    TEXT NOT NULL,
	PRIMARY KEY (run_id, n)
);

-- +goose Down
DROP TABLE run_attempts;
DROP TABLE runs;
DROP TABLE message_matches;
ALTER TABLE flows DROP COLUMN secrets_sealed;
