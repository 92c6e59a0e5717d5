-- Per-receiver delivery queues: each receiver's worker claims, backs off and
-- records its own delivery of a notification, so a slow or failing receiver
-- never delays another. A delivery row is written when a worker first claims
-- the notification (status 'pending'), and kept up to date after each
-- attempt (sent, failed or retrying). The outbox row's lease_ms and next_ms
-- are no longer used; its sent_ms is set once every receiver is done.

-- +goose Up
ALTER TABLE alert_deliveries ADD COLUMN next_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE alert_deliveries ADD COLUMN lease_ms BIGINT;
CREATE INDEX alert_outbox_alert_seq ON alert_outbox (alert_id, seq);

-- +goose Down
DROP INDEX alert_outbox_alert_seq;
ALTER TABLE alert_deliveries DROP COLUMN lease_ms;
ALTER TABLE alert_deliveries DROP COLUMN next_ms;
