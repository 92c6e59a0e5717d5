-- Alert store schema. Valid on SQLite and PostgreSQL: times are BIGINT unix
-- milliseconds UTC; ids are allocated from alerting_counters inside the
-- writing transaction, so no dialect-specific auto-increment is needed.

-- +goose Up
CREATE TABLE alerting_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO alerting_counters (name, value) VALUES ('alert', 0);

CREATE TABLE alerts (
    id              BIGINT PRIMARY KEY,
    -- dedup_key is "resident:<id>:<type>" or "device:<id>:<type>"; at most one
    -- alert per key is not resolved (index alerts_open_dedup).
    dedup_key       TEXT NOT NULL,
    site_id         TEXT NOT NULL,
    resident_id     TEXT,
    device_id       TEXT NOT NULL,
    type            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    status          TEXT NOT NULL,
    opened_ms       BIGINT NOT NULL,
    acknowledged_ms BIGINT,
    acknowledged_by TEXT NOT NULL DEFAULT '',
    resolved_ms     BIGINT,
    resolved_by     TEXT NOT NULL DEFAULT '',
    outcome         TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    value_num       DOUBLE PRECISION,
    history_seq     BIGINT NOT NULL DEFAULT 0,
    notify_seq      BIGINT NOT NULL DEFAULT 0,
    CHECK (status IN ('open', 'acknowledged', 'resolved')),
    CHECK (severity IN ('critical', 'high', 'warning'))
);
CREATE UNIQUE INDEX alerts_open_dedup ON alerts (dedup_key) WHERE status <> 'resolved';
CREATE INDEX alerts_status_opened ON alerts (status, opened_ms);
CREATE INDEX alerts_site_opened ON alerts (site_id, opened_ms);
CREATE INDEX alerts_resident_opened ON alerts (resident_id, opened_ms);

CREATE TABLE alert_history (
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    seq      BIGINT NOT NULL,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    channel  TEXT NOT NULL,
    action   TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alert_id, seq)
);

-- One row per notification ("alert-<id>-<seq>"), written in the transaction
-- of the change it announces. sent_ms is set once every receiver has it (or
-- has refused it for good).
CREATE TABLE alert_outbox (
    id          TEXT PRIMARY KEY,
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    seq         BIGINT NOT NULL,
    event       TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    next_ms     BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_ms    BIGINT,
    sent_ms     BIGINT
);
CREATE INDEX alert_outbox_pending ON alert_outbox (next_ms) WHERE sent_ms IS NULL;

-- Delivery status of one notification at one receiver: sent, failed (a
-- permanent refusal, or retries exhausted) or retrying.
CREATE TABLE alert_deliveries (
    notification_id TEXT NOT NULL REFERENCES alert_outbox (id),
    receiver        TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, receiver)
);

-- +goose Down
DROP TABLE alert_deliveries;
DROP TABLE alert_outbox;
DROP TABLE alert_history;
DROP TABLE alerts;
DROP TABLE alerting_counters;
