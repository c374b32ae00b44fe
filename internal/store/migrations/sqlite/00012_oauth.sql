-- +goose Up
-- Delegated OAuth2 (issue 17). An oauth2-delegated configuration names its
-- provider (google, microsoft, custom) and, for custom, the authorization
-- endpoint (its token endpoint is token_url).
ALTER TABLE imap_configs ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE imap_configs ADD COLUMN auth_url TEXT NOT NULL DEFAULT '';

-- The sign-ins under way, one row per authorization URL handed out, taken
-- (deleted) by its callback or pruned once expired. state_hash is the hex
-- SHA-256 of the state on the URL, so that the table never holds a usable
-- state; verifier_sealed is the PKCE verifier, sealed for its state and
-- configuration. user_id is the user who started it (no foreign key: an API
-- token's user is not a row of users).
CREATE TABLE oauth_states (
	state_hash      TEXT PRIMARY KEY,
	imap_id         BIGINT NOT NULL REFERENCES imap_configs(id) ON DELETE CASCADE,
	user_id         BIGINT NOT NULL,
	verifier_sealed BLOB NOT NULL,
	redirect_uri    TEXT NOT NULL,
	expires_at      TIMESTAMP NOT NULL
);
CREATE INDEX oauth_states_expires_at ON oauth_states(expires_at);
CREATE INDEX oauth_states_imap_id ON oauth_states(imap_id);

-- The grant of an oauth2-delegated configuration after a sign-in: its
-- refresh token and cached access token, sealed for the configuration's
-- row (NULL access token: none cached), the account that signed in, and
-- why the grant stopped working (broken, '' while it works). It goes with
-- its configuration.
CREATE TABLE oauth_grants (
	imap_id              BIGINT PRIMARY KEY REFERENCES imap_configs(id) ON DELETE CASCADE,
	account              TEXT NOT NULL,
	refresh_token_sealed BLOB NOT NULL,
	access_token_sealed  BLOB,
	access_expiry        TIMESTAMP,
	signed_in_at         TIMESTAMP NOT NULL,
	broken               TEXT NOT NULL DEFAULT '',
	updated_at           TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE oauth_grants;
DROP TABLE oauth_states;
ALTER TABLE imap_configs DROP COLUMN auth_url;
ALTER TABLE imap_configs DROP COLUMN provider;
