-- +goose Up
-- The unique ids (UIDL) of the POP3 messages already read, per
-- configuration: the checkpoint of a POP3 mailbox. message_id is the message
-- recorded (NULL for mail marked seen without reading it, as backlog "new"
-- does on the first connect). Ids no longer on the server are forgotten.
CREATE TABLE pop3_uidls (
	imap_id    BIGINT NOT NULL,
	uidl       TEXT NOT NULL,
	message_id BIGINT,
	PRIMARY KEY (imap_id, uidl)
);

-- +goose Down
DROP TABLE pop3_uidls;
