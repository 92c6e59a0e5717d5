// Visits (issue 13 item 6): each vulnerable resident must be visited by
// their cadence (registry Resident.VisitCadenceDays; 0 = at least once per
// calendar month in the site's zone). A check_in event (card tap at the
// elder's home, the gateway's card reader, the app) records a visit in the
// alert store (table alert_visits); a resident not visited by the cadence
// raises `visit_overdue` once for the resident (the resident's routing:
// the team responsible); the next visit resolves it.

package alerting

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// TypeVisitOverdue: a vulnerable resident was not visited within their
// visit cadence. Warning.
const TypeVisitOverdue = "visit_overdue"

// Visit is one recorded visit to a resident.
type Visit struct {
	Resident string
	Site     string
	At       time.Time
	Device   string
	Method   string
	Staff    string
}

// recordVisit stores v (a redelivery changes nothing).
func (m *Manager) recordVisit(ctx context.Context, v Visit) error {
	_, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_visits (resident_id, site_id, at_ms, device_id, method, staff)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (resident_id, at_ms, device_id) DO NOTHING`),
		v.Resident, v.Site, v.At.UnixMilli(), v.Device, v.Method, v.Staff)
	if err != nil {
		return fmt.Errorf("record visit to %s: %w", v.Resident, err)
	}
	return nil
}

// LastVisit returns when resident was last visited at or before t (zero
// and false if never).
func (m *Manager) LastVisit(ctx context.Context, resident string, t time.Time) (time.Time, bool, error) {
	var ms sql.NullInt64
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT MAX(at_ms) FROM alert_visits WHERE resident_id = ? AND at_ms <= ?`),
		resident, t.UnixMilli()).Scan(&ms)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("last visit of %s: %w", resident, err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64), true, nil
}

// visitedBetween reports whether resident had a visit in [from, to).
func (m *Manager) visitedBetween(ctx context.Context, resident string, from, to time.Time) (bool, error) {
	var n int
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT COUNT(*) FROM alert_visits WHERE resident_id = ? AND at_ms >= ? AND at_ms < ?`),
		resident, from.UnixMilli(), to.UnixMilli()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("visits of %s: %w", resident, err)
	}
	return n > 0, nil
}

// checkIn records a check_in event as a visit: to its "resident"
// attribute, else the resident bound to the device, else every vulnerable
// resident of the topic's site (a home's own card reader).
func (s *Service) checkIn(ctx context.Context, t device.Topic, e *device.Event) error {
	at := e.Time()
	method, _ := e.Attrs["method"].(string)
	staff, _ := e.Attrs["staff"].(string)
	var who []string
	if r, ok := e.Attrs["resident"].(string); ok && r != "" {
		who = []string{r}
	} else if r, ok := s.residentOf(t.Device, at); ok {
		who = []string{r}
	} else if s.cfg.Programme.Residents != nil {
		rs, err := s.cfg.Programme.Residents(ctx)
		if err != nil {
			return fmt.Errorf("list residents for a check_in: %w", err)
		}
		for _, r := range rs {
			if r.SiteID == t.Site && r.Vulnerable {
				who = append(who, r.ID)
			}
		}
	}
	for _, r := range who {
		v := Visit{Resident: r, Site: t.Site, At: at, Device: t.Device, Method: method, Staff: staff}
		if err := s.durably(ctx, "visit to "+r, func(ctx context.Context) error { return s.m.recordVisit(ctx, v) }); err != nil {
			return err
		}
		id := r
		s.cmds.mu.Lock()
		for k := range s.cmds.visitsRaised {
			if len(k) > len(r) && k[:len(r)+1] == r+"|" {
				delete(s.cmds.visitsRaised, k)
			}
		}
		s.cmds.mu.Unlock()
		if err := s.autoResolve(ctx, alertKey(&id, "", TypeVisitOverdue),
			"cleared: visited at "+at.In(s.location(t.Site)).Format("2006-01-02 15:04")+" ("+method+")"); err != nil {
			return err
		}
	}
	return nil
}

// tickVisits raises visit_overdue for each vulnerable resident whose last
// cadence period (a calendar month in the site's zone by default, else
// VisitCadenceDays days since the last visit) ended without a visit.
// Periods that started before the first check (since) are not judged.
func (s *Service) tickVisits(ctx context.Context, residents []registry.Resident, now time.Time) error {
	s.cmds.mu.Lock()
	if s.cmds.visitsSince.IsZero() {
		s.cmds.visitsSince = now
	}
	since := s.cmds.visitsSince
	s.cmds.mu.Unlock()
	for _, r := range residents {
		if !r.Vulnerable {
			continue
		}
		var key, detail string
		if r.VisitCadenceDays == 0 {
			l := now.In(s.location(r.SiteID))
			thisMonth := time.Date(l.Year(), l.Month(), 1, 0, 0, 0, 0, l.Location())
			lastMonth := time.Date(l.Year(), l.Month()-1, 1, 0, 0, 0, 0, l.Location())
			if lastMonth.Before(since) {
				continue
			}
			var visited bool
			err := s.durably(ctx, "visits of "+r.ID, func(ctx context.Context) error {
				var err error
				visited, err = s.m.visitedBetween(ctx, r.ID, lastMonth, thisMonth)
				return err
			})
			if err != nil {
				return err
			}
			if visited {
				continue
			}
			key = r.ID + "|" + lastMonth.Format("2006-01")
			detail = "not visited in " + lastMonth.Format("January 2006") + " (cadence: at least once per calendar month)"
		} else {
			var last time.Time
			var ok bool
			err := s.durably(ctx, "last visit of "+r.ID, func(ctx context.Context) error {
				var err error
				last, ok, err = s.m.LastVisit(ctx, r.ID, now)
				return err
			})
			if err != nil {
				return err
			}
			from := last
			if !ok || from.Before(since) {
				from = since
			}
			cadence := time.Duration(r.VisitCadenceDays) * 24 * time.Hour
			if now.Sub(from) <= cadence {
				continue
			}
			key = r.ID + "|" + from.UTC().Format(time.RFC3339)
			if ok {
				detail = fmt.Sprintf("last visited %s, more than %d days ago", last.In(s.location(r.SiteID)).Format("2006-01-02 15:04"), r.VisitCadenceDays)
			} else {
				detail = fmt.Sprintf("no visit recorded in the %d days of the cadence", r.VisitCadenceDays)
			}
		}
		s.cmds.mu.Lock()
		done := s.cmds.visitsRaised[key]
		s.cmds.visitsRaised[key] = true
		s.cmds.mu.Unlock()
		if done {
			continue
		}
		id := r.ID
		if err := s.raiseFor(ctx, openSpec{Site: r.SiteID, Resident: &id, Device: "", Type: TypeVisitOverdue, Severity: SeverityWarning,
			At: now, Detail: detail}); err != nil {
			return err
		}
	}
	return nil
}
