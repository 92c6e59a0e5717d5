-- Escalation, live settings, flapping and event deduplication. Valid on
-- SQLite and PostgreSQL (times are BIGINT unix milliseconds UTC).

-- +goose Up
-- Live settings: one JSON document per (kind, id). kind is recipient,
-- roster (id = site), policy or flapping (id = default); see
-- alerting/settings.go. Every change bumps the counter settings_version and
-- writes a settings_audit row in the same transaction.
CREATE TABLE alerting_settings (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE settings_audit (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    setting_id TEXT NOT NULL,
    -- old_body / new_body: the JSON document before and after; '' when the
    -- setting did not exist before (created) or after (deleted).
    old_body   TEXT NOT NULL,
    new_body   TEXT NOT NULL
);
INSERT INTO alerting_counters (name, value) VALUES ('settings_audit', 0);
INSERT INTO alerting_counters (name, value) VALUES ('settings_version', 0);

-- Escalation state of an alert: step is the index of the next step to fire
-- (>= the policy's step count: the next is a reminder), next_ms its due
-- time; NULL when nothing is pending (acknowledged, resolved, or the policy
-- has no more steps and no reminders). A step fires only through
-- UPDATE ... WHERE alert_id = ? AND step = ? inside a transaction that also
-- checks (and locks) the alert as open.
CREATE TABLE alert_escalations (
    alert_id   BIGINT PRIMARY KEY REFERENCES alerts (id),
    policy_id  TEXT NOT NULL,
    step       INTEGER NOT NULL,
    next_ms    BIGINT,
    reminders  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_escalations_due ON alert_escalations (next_ms);

-- The shift (from the site's roster) on duty when the alert opened, and its
-- flapping state: '' normal, 'repeating' (the one notice of a flapping
-- episode) or 'suppressed' (opened during an episode, not notified).
ALTER TABLE alerts ADD COLUMN shift TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN flap TEXT NOT NULL DEFAULT '';
CREATE INDEX alerts_dedup_opened ON alerts (dedup_key, opened_ms);

-- Device events (device, boot, seq) already raised, shared by every replica
-- and kept across restarts: a redelivery raises nothing.
CREATE TABLE alert_event_keys (
    event_key TEXT PRIMARY KEY,
    at_ms     BIGINT NOT NULL
);

-- Per-recipient delivery status of receivers that address people (e-mail):
-- sent or failed, with the last error.
CREATE TABLE alert_recipient_deliveries (
    notification_id TEXT NOT NULL,
    receiver        TEXT NOT NULL,
    recipient_id    TEXT NOT NULL,
    address         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, receiver, recipient_id)
);

-- +goose Down
DROP TABLE alert_recipient_deliveries;
DROP TABLE alert_event_keys;
DROP INDEX alerts_dedup_opened;
ALTER TABLE alerts DROP COLUMN flap;
ALTER TABLE alerts DROP COLUMN shift;
DROP TABLE alert_escalations;
DROP TABLE settings_audit;
DROP TABLE alerting_settings;
DELETE FROM alerting_counters WHERE name IN ('settings_audit', 'settings_version');
