-- Browser sessions and login-limit counters live in the store, so a
-- restart logs nobody out and dashboard replicas behind a load balancer
-- share them (issue 15 item 8). Valid on SQLite and PostgreSQL: times are
-- BIGINT unix milliseconds UTC.

-- +goose Up
CREATE TABLE dashboard_sessions (
    -- hex SHA-256 of the session id: the cookie value is never stored, so
    -- a copy of the database does not hold live sessions.
    id_hash    TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- last request (or open live stream) of the session: the idle timeout
    -- counts from here.
    seen_ms    BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_ms);

-- Failed logins per key: "pair:<username>|<ip>", "user:<username>" and
-- "ip:<address>". until_ms is the earliest time of the next attempt.
CREATE TABLE dashboard_login_limits (
    lkey     TEXT PRIMARY KEY,
    username TEXT NOT NULL DEFAULT '',
    fails    BIGINT NOT NULL DEFAULT 0,
    last_ms  BIGINT NOT NULL DEFAULT 0,
    until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX dashboard_login_limits_user ON dashboard_login_limits (username);

-- +goose Down
DROP TABLE dashboard_login_limits;
DROP TABLE dashboard_sessions;
