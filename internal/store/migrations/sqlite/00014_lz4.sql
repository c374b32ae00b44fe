-- +goose Up
-- Nothing on SQLite: PostgreSQL's 00014 compresses messages with lz4
-- instead of pglz. Here so that a schema version means the same migrations
-- on both databases.
SELECT 1;

-- +goose Down
SELECT 1;
