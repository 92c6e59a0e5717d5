-- One-tap acknowledge links (acklink.go). Valid on SQLite and PostgreSQL.

-- +goose Up
-- ack_link_keys: the HMAC-SHA256 key that signs acknowledge links, made on
-- first use, shared by every process on this store (alerting signs,
-- dashboard verifies). ack_links_used: each link acknowledges once; its
-- nonce is kept with who used it.
CREATE TABLE ack_link_keys (
	id         INTEGER PRIMARY KEY,
	secret     TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);
CREATE TABLE ack_links_used (
	nonce     TEXT PRIMARY KEY,
	alert_id  BIGINT NOT NULL,
	recipient TEXT NOT NULL,
	channel   TEXT NOT NULL,
	used_ms   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE ack_links_used;
DROP TABLE ack_link_keys;
