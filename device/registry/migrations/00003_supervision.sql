-- Device supervision: each device's expected report interval (0 = from its
-- kind), its power source (mains | battery | '' unknown), and per-kind report
-- intervals that override the built-in defaults (device.DefaultInterval).
-- Intervals are BIGINT milliseconds.

-- +goose Up
ALTER TABLE devices ADD COLUMN power TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN report_interval_ms BIGINT NOT NULL DEFAULT 0;

CREATE TABLE device_kinds (
    kind               TEXT PRIMARY KEY,
    report_interval_ms BIGINT NOT NULL CHECK (report_interval_ms > 0)
);

-- +goose Down
DROP TABLE device_kinds;
ALTER TABLE devices DROP COLUMN report_interval_ms;
ALTER TABLE devices DROP COLUMN power;
