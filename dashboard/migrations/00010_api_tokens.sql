-- API clients' own bearer tokens (apitokens.go). Valid on SQLite and PostgreSQL.

-- +goose Up
-- One row per client: name (unique), SHA-256 of the token (the token itself
-- is shown once), the sites it may read and act on (space separated; "" =
-- every site), who made it and when, and when it was revoked (NULL =
-- active).
CREATE TABLE api_tokens (
	name         TEXT PRIMARY KEY,
	token_sha256 TEXT NOT NULL UNIQUE,
	sites        TEXT NOT NULL,
	created_ms   BIGINT NOT NULL,
	created_by   TEXT NOT NULL,
	revoked_ms   BIGINT,
	last_used_ms BIGINT
);

-- +goose Down
DROP TABLE api_tokens;
