-- +goose Up
CREATE TABLE users (
	id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	created_at    TIMESTAMPTZ NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         TEXT NOT NULL UNIQUE,
	token_hash   TEXT NOT NULL UNIQUE,
	created_at   TIMESTAMPTZ NOT NULL,
	last_used_at TIMESTAMPTZ
);

CREATE TABLE imap_configs (
	id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name                 TEXT NOT NULL,
	name_lower           TEXT NOT NULL UNIQUE,
	server_type          TEXT NOT NULL,
	type                 TEXT NOT NULL,
	description          TEXT NOT NULL,
	enabled              BOOLEAN NOT NULL,
	host                 TEXT NOT NULL,
	port                 INTEGER NOT NULL,
	username             TEXT NOT NULL,
	password_sealed      BYTEA,
	tenant_id            TEXT NOT NULL,
	client_id            TEXT NOT NULL,
	client_secret_sealed BYTEA,
	folder               TEXT NOT NULL,
	tls                  TEXT NOT NULL,
	ca_cert              TEXT NOT NULL,
	after_processing     TEXT NOT NULL,
	move_to              TEXT NOT NULL,
	poll_interval        INTEGER NOT NULL,
	backlog              TEXT NOT NULL,
	graph_url            TEXT NOT NULL,
	authority_url        TEXT NOT NULL,
	auth                 TEXT NOT NULL,
	token_url            TEXT NOT NULL,
	scope                TEXT NOT NULL,
	created_at           TIMESTAMPTZ NOT NULL,
	updated_at           TIMESTAMPTZ NOT NULL
);

-- Flows are filled in by the flows API; the table exists now so that deleting
-- an IMAP configuration can check which flows name it.
CREATE TABLE flows (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name        TEXT NOT NULL,
	name_lower  TEXT NOT NULL UNIQUE,
	imap_id     BIGINT REFERENCES imap_configs(id) ON DELETE RESTRICT,
	enabled     BOOLEAN NOT NULL,
	definition  TEXT NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX flows_imap_id ON flows(imap_id);

-- +goose Down
DROP TABLE flows;
DROP TABLE imap_configs;
DROP TABLE api_tokens;
DROP TABLE users;
