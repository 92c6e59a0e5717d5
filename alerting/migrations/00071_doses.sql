-- Doses of residents' medication schedules as the pill box and the
-- dose_missed rule saw them (issue 13, adherence per week). One row per
-- resident, schedule slot (HH:MM local) and due time (unix ms UTC):
-- state taken (within the tolerance), late (after it) or missed (not
-- taken by the deadline, so far); taken_ms when taken. Valid on SQLite and
-- PostgreSQL.

-- +goose Up
CREATE TABLE alert_doses (
    resident_id TEXT   NOT NULL,
    slot        TEXT   NOT NULL,
    due_ms      BIGINT NOT NULL,
    site_id     TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    taken_ms    BIGINT,
    PRIMARY KEY (resident_id, slot, due_ms)
);
CREATE INDEX alert_doses_due ON alert_doses (due_ms);

-- +goose Down
DROP TABLE alert_doses;
