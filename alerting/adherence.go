// Medication adherence (issue 13 item 3): every scheduled dose the
// dose_missed rule judged and every dose_taken of a pill box is kept in
// table alert_doses, so caregivers, families and managers see per week how
// many doses were taken on time, late or missed.

package alerting

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Dose states of a [DoseRecord].
const (
	DoseTaken  = "taken"  // taken within the dose's tolerance
	DoseLate   = "late"   // taken after the tolerance (a dose_missed was or would have been raised)
	DoseMissed = "missed" // not taken by the deadline (so far)
)

// DoseRecord is one scheduled dose of a resident: its slot (HH:MM in the
// site's zone), due time, state and, when taken, the pill box's time.
type DoseRecord struct {
	Resident string
	Site     string
	Slot     string
	Due      time.Time
	State    string
	Taken    time.Time // zero: not taken
}

// doseTolerance is the tolerance of slot in the schedule of the resident
// bound to dev at at (registry snapshot); 0 when unknown.
func (s *Service) doseTolerance(dev, slot string, at time.Time) time.Duration {
	if s.residents == nil {
		return 0
	}
	r, ok := s.residents.ResidentAt(dev, at)
	if !ok {
		return 0
	}
	for _, d := range r.Medication {
		if d.Time == slot {
			return d.Tolerance
		}
	}
	return 0
}

// recordDose upserts x. A dose taken after it was recorded missed becomes
// late; a missed record never overwrites a taken or late one.
func (m *Manager) recordDose(ctx context.Context, x DoseRecord) error {
	var taken any
	if !x.Taken.IsZero() {
		taken = x.Taken.UnixMilli()
	}
	q := `INSERT INTO alert_doses (resident_id, slot, due_ms, site_id, state, taken_ms) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (resident_id, slot, due_ms) DO UPDATE SET state = CASE
			WHEN excluded.state = 'missed' THEN alert_doses.state
			WHEN alert_doses.state = 'missed' THEN 'late'
			ELSE excluded.state END,
		taken_ms = COALESCE(alert_doses.taken_ms, excluded.taken_ms)`
	if _, err := m.db.ExecContext(ctx, m.db.Rebind(q), x.Resident, x.Slot, x.Due.UnixMilli(), x.Site, x.State, taken); err != nil {
		return fmt.Errorf("record dose %s %s of %s: %w", x.Slot, x.Due.UTC().Format(time.RFC3339), x.Resident, err)
	}
	return nil
}

// Doses returns the dose records due in [from, to) of the residents given
// (none: every resident), ordered by resident and due time.
func (m *Manager) Doses(ctx context.Context, residents []string, from, to time.Time) ([]DoseRecord, error) {
	q := `SELECT resident_id, site_id, slot, due_ms, state, taken_ms FROM alert_doses WHERE due_ms >= ? AND due_ms < ?`
	args := []any{from.UnixMilli(), to.UnixMilli()}
	if len(residents) > 0 {
		q += ` AND resident_id IN (?` + strings.Repeat(`, ?`, len(residents)-1) + `)`
		for _, r := range residents {
			args = append(args, r)
		}
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(q+` ORDER BY resident_id, due_ms, slot`), args...)
	if err != nil {
		return nil, fmt.Errorf("list doses: %w", err)
	}
	defer rows.Close()
	var out []DoseRecord
	for rows.Next() {
		var x DoseRecord
		var due int64
		var taken sql.NullInt64
		if err := rows.Scan(&x.Resident, &x.Site, &x.Slot, &due, &x.State, &taken); err != nil {
			return nil, fmt.Errorf("list doses: %w", err)
		}
		x.Due = time.UnixMilli(due).UTC()
		if taken.Valid {
			x.Taken = time.UnixMilli(taken.Int64).UTC()
		}
		out = append(out, x)
	}
	return out, rows.Err()
}
