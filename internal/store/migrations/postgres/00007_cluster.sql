-- +goose Up
-- Scale-out. replicas: the processes serving this database, each with a
-- heartbeat; a replica silent for longer than the lease time is taken for
-- dead. mailbox_leases: which replica reads each enabled configuration. A
-- lease is held until expires_at (the database's clock) and renewed by its
-- owner; token grows on every takeover, and a watcher's writes are checked
-- against the token it was started under (fencing), so a replica that lost
-- a lease cannot record a message or move a checkpoint. status is the
-- owner's last status of the mailbox (JSON), for the other replicas to show.
CREATE TABLE replicas (
	id           TEXT PRIMARY KEY,
	address      TEXT NOT NULL,
	version      TEXT NOT NULL,
	mailboxes    INTEGER NOT NULL DEFAULT 0,
	started_at   TIMESTAMPTZ NOT NULL,
	heartbeat_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE mailbox_leases (
	imap_id    BIGINT PRIMARY KEY REFERENCES imap_configs(id) ON DELETE CASCADE,
	owner      TEXT NOT NULL DEFAULT '',
	token      BIGINT NOT NULL DEFAULT 0,
	expires_at TIMESTAMPTZ NOT NULL,
	status     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX mailbox_leases_owner ON mailbox_leases(owner);

-- Which replica recorded each message, under which lease token: for the
-- operator, and for the check that a mailbox's messages never go back to an
-- older token (a replica that lost the lease wrote nothing after).
ALTER TABLE messages ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN lease_token;
ALTER TABLE messages DROP COLUMN replica;
DROP TABLE mailbox_leases;
DROP TABLE replicas;
