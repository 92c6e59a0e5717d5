-- Visits to residents (check_in events), for the overdue-visit rule and the
-- visit coverage. Valid on SQLite and PostgreSQL.

-- +goose Up
-- One row per resident visited by a check_in: at_ms is the event's device
-- time (unix ms UTC); device_id the card reader, gateway or app device that
-- sent it; method card, app or reader; staff the user id when given.
CREATE TABLE alert_visits (
    resident_id TEXT   NOT NULL,
    site_id     TEXT   NOT NULL,
    at_ms       BIGINT NOT NULL,
    device_id   TEXT   NOT NULL,
    method      TEXT   NOT NULL DEFAULT '',
    staff       TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (resident_id, at_ms, device_id)
);

-- +goose Down
DROP TABLE alert_visits;
