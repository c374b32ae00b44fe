-- +goose Up
-- The raw messages and the other columns that hold message bytes are
-- compressed with lz4 instead of pglz (issue 15): on the backlog bench
-- pglz_compress was a third of the server's CPU, and a 25-message batch's
-- INSERT took 60 ms with pglz, 31 ms with lz4 (37 ms uncompressed), while
-- lz4 still compresses the text of a message. The columns: messages.raw
-- and message_chunks.data (the raw message, whole or in 1 MiB chunks), and
-- the decoded copies that messages without a layout still store
-- (messages.text_body, messages.html_body, attachments.content).
--
-- SET COMPRESSION changes only the catalogue (no table rewrite, a brief
-- lock): values written from now on are compressed with lz4; the rows
-- already there are not rewritten and keep pglz (a dump restored into a
-- new database writes them all with lz4). Both are read alike.
--
-- Left as it is, pglz, where lz4 cannot be had: before PostgreSQL 14 (no
-- column compression methods) and on a server built without lz4 (which
-- rejects lz4 and does not list it among default_toast_compression's
-- values). The statements are EXECUTEd so that an older server does not
-- reject the block's syntax.
-- +goose StatementBegin
DO $$
BEGIN
	IF current_setting('server_version_num')::int < 140000 THEN
		RAISE NOTICE 'PostgreSQL before 14: messages stay compressed with pglz';
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		RAISE NOTICE 'PostgreSQL built without lz4: messages stay compressed with pglz';
		RETURN;
	END IF;
	EXECUTE 'ALTER TABLE messages ALTER COLUMN raw SET COMPRESSION lz4, '
		'ALTER COLUMN text_body SET COMPRESSION lz4, ALTER COLUMN html_body SET COMPRESSION lz4';
	EXECUTE 'ALTER TABLE message_chunks ALTER COLUMN data SET COMPRESSION lz4';
	EXECUTE 'ALTER TABLE attachments ALTER COLUMN content SET COMPRESSION lz4';
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Back to the server's default (default_toast_compression, pglz unless
-- set otherwise), as before; values written with lz4 stay so, and read.
-- +goose StatementBegin
DO $$
BEGIN
	IF current_setting('server_version_num')::int < 140000 THEN
		RETURN;
	END IF;
	EXECUTE 'ALTER TABLE messages ALTER COLUMN raw SET COMPRESSION DEFAULT, '
		'ALTER COLUMN text_body SET COMPRESSION DEFAULT, ALTER COLUMN html_body SET COMPRESSION DEFAULT';
	EXECUTE 'ALTER TABLE message_chunks ALTER COLUMN data SET COMPRESSION DEFAULT';
	EXECUTE 'ALTER TABLE attachments ALTER COLUMN content SET COMPRESSION DEFAULT';
END
$$;
-- +goose StatementEnd
