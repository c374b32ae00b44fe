-- +goose Up
-- Each message stored once (issue 15): the raw message is the record.
-- layout is the JSON of mail.Layout, where the text and HTML bodies and the
-- attachments are in the raw message and how to decode them; with a layout,
-- text_body, html_body and attachments.content are empty and decoded from
-- raw on read. '' means none: the decoded copies are stored as before.
ALTER TABLE messages ADD COLUMN layout TEXT NOT NULL DEFAULT '';

-- A raw message above 1 MiB, in 1 MiB chunks in order (messages.raw is
-- empty then). Plain rows rather than large objects or incremental blob
-- I/O: they go with their message (ON DELETE CASCADE), in the same
-- transaction, through database/sql, on both databases.
CREATE TABLE message_chunks (
	message_id BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	n          INTEGER NOT NULL,
	data       BYTEA NOT NULL,
	PRIMARY KEY (message_id, n)
);

-- Where the conversion of the messages recorded before this migration
-- stands (one row): the messages with ids up to upto are converted in
-- batches, each batch moving done_through in its own transaction.
CREATE TABLE message_conversion (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	done_through BIGINT NOT NULL,
	upto         BIGINT NOT NULL
);
INSERT INTO message_conversion (id, done_through, upto) SELECT 1, 0, COALESCE(MAX(id), 0) FROM messages;

-- +goose Down
-- Refused while a message is stored once: its bodies and attachments
-- would be lost with the layout (the check fails the migration).
CREATE TEMPORARY TABLE store_once_down_check (stored_once BIGINT CHECK (stored_once = 0));
INSERT INTO store_once_down_check SELECT COUNT(*) FROM messages
	WHERE layout <> '' OR id IN (SELECT message_id FROM message_chunks);
DROP TABLE store_once_down_check;
DROP TABLE message_conversion;
DROP TABLE message_chunks;
ALTER TABLE messages DROP COLUMN layout;
