-- +goose Up
-- Web UI login sessions (scs). token is the SHA-256 of the cookie's value, so
-- that the table never holds a usable session; data is the session's
-- encoded values; expiry is absolute (UTC).
CREATE TABLE sessions (
	token  TEXT PRIMARY KEY,
	data   BYTEA NOT NULL,
	expiry TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expiry);

-- +goose Down
DROP TABLE sessions;
