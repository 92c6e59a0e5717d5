-- The manager's pages (manager_store.go): report settings and shift
-- handover notes. Valid on SQLite and PostgreSQL: times are BIGINT unix
-- milliseconds UTC.

-- +goose Up
-- One row per setting: response_target_s (seconds), response_target_share
-- (0..1), shift_starts ("07:00,15:00,23:00"); a missing row is the
-- documented default. updated_by is the username that last saved it.
CREATE TABLE manager_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- One row per handover note: the site, the shift it hands over (day,
-- evening or night) and the local date that shift started on, who wrote it
-- and when, and the text (at most 2000 characters).
CREATE TABLE handover_notes (
    site_id     TEXT NOT NULL,
    shift       TEXT NOT NULL,
    shift_date  TEXT NOT NULL,
    written_ms  BIGINT NOT NULL,
    author      TEXT NOT NULL,
    author_name TEXT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (site_id, written_ms, author)
);
CREATE INDEX handover_notes_written ON handover_notes (written_ms);

-- +goose Down
DROP TABLE handover_notes;
DROP TABLE manager_settings;
