-- +goose Up
-- SQLite's 00016 keeps here the largest id configurations and flows have
-- had, which it would otherwise hand out again (store.neverReused).
-- PostgreSQL's sequences never go back, so the table stays empty here; it
-- exists so that both databases have the same schema (TestSchemasAgree).
CREATE TABLE id_sequences (
	name TEXT PRIMARY KEY,
	last BIGINT NOT NULL
);

-- +goose Down
DROP TABLE id_sequences;
