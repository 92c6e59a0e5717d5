// Stage 3, store: the trend reports of the manager's pages (issue 14 item 5): every alert of a period
// with its first response, and the share answered within a target by any grouping (site, ward, shift).

package alerting

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// AlertResponse is one alert opened in a report period with its first
// response: the first acknowledgement, or the resolution when a person
// resolved it without acknowledging first (someone answered it). Changes
// by the system (ActorSystem: a rule clearing an alert) are not responses.
type AlertResponse struct {
	ID       int64
	Site     string
	Resident string // "" = no resident (a site or unassigned device alert)
	Device   string
	Type     string
	Severity string
	Opened   time.Time // UTC
	// RespondedAt is the time of the first response (UTC); nil when no
	// person acknowledged or resolved the alert.
	RespondedAt *time.Time
	// Responder is the user (or API client) who responded; Channel where
	// the response came from (dashboard, api, ack_link, station, ...);
	// Action is ActionAcknowledged or ActionResolved. "" when RespondedAt
	// is nil.
	Responder, Channel, Action string
}

// ResponseTime is RespondedAt - Opened (ok false when never responded).
func (a AlertResponse) ResponseTime() (time.Duration, bool) {
	if a.RespondedAt == nil {
		return 0, false
	}
	return a.RespondedAt.Sub(a.Opened), true
}

// AlertResponses returns every alert opened in [from, to) with its first
// response (see [AlertResponse]), oldest first. Errors: the store's,
// wrapped.
func (m *Manager) AlertResponses(ctx context.Context, from, to time.Time) ([]AlertResponse, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT a.id, a.site_id, COALESCE(a.resident_id, ''), a.device_id, a.type, a.severity, a.opened_ms,
			h.at_ms, COALESCE(h.actor, ''), COALESCE(h.channel, ''), COALESCE(h.action, '')
		FROM alerts a LEFT JOIN alert_history h ON h.alert_id = a.id AND h.seq = (
			SELECT MIN(h2.seq) FROM alert_history h2 WHERE h2.alert_id = a.id AND h2.action IN (?, ?) AND h2.actor <> ?)
		WHERE a.opened_ms >= ? AND a.opened_ms < ? ORDER BY a.opened_ms, a.id`),
		ActionAcknowledged, ActionResolved, ActorSystem, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("alert responses: %w", err)
	}
	defer rows.Close()
	var out []AlertResponse
	for rows.Next() {
		var a AlertResponse
		var opened int64
		var at sql.NullInt64
		if err := rows.Scan(&a.ID, &a.Site, &a.Resident, &a.Device, &a.Type, &a.Severity, &opened, &at, &a.Responder, &a.Channel, &a.Action); err != nil {
			return nil, fmt.Errorf("alert responses: %w", err)
		}
		a.Opened = time.UnixMilli(opened).UTC()
		if at.Valid {
			t := time.UnixMilli(at.Int64).UTC()
			a.RespondedAt = &t
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert responses: %w", err)
	}
	return out, nil
}

// ResponseTarget is a response-time target: Share of the alerts answered
// (first response, see [AlertResponse]) within Within. The programme's
// default is [DefaultResponseTarget].
type ResponseTarget struct {
	Within time.Duration
	Share  float64 // 0..1
}

// DefaultResponseTarget: 90 % of alerts acknowledged within 2 minutes.
// The figure is ours (a common nurse-call service level), not from a
// standard; a manager changes it on the trends page.
var DefaultResponseTarget = ResponseTarget{Within: 2 * time.Minute, Share: 0.9}

// Validate reports a target outside (0, 24 h] or a share outside (0, 1].
func (t ResponseTarget) Validate() error {
	if t.Within <= 0 || t.Within > 24*time.Hour {
		return fmt.Errorf("response target %s: want more than 0 and at most 24h", t.Within)
	}
	if !(t.Share > 0 && t.Share <= 1) {
		return fmt.Errorf("response target share %g: want more than 0 and at most 1 (100 %%)", t.Share)
	}
	return nil
}

// TargetStat is the response of one group of alerts against a target.
// Alerts counts the group; Responded how many got a first response at
// all; Within how many within the target's Within. Share = Within /
// Alerts (an alert never answered counts against the target; NaN-free:
// 0 alerts give Share 0 and Met false). P50, P90 and P95 are
// nearest-rank percentiles of the response times of the responded
// alerts (nil when none).
type TargetStat struct {
	Key                       string
	Alerts, Responded, Within int
	Share                     float64
	Met                       bool // Alerts > 0 and Share >= the target's Share
	P50, P90, P95             *time.Duration
}

// SummariseResponses groups rs by key (alerts with key "" are skipped)
// and compares each group with target; the groups come sorted by key.
func SummariseResponses(rs []AlertResponse, target ResponseTarget, key func(AlertResponse) string) []TargetStat {
	type acc struct {
		n, within int
		ds        []time.Duration
	}
	by := map[string]*acc{}
	for _, r := range rs {
		k := key(r)
		if k == "" {
			continue
		}
		a := by[k]
		if a == nil {
			a = &acc{}
			by[k] = a
		}
		a.n++
		if d, ok := r.ResponseTime(); ok {
			a.ds = append(a.ds, d)
			if d <= target.Within {
				a.within++
			}
		}
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]TargetStat, 0, len(keys))
	for _, k := range keys {
		a := by[k]
		st := TargetStat{Key: k, Alerts: a.n, Responded: len(a.ds), Within: a.within}
		if a.n > 0 {
			st.Share = float64(a.within) / float64(a.n)
			st.Met = st.Share >= target.Share
		}
		st.P50, st.P90, st.P95 = percentile(a.ds, 50), percentile(a.ds, 90), percentile(a.ds, 95)
		out = append(out, st)
	}
	return out
}

// Shift names of [ShiftBounds.Shift].
const (
	ShiftDay     = "day"
	ShiftEvening = "evening"
	ShiftNight   = "night"
)

// Shifts lists the shift names in the order of a day.
var Shifts = []string{ShiftDay, ShiftEvening, ShiftNight}

// ShiftBounds are the starts of the three care shifts as minutes after
// local midnight in the site's zone: day from Day to Evening, evening from
// Evening to Night, night from Night to the next day's Day (across
// midnight). Require 0 <= Day < Evening < Night < 1440.
type ShiftBounds struct {
	Day, Evening, Night int
}

// DefaultShiftBounds: day 07:00-15:00, evening 15:00-23:00, night
// 23:00-07:00 (the usual three eight-hour shifts of Chinese and European
// care homes; a manager changes them on the trends page).
var DefaultShiftBounds = ShiftBounds{Day: 7 * 60, Evening: 15 * 60, Night: 23 * 60}

// Validate reports bounds out of order or outside a day.
func (b ShiftBounds) Validate() error {
	if b.Day < 0 || b.Day >= b.Evening || b.Evening >= b.Night || b.Night >= 24*60 {
		return fmt.Errorf("shift starts %s, %s, %s: want day < evening < night within one day", minuteClock(b.Day), minuteClock(b.Evening), minuteClock(b.Night))
	}
	return nil
}

func minuteClock(min int) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

// Shift returns the shift of t in loc, and the local date the shift
// started on (a night shift after midnight started the day before), as
// YYYY-MM-DD.
func (b ShiftBounds) Shift(t time.Time, loc *time.Location) (name, started string) {
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	switch {
	case m >= b.Day && m < b.Evening:
		return ShiftDay, lt.Format(time.DateOnly)
	case m >= b.Evening && m < b.Night:
		return ShiftEvening, lt.Format(time.DateOnly)
	case m >= b.Night:
		return ShiftNight, lt.Format(time.DateOnly)
	}
	y, mo, d := lt.Date()
	return ShiftNight, time.Date(y, mo, d-1, 12, 0, 0, 0, loc).Format(time.DateOnly)
}

// OfflinePeriods returns, per device, how long it was offline in [from,
// to): the overlap of each device_offline alert with the period (an
// alert still open counts until min(now, to)). Errors: the store's.
func (m *Manager) OfflinePeriods(ctx context.Context, from, to, now time.Time) (map[string]time.Duration, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT device_id, opened_ms, resolved_ms FROM alerts
		WHERE type = ? AND opened_ms < ? AND (resolved_ms IS NULL OR resolved_ms > ?)`), TypeDeviceOffline, to.UnixMilli(), from.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("offline periods: %w", err)
	}
	defer rows.Close()
	end := to
	if now.Before(end) {
		end = now
	}
	out := map[string]time.Duration{}
	for rows.Next() {
		var dev string
		var opened int64
		var resolved sql.NullInt64
		if err := rows.Scan(&dev, &opened, &resolved); err != nil {
			return nil, fmt.Errorf("offline periods: %w", err)
		}
		a, b := time.UnixMilli(opened), end
		if resolved.Valid && time.UnixMilli(resolved.Int64).Before(b) {
			b = time.UnixMilli(resolved.Int64)
		}
		if a.Before(from) {
			a = from
		}
		if b.After(a) {
			out[dev] += b.Sub(a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offline periods: %w", err)
	}
	return out, nil
}

// VisitedResidents returns the residents with at least one recorded visit
// (alert_visits: check_in events) in [from, to), with the time of their
// last visit in it. Errors: the store's.
func (m *Manager) VisitedResidents(ctx context.Context, from, to time.Time) (map[string]time.Time, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT resident_id, MAX(at_ms) FROM alert_visits WHERE at_ms >= ? AND at_ms < ? GROUP BY resident_id`),
		from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("visited residents: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var ms int64
		if err := rows.Scan(&id, &ms); err != nil {
			return nil, fmt.Errorf("visited residents: %w", err)
		}
		out[id] = time.UnixMilli(ms).UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("visited residents: %w", err)
	}
	return out, nil
}
