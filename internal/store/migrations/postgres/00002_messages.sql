-- +goose Up
-- Where each mailbox's reading stands: IMAP UIDVALIDITY and the last UID
-- recorded. It moves only in the transaction that records the messages.
CREATE TABLE mailbox_state (
	imap_id      BIGINT PRIMARY KEY,
	uid_validity BIGINT NOT NULL,
	last_uid     BIGINT NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL
);

-- Every message read. imap_id has no foreign key: deleting a configuration
-- keeps its history, and imap_name keeps the name it had.
CREATE TABLE messages (
	id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	imap_id       BIGINT NOT NULL,
	imap_name     TEXT NOT NULL,
	uid_validity  BIGINT NOT NULL,
	uid           BIGINT NOT NULL,
	message_id    TEXT NOT NULL,
	dedupe_key    TEXT NOT NULL,
	subject       TEXT NOT NULL,
	from_json     TEXT NOT NULL,
	to_json       TEXT NOT NULL,
	cc_json       TEXT NOT NULL,
	reply_to_json TEXT NOT NULL,
	date          TIMESTAMPTZ,
	size          BIGINT NOT NULL,
	received_at   TIMESTAMPTZ NOT NULL,
	parse_error   TEXT NOT NULL,
	too_large     BOOLEAN NOT NULL,
	text_body     TEXT NOT NULL,
	html_body     TEXT NOT NULL,
	raw           BYTEA NOT NULL,
	UNIQUE (imap_id, uid_validity, uid)
);
CREATE INDEX messages_dedupe ON messages(imap_id, dedupe_key);
CREATE INDEX messages_imap_name ON messages(imap_name, id);

CREATE TABLE attachments (
	message_id   BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	n            INTEGER NOT NULL,
	filename     TEXT NOT NULL,
	content_type TEXT NOT NULL,
	size         BIGINT NOT NULL,
	sha256       TEXT NOT NULL,
	inline       BOOLEAN NOT NULL,
	content_id   TEXT NOT NULL,
	content      BYTEA NOT NULL,
	PRIMARY KEY (message_id, n)
);

-- After-processing (seen, delete, move) owed to the server for messages
-- already committed; done after the commit and redone after a crash.
CREATE TABLE pending_actions (
	imap_id      BIGINT NOT NULL,
	uid_validity BIGINT NOT NULL,
	uid          BIGINT NOT NULL,
	action       TEXT NOT NULL,
	move_to      TEXT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (imap_id, uid_validity, uid)
);

-- +goose Down
DROP TABLE pending_actions;
DROP TABLE attachments;
DROP TABLE messages;
DROP TABLE mailbox_state;
