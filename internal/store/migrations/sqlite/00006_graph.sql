-- +goose Up
-- The deltaLink of a Microsoft Graph mailbox (msgraph configurations): the
-- checkpoint of its delta query, moved in the transaction that records the
-- messages it covers. The Graph message ids read are remembered in
-- pop3_uidls, like POP3 unique ids. Empty for IMAP and POP3.
ALTER TABLE mailbox_state ADD COLUMN delta_link TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE mailbox_state DROP COLUMN delta_link;
