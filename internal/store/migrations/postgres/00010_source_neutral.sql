-- +goose Up
-- A store model that names no mail protocol (issue 14): one checkpoint per
-- mailbox in its source kind's terms, one table of the ids a mailbox has
-- read, one list of owed after-processing. The rows of mailbox_state,
-- pop3_uidls and pending_actions move here; nothing is read again.

-- Where reading each mailbox stands. kind is the source kind of the value:
-- 'imap': UIDVALIDITY and the last UID recorded, "%010d:%010d" (fixed
-- width, so that SQL can compare them); 'graph': the Microsoft Graph
-- deltaLink ('' until a delta round ends); 'pop3': '' (the row only says
-- that the first connect happened; the seen ids are the real checkpoint).
-- It moves only in the transaction that records the messages.
CREATE TABLE checkpoints (
	imap_id    BIGINT PRIMARY KEY,
	kind       TEXT NOT NULL,
	value      TEXT NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);
INSERT INTO checkpoints (imap_id, kind, value, updated_at)
SELECT s.imap_id,
	CASE WHEN s.uid_validity <> 0 THEN 'imap' WHEN s.delta_link <> '' OR c.type = 'msgraph' THEN 'graph' ELSE 'pop3' END,
	CASE WHEN s.uid_validity <> 0 THEN lpad(s.uid_validity::text, 10, '0') || ':' || lpad(s.last_uid::text, 10, '0') ELSE s.delta_link END,
	s.updated_at
FROM mailbox_state s LEFT JOIN imap_configs c ON c.id = s.imap_id;
DROP TABLE mailbox_state;

-- The ids of the messages a mailbox has read, for the sources that name
-- their messages by id: POP3 unique ids (UIDL) and Microsoft Graph message
-- ids. message_id is the message recorded (NULL for mail marked seen
-- without reading it, as backlog "new" does on the first connect). Ids no
-- longer on the server are forgotten.
CREATE TABLE seen_ids (
	imap_id    BIGINT NOT NULL,
	source_id  TEXT NOT NULL,
	message_id BIGINT,
	PRIMARY KEY (imap_id, source_id)
);
INSERT INTO seen_ids (imap_id, source_id, message_id) SELECT imap_id, uidl, message_id FROM pop3_uidls;
DROP TABLE pop3_uidls;

-- After-processing (seen, delete, move) owed to the server for messages
-- already committed (message_id); done after the commit and redone after a
-- crash. source_id is how the source names the message: kind 'imap':
-- "%010d:%010d" of its UIDVALIDITY and UID; 'graph': its Graph message id.
-- POP3 owes nothing here (the messages recorded are deleted by their seen
-- ids).
CREATE TABLE owed_actions (
	imap_id    BIGINT NOT NULL,
	message_id BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	source_id  TEXT NOT NULL,
	action     TEXT NOT NULL,
	move_to    TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (imap_id, message_id)
);
-- A Graph action is owed under UIDVALIDITY 0 for a message whose id is
-- remembered; one whose id was forgotten could not be done (and was not
-- listed as owed).
INSERT INTO owed_actions (imap_id, message_id, kind, source_id, action, move_to, created_at)
SELECT imap_id, message_id, kind, source_id, action, move_to, created_at FROM (
	SELECT p.imap_id, m.id AS message_id,
		CASE WHEN p.uid_validity = 0 THEN 'graph' ELSE 'imap' END AS kind,
		CASE WHEN p.uid_validity = 0
			THEN (SELECT MIN(u.source_id) FROM seen_ids u WHERE u.imap_id = p.imap_id AND u.message_id = m.id)
			ELSE lpad(p.uid_validity::text, 10, '0') || ':' || lpad(p.uid::text, 10, '0') END AS source_id,
		p.action, p.move_to, p.created_at
	FROM pending_actions p
	JOIN messages m ON m.imap_id = p.imap_id AND m.uid_validity = p.uid_validity AND m.uid = p.uid
) o WHERE source_id IS NOT NULL;
DROP TABLE pending_actions;

-- +goose Down
-- The tables of migrations 00002, 00005 and 00006 again, the rows moved back.
CREATE TABLE mailbox_state (
	imap_id      BIGINT PRIMARY KEY,
	uid_validity BIGINT NOT NULL,
	last_uid     BIGINT NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	delta_link   TEXT NOT NULL DEFAULT ''
);
INSERT INTO mailbox_state (imap_id, uid_validity, last_uid, updated_at, delta_link)
SELECT imap_id,
	CASE WHEN kind = 'imap' THEN CAST(substr(value, 1, 10) AS BIGINT) ELSE 0 END,
	CASE WHEN kind = 'imap' THEN CAST(substr(value, 12) AS BIGINT) ELSE 0 END,
	updated_at,
	CASE WHEN kind = 'graph' THEN value ELSE '' END
FROM checkpoints;
DROP TABLE checkpoints;

CREATE TABLE pop3_uidls (
	imap_id    BIGINT NOT NULL,
	uidl       TEXT NOT NULL,
	message_id BIGINT,
	PRIMARY KEY (imap_id, uidl)
);
INSERT INTO pop3_uidls (imap_id, uidl, message_id) SELECT imap_id, source_id, message_id FROM seen_ids;
DROP TABLE seen_ids;

CREATE TABLE pending_actions (
	imap_id      BIGINT NOT NULL,
	uid_validity BIGINT NOT NULL,
	uid          BIGINT NOT NULL,
	action       TEXT NOT NULL,
	move_to      TEXT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (imap_id, uid_validity, uid)
);
INSERT INTO pending_actions (imap_id, uid_validity, uid, action, move_to, created_at)
SELECT o.imap_id, m.uid_validity, m.uid, o.action, o.move_to, o.created_at
FROM owed_actions o JOIN messages m ON m.id = o.message_id;
DROP TABLE owed_actions;
