package sqldb

import (
	"context"
	"fmt"
	"time"
)

// Applied is one migration recorded in a component's goose version table.
type Applied struct {
	// Version is the migration's number (the 00001 of 00001_create.sql).
	Version int64
	// At is when it was applied, as the database recorded it (UTC).
	At time.Time
}

// Applied returns the migrations recorded as applied in the version table
// named table, oldest first, without the goose bootstrap row (version 0).
// A missing table gives (nil, false, nil): the component never migrated
// this database. Errors: the database's.
func (db *DB) Applied(ctx context.Context, table string) ([]Applied, bool, error) {
	var exists bool
	var q string
	switch db.Dialect {
	case SQLite:
		q = "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?"
	default:
		q = "SELECT COUNT(*) > 0 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
	}
	if err := db.QueryRowContext(ctx, db.Rebind(q), table).Scan(&exists); err != nil {
		return nil, false, fmt.Errorf("migration status %s: %w", table, err)
	}
	if !exists {
		return nil, false, nil
	}
	// goose keeps one row per up or down step; the latest row of a version
	// says whether it is applied.
	rows, err := db.QueryContext(ctx, "SELECT version_id, is_applied, tstamp FROM "+table+" ORDER BY id")
	if err != nil {
		return nil, true, fmt.Errorf("migration status %s: %w", table, err)
	}
	defer rows.Close()
	state := map[int64]Applied{}
	var order []int64
	for rows.Next() {
		var v int64
		var applied bool
		var at any
		if err := rows.Scan(&v, &applied, &at); err != nil {
			return nil, true, fmt.Errorf("migration status %s: %w", table, err)
		}
		if v == 0 {
			continue
		}
		if _, seen := state[v]; !seen {
			order = append(order, v)
		}
		if applied {
			state[v] = Applied{Version: v, At: parseStamp(at)}
		} else {
			delete(state, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, true, fmt.Errorf("migration status %s: %w", table, err)
	}
	var out []Applied
	for _, v := range order {
		if a, ok := state[v]; ok {
			out = append(out, a)
		}
	}
	return out, true, nil
}

// parseStamp reads goose's tstamp column: a time.Time from pgx, a string
// (or time) from SQLite.
func parseStamp(v any) time.Time {
	switch t := v.(type) {
	case time.Time:
		return t.UTC()
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00"} {
			if at, err := time.Parse(layout, t); err == nil {
				return at.UTC()
			}
		}
	case []byte:
		return parseStamp(string(t))
	}
	return time.Time{}
}
