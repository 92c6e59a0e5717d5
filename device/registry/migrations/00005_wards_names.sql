-- Wards group a site's rooms (rosters, escalation, reports); display names
-- per language are a JSON object {"zh-CN": "..."} ('' = none).

-- +goose Up
ALTER TABLE rooms ADD COLUMN ward TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN names TEXT NOT NULL DEFAULT '';
ALTER TABLE residents ADD COLUMN names TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN names TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE devices DROP COLUMN names;
ALTER TABLE residents DROP COLUMN names;
ALTER TABLE rooms DROP COLUMN names;
ALTER TABLE rooms DROP COLUMN ward;
