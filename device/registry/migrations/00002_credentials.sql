-- Per-device MQTT credentials (usually a gateway's). The username is the
-- device id; password_hash is Mosquitto's "$7$" PBKDF2-SHA512 format, so the
-- same hash serves the embedded broker and an exported Mosquitto password
-- file. No plaintext is stored.

-- +goose Up
CREATE TABLE device_credentials (
    device_id     TEXT PRIMARY KEY REFERENCES devices (id),
    password_hash TEXT NOT NULL
);

-- +goose Down
DROP TABLE device_credentials;
