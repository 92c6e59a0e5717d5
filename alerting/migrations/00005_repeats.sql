-- Repeats of an open alert. Valid on SQLite and PostgreSQL.

-- +goose Up
-- repeat_count: how many times the alert's condition was raised again while
-- it was open (each new distinct fall or SOS event; each further sustain
-- period of a vitals breach); last_occurred_ms: when it last occurred (the
-- event's or reading's device time, unix ms UTC; NULL on alerts older than
-- this migration).
ALTER TABLE alerts ADD COLUMN repeat_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_occurred_ms BIGINT;

-- +goose Down
ALTER TABLE alerts DROP COLUMN last_occurred_ms;
ALTER TABLE alerts DROP COLUMN repeat_count;
