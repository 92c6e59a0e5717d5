-- Rules (issue 5, section 1): per-resident thresholds and their audit trail.
-- Valid on SQLite and PostgreSQL. Bounds are NULL when the Go value is NaN
-- (no bound); durations are milliseconds; times unix ms UTC.

-- +goose Up
CREATE TABLE resident_thresholds (
    resident_id TEXT NOT NULL,
    -- type is the alert type the threshold raises (spo2_low, heart_rate, ...).
    type        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    field       TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    unit        TEXT NOT NULL DEFAULT '',
    low         DOUBLE PRECISION,
    high        DOUBLE PRECISION,
    sustain_ms  BIGINT NOT NULL,
    clear_low   DOUBLE PRECISION,
    clear_high  DOUBLE PRECISION,
    clear_ms    BIGINT NOT NULL DEFAULT 0,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (resident_id, type),
    CHECK (severity IN ('critical', 'high', 'warning'))
);

-- Every change of a per-resident threshold: who, when, before and after
-- (JSON, "" when there was none / it was deleted).
CREATE TABLE resident_threshold_changes (
    id          BIGINT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    action      TEXT NOT NULL,
    before_json TEXT NOT NULL DEFAULT '',
    after_json  TEXT NOT NULL DEFAULT '',
    CHECK (action IN ('set', 'delete'))
);
CREATE INDEX resident_threshold_changes_resident ON resident_threshold_changes (resident_id, at_ms);
INSERT INTO alerting_counters (name, value) VALUES ('threshold_change', 0);

-- +goose Down
DELETE FROM alerting_counters WHERE name = 'threshold_change';
DROP TABLE resident_threshold_changes;
DROP TABLE resident_thresholds;
