-- +goose Up
-- The largest id a mailbox configuration or a flow has ever had. SQLite,
-- without AUTOINCREMENT, gives a new row the largest id in the table plus
-- one, so after the newest configuration or flow was deleted its id went
-- to the next one created, and with the id what refers to it without a
-- foreign key: a configuration's checkpoint, seen ids, owed actions and
-- messages; a flow's runs and verdicts (a deleted flow's queued runs were
-- delivered to the new flow's webhook). The store now numbers new rows
-- above this (store.newID). The tables are not rebuilt with AUTOINCREMENT:
-- that needs foreign keys off, which a migration's transaction cannot do.
-- Seeded with the largest id still referred to anywhere, so that ids
-- deleted before this migration are not handed out again either.
CREATE TABLE id_sequences (
	name TEXT PRIMARY KEY,
	last BIGINT NOT NULL
);
INSERT INTO id_sequences (name, last) VALUES ('imap_configs', max(
	COALESCE((SELECT max(id) FROM imap_configs), 0),
	COALESCE((SELECT max(imap_id) FROM messages), 0),
	COALESCE((SELECT max(imap_id) FROM checkpoints), 0),
	COALESCE((SELECT max(imap_id) FROM seen_ids), 0),
	COALESCE((SELECT max(imap_id) FROM owed_actions), 0),
	COALESCE((SELECT max(imap_id) FROM ingest_attempts), 0)));
INSERT INTO id_sequences (name, last) VALUES ('flows', max(
	COALESCE((SELECT max(id) FROM flows), 0),
	COALESCE((SELECT max(flow_id) FROM runs), 0),
	COALESCE((SELECT max(flow_id) FROM message_matches), 0)));

-- +goose Down
DROP TABLE id_sequences;
