-- +goose Up
-- The replica registry (see the PostgreSQL migration). On SQLite there is
-- only ever one replica (a second process refuses to start), so mailboxes
-- are not leased; mailbox_leases exists so that both schemas agree.
CREATE TABLE replicas (
	id           TEXT PRIMARY KEY,
	address      TEXT NOT NULL,
	version      TEXT NOT NULL,
	mailboxes    INTEGER NOT NULL DEFAULT 0,
	started_at   TIMESTAMP NOT NULL,
	heartbeat_at TIMESTAMP NOT NULL
);

CREATE TABLE mailbox_leases (
	imap_id    INTEGER PRIMARY KEY REFERENCES imap_configs(id) ON DELETE CASCADE,
	owner      TEXT NOT NULL DEFAULT '',
	token      INTEGER NOT NULL DEFAULT 0,
	expires_at TIMESTAMP NOT NULL,
	status     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX mailbox_leases_owner ON mailbox_leases(owner);

-- Which replica recorded each message, under which lease token: for the
-- operator, and for the check that a mailbox's messages never go back to an
-- older token (a replica that lost the lease wrote nothing after).
ALTER TABLE messages ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN lease_token;
ALTER TABLE messages DROP COLUMN replica;
DROP TABLE mailbox_leases;
DROP TABLE replicas;
