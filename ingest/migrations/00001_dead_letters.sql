-- Ingest's dead-letter store. Valid on SQLite and PostgreSQL: times are
-- BIGINT unix milliseconds UTC. Rows are only appended; an operator lists
-- them with `eldercare ingest dead-letters` and deletes them by hand.

-- +goose Up
CREATE TABLE ingest_dead_letters (
    -- key is "<topic>|<sha256 of payload>|<reason>|<detail>" hashed: a
    -- redelivered message that is refused again adds no second row.
    key         TEXT PRIMARY KEY,
    received_ms BIGINT NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX ingest_dead_letters_received ON ingest_dead_letters (received_ms);

-- +goose Down
DROP TABLE ingest_dead_letters;
