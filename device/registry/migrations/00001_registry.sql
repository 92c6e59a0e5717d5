-- Registry schema. Valid on SQLite and PostgreSQL: ids are TEXT, times are
-- BIGINT unix milliseconds UTC, flags are BOOLEAN.

-- +goose Up
CREATE TABLE sites (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    time_zone TEXT NOT NULL
);

CREATE TABLE rooms (
    id      TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites (id),
    name    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rooms_site ON rooms (site_id);

CREATE TABLE beds (
    id      TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id),
    site_id TEXT NOT NULL REFERENCES sites (id),
    name    TEXT NOT NULL DEFAULT '',
    nursing BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX beds_site ON beds (site_id);

CREATE TABLE residents (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites (id),
    bed_id     TEXT REFERENCES beds (id),
    name       TEXT NOT NULL,
    birth_year INTEGER NOT NULL DEFAULT 0,
    vulnerable BOOLEAN NOT NULL DEFAULT FALSE,
    notes      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX residents_site ON residents (site_id);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites (id),
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    bed_id     TEXT REFERENCES beds (id),
    gateway_id TEXT
);
CREATE INDEX devices_site ON devices (site_id);

CREATE TABLE meal_cards (
    id          TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL REFERENCES residents (id)
);

CREATE TABLE device_bindings (
    device_id   TEXT NOT NULL REFERENCES devices (id),
    resident_id TEXT NOT NULL REFERENCES residents (id),
    from_ms     BIGINT NOT NULL,
    to_ms       BIGINT,
    PRIMARY KEY (device_id, from_ms),
    CHECK (to_ms IS NULL OR to_ms > from_ms)
);
CREATE INDEX device_bindings_resident ON device_bindings (resident_id);

-- +goose Down
DROP TABLE device_bindings;
DROP TABLE meal_cards;
DROP TABLE devices;
DROP TABLE residents;
DROP TABLE beds;
DROP TABLE rooms;
DROP TABLE sites;
