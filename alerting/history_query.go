// Alert history: the filtered, paged list of past and present alerts
// (QueryHistory) and one alert's full timeline (Timeline), read by the
// dashboard's /alerts/history pages, their CSV and the JSON API.

package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// History page sizes ([HistoryQuery.Limit]).
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 1000
)

// HistoryQuery selects alerts for [Manager.QueryHistory]. Zero fields
// select everything; the conditions are joined with AND.
type HistoryQuery struct {
	// From and To bound the opening time: From <= opened < To (zero: no
	// bound).
	From, To time.Time
	// Sites keeps the alerts of these sites; nil keeps every site, an
	// empty non-nil slice none (a user who sees no site).
	Sites []string
	// Site keeps one site ("" any).
	Site string
	// Resident keeps one resident's alerts ("" any).
	Resident string
	// Place, if non-nil, keeps the alerts of its residents, and the
	// alerts without a resident raised by its devices: a ward, resolved
	// from the registry by the caller. An empty Place keeps nothing.
	Place *HistoryPlace
	// Types, Severities, Statuses and Outcomes keep alerts whose field is
	// one of the values (nil or empty: any).
	Types      []string
	Severities []string
	Statuses   []string
	Outcomes   []string
	// Responder keeps alerts acknowledged or resolved by this user name.
	Responder string
	// Text keeps alerts whose note, detail or any comment contains it
	// (case-insensitive for ASCII letters), or whose resident is one of
	// TextResidents (the residents whose names, in any language, match
	// Text: the registry's, found by the caller).
	Text          string
	TextResidents []string
	// Before continues a listing after the last alert of the previous
	// page (HistoryPage.Next).
	Before *Cursor
	// Limit is the page size, 1 to MaxHistoryLimit; 0 means
	// DefaultHistoryLimit.
	Limit int
}

// HistoryPlace is a set of residents and devices (a ward's).
type HistoryPlace struct {
	Residents []string
	Devices   []string
}

// Cursor is the position after an alert in the history order (opened
// time then id, both descending). Its text form is "<opened unix ms>-<id>".
type Cursor struct {
	OpenedMS int64
	ID       int64
}

// String is the cursor's text form, e.g. "1765090000000-42".
func (c Cursor) String() string { return fmt.Sprintf("%d-%d", c.OpenedMS, c.ID) }

// ParseCursor parses a cursor's text form.
func ParseCursor(s string) (Cursor, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseInt(a, 10, 64)
	id, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || ms < 0 || id <= 0 {
		return Cursor{}, fmt.Errorf("cursor %q: want <opened unix ms>-<alert id>", truncateText(s, 40))
	}
	return Cursor{OpenedMS: ms, ID: id}, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// HistoryPage is one page of [Manager.QueryHistory]: the alerts, newest
// opened first, and Next, the cursor of the following page (nil on the
// last page).
type HistoryPage struct {
	Alerts []Alert `json:"alerts"`
	Next   *Cursor `json:"-"`
}

// likePattern is text as a LIKE pattern that matches it anywhere, with %,
// _ and \ escaped (ESCAPE '\'), lower-cased.
func likePattern(text string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(text)) + "%"
}

// QueryHistory returns one page of the alerts that match q, newest opened
// first (opened time, then id, descending: a stable order, so paging with
// HistoryPage.Next neither repeats nor skips an alert while new alerts
// arrive). Errors: a Limit out of range; the store's.
func (m *Manager) QueryHistory(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultHistoryLimit
	}
	if limit < 1 || limit > MaxHistoryLimit {
		return HistoryPage{}, fmt.Errorf("history: limit %d is not from 1 to %d", q.Limit, MaxHistoryLimit)
	}
	var (
		where []string
		args  []any
	)
	in := func(col string, vals []string) {
		where = append(where, col+" IN (?"+strings.Repeat(", ?", len(vals)-1)+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if q.Sites != nil {
		if len(q.Sites) == 0 {
			return HistoryPage{Alerts: []Alert{}}, nil
		}
		in("site_id", q.Sites)
	}
	if q.Place != nil {
		var or []string
		if len(q.Place.Residents) > 0 {
			or = append(or, "resident_id IN (?"+strings.Repeat(", ?", len(q.Place.Residents)-1)+")")
			for _, v := range q.Place.Residents {
				args = append(args, v)
			}
		}
		if len(q.Place.Devices) > 0 {
			or = append(or, "(resident_id IS NULL AND device_id IN (?"+strings.Repeat(", ?", len(q.Place.Devices)-1)+"))")
			for _, v := range q.Place.Devices {
				args = append(args, v)
			}
		}
		if len(or) == 0 {
			return HistoryPage{Alerts: []Alert{}}, nil
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	if !q.From.IsZero() {
		where = append(where, "opened_ms >= ?")
		args = append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		where = append(where, "opened_ms < ?")
		args = append(args, q.To.UnixMilli())
	}
	if q.Site != "" {
		where = append(where, "site_id = ?")
		args = append(args, q.Site)
	}
	if q.Resident != "" {
		where = append(where, "resident_id = ?")
		args = append(args, q.Resident)
	}
	for _, f := range []struct {
		col  string
		vals []string
	}{{"type", q.Types}, {"severity", q.Severities}, {"status", q.Statuses}, {"outcome", q.Outcomes}} {
		if len(f.vals) > 0 {
			in(f.col, f.vals)
		}
	}
	if q.Responder != "" {
		where = append(where, "(acknowledged_by = ? OR resolved_by = ?)")
		args = append(args, q.Responder, q.Responder)
	}
	if q.Text != "" {
		p := likePattern(q.Text)
		or := []string{`LOWER(note) LIKE ? ESCAPE '\'`, `LOWER(detail) LIKE ? ESCAPE '\'`,
			`EXISTS (SELECT 1 FROM alert_comments c WHERE c.alert_id = alerts.id AND LOWER(c.body) LIKE ? ESCAPE '\')`}
		args = append(args, p, p, p)
		if len(q.TextResidents) > 0 {
			or = append(or, "resident_id IN (?"+strings.Repeat(", ?", len(q.TextResidents)-1)+")")
			for _, v := range q.TextResidents {
				args = append(args, v)
			}
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	if q.Before != nil {
		where = append(where, "(opened_ms < ? OR (opened_ms = ? AND id < ?))")
		args = append(args, q.Before.OpenedMS, q.Before.OpenedMS, q.Before.ID)
	}
	sqlq := "SELECT " + alertColumns + " FROM alerts"
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	sqlq += fmt.Sprintf(" ORDER BY opened_ms DESC, id DESC LIMIT %d", limit+1)
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(sqlq), args...)
	if err != nil {
		return HistoryPage{}, fmt.Errorf("query alert history: %w", err)
	}
	defer rows.Close()
	out := HistoryPage{Alerts: []Alert{}}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return HistoryPage{}, fmt.Errorf("query alert history: %w", err)
		}
		out.Alerts = append(out.Alerts, a)
	}
	if err := rows.Err(); err != nil {
		return HistoryPage{}, fmt.Errorf("query alert history: %w", err)
	}
	if len(out.Alerts) > limit {
		out.Alerts = out.Alerts[:limit]
		last := out.Alerts[limit-1]
		out.Next = &Cursor{OpenedMS: last.OpenedAt.UnixMilli(), ID: last.ID}
	}
	return out, nil
}

// NotificationRecord is one notification of an alert as its timeline shows it:
// the event announced, when it was queued and, once every receiver was
// done, when it was settled; the people an escalation policy paged with
// it; and its delivery to each receiver (and recipient, for e-mail).
type NotificationRecord struct {
	ID    string    `json:"id"`
	Event string    `json:"event"`
	At    time.Time `json:"at"`
	// SettledAt is when every receiver was done with it (sent, skipped or
	// failed); nil while a receiver still tries.
	SettledAt  *time.Time  `json:"settled_at"`
	Escalation *Escalation `json:"escalation,omitempty"`
	Deliveries []Delivery  `json:"deliveries"`
}

// Timeline is everything recorded about one alert: the alert, its history
// entries (opened, repeated, acknowledged, escalated, notified, resolved,
// system notes), the comments people wrote, its notifications with their
// deliveries, and its escalation state (nil when no policy covers it).
type Timeline struct {
	Alert         Alert                `json:"alert"`
	History       []HistoryEntry       `json:"history"`
	Comments      []Comment            `json:"comments"`
	Notifications []NotificationRecord `json:"notifications"`
	Escalation    *EscalationState     `json:"escalation"`
}

// Timeline returns the timeline of alert id, or an error wrapping
// ErrNotFound.
func (m *Manager) Timeline(ctx context.Context, id int64) (Timeline, error) {
	a, err := m.Get(ctx, id)
	if err != nil {
		return Timeline{}, err
	}
	t := Timeline{Alert: a}
	if t.History, err = m.History(ctx, id); err != nil {
		return Timeline{}, err
	}
	if t.History == nil {
		t.History = []HistoryEntry{}
	}
	if t.Comments, err = m.Comments(ctx, id); err != nil {
		return Timeline{}, err
	}
	if t.Notifications, err = m.notifications(ctx, id); err != nil {
		return Timeline{}, err
	}
	ds, err := m.Deliveries(ctx, id)
	if err != nil {
		return Timeline{}, err
	}
	byID := map[string]int{}
	for i, n := range t.Notifications {
		byID[n.ID] = i
	}
	for _, d := range ds {
		if i, ok := byID[d.NotificationID]; ok {
			t.Notifications[i].Deliveries = append(t.Notifications[i].Deliveries, d)
		}
	}
	st, ok, err := m.Escalation(ctx, id)
	if err != nil {
		return Timeline{}, err
	}
	if ok {
		t.Escalation = &st
	}
	return t, nil
}

// notifications reads alert id's outbox rows, oldest first.
func (m *Manager) notifications(ctx context.Context, id int64) ([]NotificationRecord, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT id, event, created_ms, sent_ms, payload FROM alert_outbox WHERE alert_id = ? ORDER BY seq`), id)
	if err != nil {
		return nil, fmt.Errorf("notifications of alert %d: %w", id, err)
	}
	defer rows.Close()
	out := []NotificationRecord{}
	for rows.Next() {
		var (
			n       NotificationRecord
			created int64
			sent    *int64
			payload string
		)
		if err := rows.Scan(&n.ID, &n.Event, &created, &sent, &payload); err != nil {
			return nil, fmt.Errorf("notifications of alert %d: %w", id, err)
		}
		n.At = time.UnixMilli(created).UTC()
		if sent != nil {
			t := time.UnixMilli(*sent).UTC()
			n.SettledAt = &t
		}
		var body Notice
		if err := json.Unmarshal([]byte(payload), &body); err != nil {
			// An unreadable body loses only who was paged, not the row.
			m.log.Warn("alert history: notification body unreadable", "id", n.ID, "err", err)
		} else {
			n.Escalation = body.Escalation
		}
		n.Deliveries = []Delivery{}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notifications of alert %d: %w", id, err)
	}
	return out, nil
}

// Responders returns the distinct people who acknowledged or resolved an
// alert of sites (nil: every site; empty: none), sorted, at most 500: the
// choices of the history's responder filter.
func (m *Manager) Responders(ctx context.Context, sites []string) ([]string, error) {
	out := []string{}
	if sites != nil && len(sites) == 0 {
		return out, nil
	}
	where, args := "", []any{}
	if sites != nil {
		where = " AND site_id IN (?" + strings.Repeat(", ?", len(sites)-1) + ")"
		for _, s := range sites {
			args = append(args, s)
		}
	}
	q := `SELECT who FROM (SELECT acknowledged_by AS who FROM alerts WHERE acknowledged_by <> ''` + where +
		` UNION SELECT resolved_by AS who FROM alerts WHERE resolved_by <> ''` + where + `) r ORDER BY who LIMIT 500`
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(q), append(args, args...)...)
	if err != nil {
		return nil, fmt.Errorf("alert responders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var w string
		if err := rows.Scan(&w); err != nil {
			return nil, fmt.Errorf("alert responders: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}
