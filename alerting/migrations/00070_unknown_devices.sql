-- Devices that send data but are not in the registry (issue 13,
-- onboarding: the admin adopts them). One row per device id, at most a
-- bounded number of rows (alerting keeps the newest); first_ms/last_ms are
-- receive times, unix ms UTC; last_message a short summary of the last
-- message. Valid on SQLite and PostgreSQL.

-- +goose Up
CREATE TABLE alert_unknown_devices (
    device_id    TEXT   NOT NULL PRIMARY KEY,
    site_id      TEXT   NOT NULL,
    kind         TEXT   NOT NULL DEFAULT '',
    first_ms     BIGINT NOT NULL,
    last_ms      BIGINT NOT NULL,
    messages     BIGINT NOT NULL DEFAULT 0,
    last_message TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX alert_unknown_devices_last ON alert_unknown_devices (last_ms);

-- +goose Down
DROP TABLE alert_unknown_devices;
