-- Dashboard accounts and audit log. Valid on SQLite and PostgreSQL: times are
-- BIGINT unix milliseconds UTC; ids come from dashboard_counters inside the
-- writing transaction, so no dialect-specific auto-increment is needed.
-- Applied by dashboard.OpenAccounts with version table dashboard_version.

-- +goose Up
CREATE TABLE dashboard_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO dashboard_counters (name, value) VALUES ('user', 0);
INSERT INTO dashboard_counters (name, value) VALUES ('audit', 0);

CREATE TABLE dashboard_users (
    id            BIGINT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    -- PHC string "$argon2id$v=19$m=...,t=...,p=...$salt$hash".
    password_hash TEXT NOT NULL,
    lang          TEXT NOT NULL DEFAULT 'en',
    -- space-separated registry ids (device.ValidateID: no spaces).
    sites         TEXT NOT NULL DEFAULT '',
    residents     TEXT NOT NULL DEFAULT '',
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE dashboard_audit (
    id         BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    user_id    BIGINT NOT NULL DEFAULT 0,
    username   TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT '',
    ip         TEXT NOT NULL DEFAULT '',
    -- the site of the resident or alert acted on ('' = none), so a manager
    -- reads the rows of their own sites.
    site_id    TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX dashboard_audit_at ON dashboard_audit (at_ms);
CREATE INDEX dashboard_audit_target ON dashboard_audit (target, at_ms);

-- +goose Down
DROP TABLE dashboard_audit;
DROP TABLE dashboard_users;
DROP TABLE dashboard_counters;
