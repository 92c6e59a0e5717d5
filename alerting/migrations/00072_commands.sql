-- Commands to devices (issue 13): requested by a dashboard in another
-- process (state requested, claimed by one alerting replica), and the
-- tracked state of every command (sent, acknowledged, confirmed, failed)
-- for the dashboards. updated_ms is unix ms UTC; params JSON. Valid on
-- SQLite and PostgreSQL.

-- +goose Up
CREATE TABLE alert_commands (
    id         TEXT    NOT NULL PRIMARY KEY,
    site_id    TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    params     TEXT    NOT NULL DEFAULT '',
    alert_id   BIGINT  NOT NULL DEFAULT 0,
    actor      TEXT    NOT NULL DEFAULT '',
    state      TEXT    NOT NULL,
    tries      INTEGER NOT NULL DEFAULT 0,
    detail     TEXT    NOT NULL DEFAULT '',
    updated_ms BIGINT  NOT NULL,
    claimed    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX alert_commands_updated ON alert_commands (updated_ms);
CREATE INDEX alert_commands_claimed ON alert_commands (claimed);

-- +goose Down
DROP TABLE alert_commands;
