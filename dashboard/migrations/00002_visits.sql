-- Caregiver visits checked in from the caregiver view (POST
-- /residents/:id/checkin). Card taps at a home gateway are read from
-- InfluxDB (measurement events, type card_tap) and are not copied here.
-- Valid on SQLite and PostgreSQL: times are BIGINT unix milliseconds UTC.

-- +goose Up
CREATE TABLE dashboard_visits (
    resident_id TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    user_id     BIGINT NOT NULL DEFAULT 0,
    actor       TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT 'checkin'
);
CREATE INDEX dashboard_visits_at ON dashboard_visits (at_ms);
CREATE INDEX dashboard_visits_resident ON dashboard_visits (resident_id, at_ms);

-- +goose Down
DROP TABLE dashboard_visits;
