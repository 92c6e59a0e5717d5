package ingest

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of ingest's own migrations.
const VersionTable = "ingest_version"

// DeadLetter is one message (or one point of it) that ingest refused.
type DeadLetter struct {
	// Received is when ingest received the message (ms precision).
	Received time.Time
	// Topic is the MQTT topic it came on.
	Topic string
	// Reason is the metric label: a protocol rule (device.Reason, e.g.
	// "json", "future", "too_old", "topic"), "invalid_point",
	// "reserved_field" or "influx_rejected".
	Reason string
	// Detail is the full error text; for influx_rejected it names the
	// refused point in line protocol and InfluxDB's answer.
	Detail string
	// Part is "" when the whole message was refused, and names the point
	// ("point 3", its index in the message) when InfluxDB refused one
	// point of it.
	Part string
	// Payload is the raw MQTT payload, as received (at most 256 KiB, the
	// protocol's payload limit). It is stored as text: invalid UTF-8 and NUL
	// bytes become U+FFFD, so a binary payload cannot make the insert fail.
	Payload []byte
}

// DeadLetters is the dead-letter store in a SQLite or PostgreSQL database
// (table ingest_dead_letters, migrations tracked in ingest_version). It is
// safe for concurrent use.
type DeadLetters struct {
	db *sqldb.DB
}

// OpenDeadLetters runs ingest's migrations on db and returns the store. db
// may be shared with other components.
func OpenDeadLetters(ctx context.Context, db *sqldb.DB) (*DeadLetters, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("ingest dead letters: %w", err)
	}
	if err := db.Migrate(ctx, sub, VersionTable); err != nil {
		return nil, fmt.Errorf("ingest dead letters: %w", err)
	}
	return &DeadLetters{db: db}, nil
}

// AddDeadLetter stores d. The same message (or point) refused again for the
// same reason, as after a redelivery, is stored once: the key is the topic,
// payload, reason and part, not the detail, which may name the receive
// time (how far in the future a reading was, a point's received_ms).
func (s *DeadLetters) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(d.Topic), d.Payload, []byte(d.Reason), []byte(d.Part)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	key := hex.EncodeToString(h.Sum(nil))
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO ingest_dead_letters (key, received_ms, topic, reason, detail, payload)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`),
		key, d.Received.UnixMilli(), d.Topic, d.Reason, textOf(d.Detail), textOf(string(d.Payload)))
	if err != nil {
		return fmt.Errorf("store dead letter from %s (%s): %w", d.Topic, d.Reason, err)
	}
	return nil
}

func textOf(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// List returns the newest limit dead letters, newest first; limit <= 0
// means 100.
func (s *DeadLetters) List(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT received_ms, topic, reason, detail, payload
		FROM ingest_dead_letters ORDER BY received_ms DESC, key LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var (
			ms      int64
			d       DeadLetter
			payload string
		)
		if err := rows.Scan(&ms, &d.Topic, &d.Reason, &d.Detail, &payload); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		d.Received = time.UnixMilli(ms)
		d.Payload = []byte(payload)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}
