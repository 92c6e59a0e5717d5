-- Alert history (issue 14, item 2): staff comments on alerts and the index
-- of the history list. Valid on SQLite and PostgreSQL (times BIGINT unix
-- milliseconds UTC; comment ids from alerting_counters).

-- +goose Up
-- One row per comment a person wrote on an alert (dashboard page or API):
-- author is the staff user name, channel dashboard, api or api:<client>,
-- body the text as written (checked by alerting.CheckComment: 1 to 2000
-- characters, no control characters but line breaks and tabs).
CREATE TABLE alert_comments (
    id       BIGINT PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    at_ms    BIGINT NOT NULL,
    author   TEXT NOT NULL,
    channel  TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX alert_comments_alert ON alert_comments (alert_id, id);
INSERT INTO alerting_counters (name, value) VALUES ('comment', 0);

-- The history list pages newest first by (opened_ms, id).
CREATE INDEX alerts_opened_id ON alerts (opened_ms, id);

-- +goose Down
DROP INDEX alerts_opened_id;
DELETE FROM alerting_counters WHERE name = 'comment';
DROP TABLE alert_comments;
