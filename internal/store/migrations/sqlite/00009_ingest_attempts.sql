-- +goose Up
-- The crash-loop breaker (issue 12): per mailbox, the message (or the first
-- message of the batch) being parsed and recorded, written before the parse
-- and removed by the transaction that records it. A row found at start
-- means the service died on that message or batch: attempts counts the
-- starts that died on it, span how many messages from it the attempt
-- covered (the batch size; 1 for a single message). owner is the process
-- that wrote the note: a note of the process reading it is a failed
-- transaction, not a death.
CREATE TABLE ingest_attempts (
	imap_id    BIGINT PRIMARY KEY,
	msg_key    TEXT NOT NULL,
	attempts   INTEGER NOT NULL,
	span       INTEGER NOT NULL,
	owner      TEXT NOT NULL,
	updated_at TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE ingest_attempts;
