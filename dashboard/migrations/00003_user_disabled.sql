-- An administrator can disable an account (its sessions end and it can no
-- longer log in) without deleting its audit trail. 0 = active, 1 = disabled.

-- +goose Up
ALTER TABLE dashboard_users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE dashboard_users DROP COLUMN disabled;
