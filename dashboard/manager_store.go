package dashboard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
)

// ReportSettings are the manager's report settings: the response-time
// target (default [alerting.DefaultResponseTarget], 90 % within 2 min) and
// the shift starts in the site's zone (default
// [alerting.DefaultShiftBounds], 07:00, 15:00, 23:00). They are saved by a
// manager or admin on /manager/trends (table manager_settings).
type ReportSettings struct {
	Target alerting.ResponseTarget
	Shifts alerting.ShiftBounds
}

// DefaultReportSettings are the settings before anyone saved them.
var DefaultReportSettings = ReportSettings{Target: alerting.DefaultResponseTarget, Shifts: alerting.DefaultShiftBounds}

// ParseShiftStarts reads "HH:MM,HH:MM,HH:MM" (day, evening, night starts).
// Errors: not three times, a bad time, or starts out of order.
func ParseShiftStarts(s string) (alerting.ShiftBounds, error) {
	parts := strings.Split(strings.ReplaceAll(s, " ", ""), ",")
	if len(parts) != 3 {
		return alerting.ShiftBounds{}, fmt.Errorf("shift starts %q: want three times HH:MM,HH:MM,HH:MM (day, evening, night)", truncate(s, 40))
	}
	var m [3]int
	for i, p := range parts {
		t, err := time.Parse("15:04", p)
		if err != nil {
			return alerting.ShiftBounds{}, fmt.Errorf("shift start %q: want HH:MM, e.g. 07:00", truncate(p, 16))
		}
		m[i] = t.Hour()*60 + t.Minute()
	}
	b := alerting.ShiftBounds{Day: m[0], Evening: m[1], Night: m[2]}
	return b, b.Validate()
}

// ShiftStarts formats b as ParseShiftStarts reads it.
func ShiftStarts(b alerting.ShiftBounds) string {
	f := func(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
	return f(b.Day) + "," + f(b.Evening) + "," + f(b.Night)
}

// ReportSettings returns the saved settings, defaults where none was
// saved. Errors: the database's; a stored value that no longer parses is
// replaced by its default.
func (a *Accounts) ReportSettings(ctx context.Context) (ReportSettings, error) {
	out := DefaultReportSettings
	rows, err := a.db.QueryContext(ctx, `SELECT name, value FROM manager_settings`)
	if err != nil {
		return out, fmt.Errorf("read report settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, v string
		if err := rows.Scan(&name, &v); err != nil {
			return out, fmt.Errorf("read report settings: %w", err)
		}
		switch name {
		case "response_target_s":
			if n, err := strconv.Atoi(v); err == nil {
				out.Target.Within = time.Duration(n) * time.Second
			}
		case "response_target_share":
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out.Target.Share = f
			}
		case "shift_starts":
			if b, err := ParseShiftStarts(v); err == nil {
				out.Shifts = b
			}
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("read report settings: %w", err)
	}
	if out.Target.Validate() != nil {
		out.Target = DefaultReportSettings.Target
	}
	return out, nil
}

// SaveReportSettings stores rs as set by user by. Errors: an invalid
// target or shift bounds, or the database's.
func (a *Accounts) SaveReportSettings(ctx context.Context, rs ReportSettings, by string) error {
	if err := errors.Join(rs.Target.Validate(), rs.Shifts.Validate()); err != nil {
		return err
	}
	now := a.now().UnixMilli()
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save report settings: %w", err)
	}
	defer tx.Rollback()
	for _, kv := range [][2]string{
		{"response_target_s", strconv.Itoa(int(rs.Target.Within / time.Second))},
		{"response_target_share", strconv.FormatFloat(rs.Target.Share, 'f', -1, 64)},
		{"shift_starts", ShiftStarts(rs.Shifts)},
	} {
		if _, err := tx.ExecContext(ctx, a.db.Rebind(`INSERT INTO manager_settings (name, value, updated_ms, updated_by) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by`),
			kv[0], kv[1], now, by); err != nil {
			return fmt.Errorf("save report settings: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save report settings: %w", err)
	}
	return nil
}

// MaxHandoverNote is the longest handover note, in characters.
const MaxHandoverNote = 2000

// HandoverNote is a note a nurse lead (or manager) writes at the end of a
// shift for the next one.
type HandoverNote struct {
	Site       string
	Shift      string // alerting.ShiftDay, ShiftEvening or ShiftNight
	ShiftDate  string // local date (site zone) the shift started, YYYY-MM-DD
	At         time.Time
	Author     string // username
	AuthorName string
	Body       string
}

// ErrBadNote marks a handover note refused for its content.
var ErrBadNote = errors.New("handover note refused")

// AddHandoverNote stores n (At set by the clock when zero). Errors
// wrapping ErrBadNote: an empty or too long body (see checkText), an
// unknown shift; else the database's.
func (a *Accounts) AddHandoverNote(ctx context.Context, n HandoverNote) error {
	n.Body = strings.TrimSpace(n.Body)
	if n.Body == "" {
		return fmt.Errorf("%w: note: write what the next shift needs to know", ErrBadNote)
	}
	if err := checkText("note", n.Body, MaxHandoverNote, true); err != nil {
		return fmt.Errorf("%w: %w", ErrBadNote, err)
	}
	if n.Shift != alerting.ShiftDay && n.Shift != alerting.ShiftEvening && n.Shift != alerting.ShiftNight {
		return fmt.Errorf("%w: shift %q: want day, evening or night", ErrBadNote, truncate(n.Shift, 16))
	}
	if n.At.IsZero() {
		n.At = a.now()
	}
	if _, err := a.db.ExecContext(ctx, a.db.Rebind(`INSERT INTO handover_notes (site_id, shift, shift_date, written_ms, author, author_name, body)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), n.Site, n.Shift, n.ShiftDate, n.At.UnixMilli(), n.Author, n.AuthorName, n.Body); err != nil {
		return fmt.Errorf("save handover note: %w", err)
	}
	return nil
}

// HandoverNotes returns the notes of site written in [from, to), newest
// first.
func (a *Accounts) HandoverNotes(ctx context.Context, site string, from, to time.Time) ([]HandoverNote, error) {
	rows, err := a.db.QueryContext(ctx, a.db.Rebind(`SELECT site_id, shift, shift_date, written_ms, author, author_name, body FROM handover_notes
		WHERE site_id = ? AND written_ms >= ? AND written_ms < ? ORDER BY written_ms DESC`), site, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read handover notes: %w", err)
	}
	defer rows.Close()
	var out []HandoverNote
	for rows.Next() {
		var n HandoverNote
		var ms int64
		if err := rows.Scan(&n.Site, &n.Shift, &n.ShiftDate, &ms, &n.Author, &n.AuthorName, &n.Body); err != nil {
			return nil, fmt.Errorf("read handover notes: %w", err)
		}
		n.At = time.UnixMilli(ms).UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read handover notes: %w", err)
	}
	return out, nil
}
