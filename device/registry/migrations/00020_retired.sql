-- Rows retired from the admin pages (issue 13, onboarding): the retired
-- site, room, bed, resident, device or meal card with everything deleted
-- with it (bindings, care settings, limits, credential) as a JSON record,
-- who retired it, when (unix ms UTC) and why. Valid on SQLite and
-- PostgreSQL.

-- +goose Up
CREATE TABLE registry_retired (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    retired_by TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    record     TEXT NOT NULL,
    PRIMARY KEY (kind, id, at_ms)
);

-- +goose Down
DROP TABLE registry_retired;
