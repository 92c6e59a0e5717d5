-- The city programme's registry data (issue 13): bed types with a history
-- of conversions, residents' visit cadence, medication schedules and safe
-- zones, and per-device limits with sustain windows. Valid on SQLite and
-- PostgreSQL; times are BIGINT unix ms UTC, durations BIGINT ms.

-- +goose Up
ALTER TABLE beds ADD COLUMN bed_type TEXT NOT NULL DEFAULT 'ordinary';
UPDATE beds SET bed_type = 'nursing' WHERE nursing;

CREATE TABLE bed_type_changes (
    bed_id     TEXT NOT NULL REFERENCES beds (id),
    at_ms      BIGINT NOT NULL,
    from_type  TEXT NOT NULL,
    to_type    TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (bed_id, at_ms)
);

ALTER TABLE residents ADD COLUMN visit_cadence_days INTEGER NOT NULL DEFAULT 0;

CREATE TABLE medication_schedules (
    resident_id  TEXT NOT NULL REFERENCES residents (id),
    slot         TEXT NOT NULL,
    tolerance_ms BIGINT NOT NULL,
    medication   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (resident_id, slot)
);

-- shape is JSON: {"center":{"lat":..,"lon":..},"radius_m":..} or
-- {"polygon":[[lat,lon],...]}.
CREATE TABLE safe_zones (
    resident_id TEXT NOT NULL REFERENCES residents (id),
    name        TEXT NOT NULL,
    shape       TEXT NOT NULL,
    from_hhmm   TEXT NOT NULL DEFAULT '',
    to_hhmm     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (resident_id, name)
);

CREATE TABLE device_limits (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    field      TEXT NOT NULL,
    min_value  DOUBLE PRECISION,
    max_value  DOUBLE PRECISION,
    sustain_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, field)
);

-- +goose Down
DROP TABLE device_limits;
DROP TABLE safe_zones;
DROP TABLE medication_schedules;
ALTER TABLE residents DROP COLUMN visit_cadence_days;
DROP TABLE bed_type_changes;
ALTER TABLE beds DROP COLUMN bed_type;
