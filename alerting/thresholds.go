// Stage 2, rules: per-resident thresholds (stored and audited), and the system resolve of a cleared breach.

package alerting

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// calmWindow tracks how long one threshold's field has stayed in its clear
// range (device time).
type calmWindow struct {
	active   bool
	start    time.Time
	reported bool // a clearing was reported for this run
}

// clearing is a threshold whose field stayed in its clear range for Clear.
type clearing struct {
	Threshold Threshold
	At        time.Time // device time of the sample that completed the run
	Span      time.Duration
}

// Note renders the resolve note, e.g. "cleared: value back in range for
// 60 s".
func (c clearing) Note() string {
	return fmt.Sprintf("cleared: value back in range for %d s", int(c.Span/time.Second))
}

// observeCalm updates the clear run of threshold i with sample x at t. A
// run ends on a sample outside the clear range, and restarts after a gap
// (or a clock jump back). It reports one clearing per run, whether or not
// this process saw the alert open (after a restart it may still be open).
func (v *vitals) observeCalm(i int, th Threshold, t time.Time, x float64, gap bool) {
	if th.Clear <= 0 {
		return
	}
	c := &v.calm[i]
	if !th.clears(x) || th.breaches(x) {
		*c = calmWindow{}
		return
	}
	if !c.active || gap {
		*c = calmWindow{active: true, start: t}
	}
	if !c.reported && t.Sub(c.start) >= th.Clear {
		c.reported = true
		v.cleared = append(v.cleared, clearing{Threshold: th, At: t, Span: t.Sub(c.start)})
	}
}

// takeCleared returns and forgets the clearings observed since the last
// call.
func (v *vitals) takeCleared() []clearing {
	out := v.cleared
	v.cleared = nil
	return out
}

// setThresholds replaces the thresholds; windows of a type whose threshold
// is unchanged keep going, the others start over.
func (v *vitals) setThresholds(ths []Threshold) {
	windows := make([]window, len(ths))
	calm := make([]calmWindow, len(ths))
	for i, th := range ths {
		for j, old := range v.thresholds {
			if sameThreshold(old, th) {
				windows[i], calm[i] = v.windows[j], v.calm[j]
			}
		}
	}
	v.thresholds, v.windows, v.calm = ths, windows, calm
}

func sameThreshold(a, b Threshold) bool {
	eq := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
	return a.Type == b.Type && a.Severity == b.Severity && a.Field == b.Field && a.Label == b.Label && a.Unit == b.Unit &&
		eq(a.Low, b.Low) && eq(a.High, b.High) && a.Sustain == b.Sustain &&
		eq(a.ClearLow, b.ClearLow) && eq(a.ClearHigh, b.ClearHigh) && a.Clear == b.Clear
}

// Validate reports every problem of a threshold: a missing type or field,
// an unknown severity, no bound at all, Low >= High, a negative duration,
// or a clear range that is not inside the normal range (ClearLow < Low or
// ClearHigh > High would clear on a breaching value).
func (th Threshold) Validate() error {
	var errs []error
	if th.Type == "" {
		errs = append(errs, errors.New("type is required"))
	}
	if th.Field == "" {
		errs = append(errs, errors.New("field is required"))
	}
	if !slices.Contains([]string{SeverityCritical, SeverityHigh, SeverityWarning}, th.Severity) {
		errs = append(errs, fmt.Errorf("severity %q is not critical, high or warning", th.Severity))
	}
	for _, x := range []float64{th.Low, th.High, th.ClearLow, th.ClearHigh} {
		if math.IsInf(x, 0) {
			errs = append(errs, errors.New("bounds must be finite (NaN for no bound)"))
			break
		}
	}
	if math.IsNaN(th.Low) && math.IsNaN(th.High) {
		errs = append(errs, errors.New("no bound: set Low, High or both"))
	}
	if !math.IsNaN(th.Low) && !math.IsNaN(th.High) && th.Low >= th.High {
		errs = append(errs, fmt.Errorf("low %g is not below high %g", th.Low, th.High))
	}
	if th.Sustain < 0 || th.Clear < 0 {
		errs = append(errs, errors.New("sustain and clear times must not be negative"))
	}
	if th.Clear > 0 {
		if !math.IsNaN(th.Low) && (math.IsNaN(th.ClearLow) || th.ClearLow < th.Low) {
			errs = append(errs, fmt.Errorf("clear low %g must be >= low %g", th.ClearLow, th.Low))
		}
		if !math.IsNaN(th.High) && (math.IsNaN(th.ClearHigh) || th.ClearHigh > th.High) {
			errs = append(errs, fmt.Errorf("clear high %g must be <= high %g", th.ClearHigh, th.High))
		}
	}
	return errors.Join(errs...)
}

// thresholdJSON is the audit form of a threshold (durations in ms, no
// bound as null).
type thresholdJSON struct {
	Type      string   `json:"type"`
	Severity  string   `json:"severity"`
	Field     string   `json:"field"`
	Label     string   `json:"label"`
	Unit      string   `json:"unit"`
	Low       *float64 `json:"low"`
	High      *float64 `json:"high"`
	SustainMS int64    `json:"sustain_ms"`
	ClearLow  *float64 `json:"clear_low"`
	ClearHigh *float64 `json:"clear_high"`
	ClearMS   int64    `json:"clear_ms"`
}

func nullBound(x float64) *float64 {
	if math.IsNaN(x) {
		return nil
	}
	return &x
}

func fromNull(x sql.NullFloat64) float64 {
	if !x.Valid {
		return math.NaN()
	}
	return x.Float64
}

func (th Threshold) auditJSON() string {
	b, _ := json.Marshal(thresholdJSON{Type: th.Type, Severity: th.Severity, Field: th.Field, Label: th.Label, Unit: th.Unit,
		Low: nullBound(th.Low), High: nullBound(th.High), SustainMS: th.Sustain.Milliseconds(),
		ClearLow: nullBound(th.ClearLow), ClearHigh: nullBound(th.ClearHigh), ClearMS: th.Clear.Milliseconds()})
	return string(b)
}

// ThresholdChange is one audited change of a per-resident threshold.
type ThresholdChange struct {
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`
	ResidentID string    `json:"resident_id"`
	Type       string    `json:"type"`
	// Action is "set" or "delete".
	Action string `json:"action"`
	// Before and After are the threshold as JSON, "" when there was none.
	Before string `json:"before"`
	After  string `json:"after"`
}

// SetResidentThreshold stores a resident's own threshold for th.Type,
// replacing the default rule of that type (or adding a rule of a new type)
// for the devices bound to the resident. The change is recorded with actor
// and time (see [Manager.ThresholdChanges]); a running alerting service
// picks it up within its settings poll (2 s) without a restart. It returns
// an error when actor or residentID is empty or th is invalid
// ([Threshold.Validate]), or the store's error.
func (m *Manager) SetResidentThreshold(ctx context.Context, actor, residentID string, th Threshold) error {
	if actor == "" || residentID == "" {
		return errors.New("set resident threshold: actor and resident are required")
	}
	if err := th.Validate(); err != nil {
		return fmt.Errorf("set resident threshold %s for %s: %w", th.Type, residentID, err)
	}
	err := m.tx(ctx, func(tx *sql.Tx) error {
		before, err := m.residentThreshold(ctx, tx, residentID, th.Type)
		if err != nil {
			return err
		}
		now := m.now().UnixMilli()
		_, err = tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO resident_thresholds (resident_id, type, severity, field, label, unit,
				low, high, sustain_ms, clear_low, clear_high, clear_ms, updated_ms, updated_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (resident_id, type) DO UPDATE SET severity = excluded.severity, field = excluded.field,
				label = excluded.label, unit = excluded.unit, low = excluded.low, high = excluded.high,
				sustain_ms = excluded.sustain_ms, clear_low = excluded.clear_low, clear_high = excluded.clear_high,
				clear_ms = excluded.clear_ms, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by`),
			residentID, th.Type, th.Severity, th.Field, th.Label, th.Unit, nullBound(th.Low), nullBound(th.High),
			th.Sustain.Milliseconds(), nullBound(th.ClearLow), nullBound(th.ClearHigh), th.Clear.Milliseconds(), now, actor)
		if err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		return m.addThresholdChange(ctx, tx, now, actor, residentID, th.Type, "set", before, th.auditJSON())
	})
	if err != nil {
		return fmt.Errorf("set resident threshold %s for %s: %w", th.Type, residentID, err)
	}
	return nil
}

// DeleteResidentThreshold removes a resident's own threshold of type typ,
// so the default rule applies again; the change is recorded. Deleting a
// threshold that does not exist returns an error wrapping ErrNotFound.
func (m *Manager) DeleteResidentThreshold(ctx context.Context, actor, residentID, typ string) error {
	if actor == "" || residentID == "" || typ == "" {
		return errors.New("delete resident threshold: actor, resident and type are required")
	}
	err := m.tx(ctx, func(tx *sql.Tx) error {
		before, err := m.residentThreshold(ctx, tx, residentID, typ)
		if err != nil {
			return err
		}
		if before == "" {
			return fmt.Errorf("no threshold %s for resident %s: %w", typ, residentID, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, m.db.Rebind(`DELETE FROM resident_thresholds WHERE resident_id = ? AND type = ?`), residentID, typ); err != nil {
			return err
		}
		return m.addThresholdChange(ctx, tx, m.now().UnixMilli(), actor, residentID, typ, "delete", before, "")
	})
	if err != nil {
		return fmt.Errorf("delete resident threshold %s for %s: %w", typ, residentID, err)
	}
	return nil
}

// residentThreshold returns the audit JSON of a stored threshold, "" if none.
func (m *Manager) residentThreshold(ctx context.Context, tx *sql.Tx, residentID, typ string) (string, error) {
	rows, err := tx.QueryContext(ctx, m.db.Rebind(`SELECT `+thresholdColumns+` FROM resident_thresholds WHERE resident_id = ? AND type = ?`), residentID, typ)
	if err != nil {
		return "", fmt.Errorf("read threshold: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", rows.Err()
	}
	_, th, err := scanThreshold(rows)
	if err != nil {
		return "", err
	}
	return th.auditJSON(), rows.Close()
}

func (m *Manager) addThresholdChange(ctx context.Context, tx *sql.Tx, atMS int64, actor, residentID, typ, action, before, after string) error {
	var id int64
	if err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerting_counters SET value = value + 1 WHERE name = 'threshold_change' RETURNING value`)).Scan(&id); err != nil {
		return fmt.Errorf("allocate change id: %w", err)
	}
	_, err := tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO resident_threshold_changes (id, at_ms, actor, resident_id, type, action, before_json, after_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), id, atMS, actor, residentID, typ, action, before, after)
	if err != nil {
		return fmt.Errorf("record threshold change: %w", err)
	}
	return nil
}

const thresholdColumns = `resident_id, type, severity, field, label, unit, low, high, sustain_ms, clear_low, clear_high, clear_ms`

func scanThreshold(s scanner) (string, Threshold, error) {
	var (
		resident            string
		th                  Threshold
		low, high, clo, chi sql.NullFloat64
		sustainMS, clearMS  int64
	)
	if err := s.Scan(&resident, &th.Type, &th.Severity, &th.Field, &th.Label, &th.Unit, &low, &high, &sustainMS, &clo, &chi, &clearMS); err != nil {
		return "", Threshold{}, fmt.Errorf("scan threshold: %w", err)
	}
	th.Low, th.High, th.ClearLow, th.ClearHigh = fromNull(low), fromNull(high), fromNull(clo), fromNull(chi)
	th.Sustain, th.Clear = time.Duration(sustainMS)*time.Millisecond, time.Duration(clearMS)*time.Millisecond
	return resident, th, nil
}

// ResidentThresholds returns every resident's own thresholds by resident
// id, ordered by type.
func (m *Manager) ResidentThresholds(ctx context.Context) (map[string][]Threshold, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT `+thresholdColumns+` FROM resident_thresholds ORDER BY resident_id, type`)
	if err != nil {
		return nil, fmt.Errorf("list resident thresholds: %w", err)
	}
	defer rows.Close()
	out := map[string][]Threshold{}
	for rows.Next() {
		r, th, err := scanThreshold(rows)
		if err != nil {
			return nil, fmt.Errorf("list resident thresholds: %w", err)
		}
		out[r] = append(out[r], th)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list resident thresholds: %w", err)
	}
	return out, nil
}

// ThresholdChanges returns the audited changes of a resident's thresholds,
// oldest first ("" = every resident).
func (m *Manager) ThresholdChanges(ctx context.Context, residentID string) ([]ThresholdChange, error) {
	q := `SELECT at_ms, actor, resident_id, type, action, before_json, after_json FROM resident_threshold_changes`
	var args []any
	if residentID != "" {
		q += ` WHERE resident_id = ?`
		args = append(args, residentID)
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(q+` ORDER BY id`), args...)
	if err != nil {
		return nil, fmt.Errorf("threshold changes: %w", err)
	}
	defer rows.Close()
	var out []ThresholdChange
	for rows.Next() {
		var c ThresholdChange
		var at int64
		if err := rows.Scan(&at, &c.Actor, &c.ResidentID, &c.Type, &c.Action, &c.Before, &c.After); err != nil {
			return nil, fmt.Errorf("threshold changes: %w", err)
		}
		c.At = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// thresholdsVersion changes whenever a per-resident threshold changes (the
// number of audited changes).
func (m *Manager) thresholdsVersion(ctx context.Context) (int64, error) {
	var v int64
	err := m.db.QueryRowContext(ctx, `SELECT value FROM alerting_counters WHERE name = 'threshold_change'`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("thresholds version: %w", err)
	}
	return v, nil
}

// mergeThresholds returns defaults with every threshold of the same type
// replaced by the resident's own, and the resident's other types appended.
func mergeThresholds(defaults, own []Threshold) []Threshold {
	if len(own) == 0 {
		return defaults
	}
	out := slices.Clone(defaults)
	for _, th := range own {
		i := slices.IndexFunc(out, func(d Threshold) bool { return d.Type == th.Type })
		if i >= 0 {
			out[i] = th
		} else {
			out = append(out, th)
		}
	}
	return out
}

// resolveByKey resolves the open alert with key as the system (channel
// rule, outcome other) with note, e.g. "cleared: value back in range for
// 60 s". It reports whether an alert was open.
func (m *Manager) resolveByKey(ctx context.Context, key, note string) (Alert, bool, error) {
	var (
		out   Alert
		found bool
	)
	err := m.tx(ctx, func(tx *sql.Tx) error {
		id, ok, err := m.openByKey(ctx, tx, key)
		if err != nil || !ok {
			return err
		}
		now := m.now().UnixMilli()
		res, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET status = 'resolved', resolved_ms = ?, resolved_by = ?, outcome = ?, note = ?
			WHERE id = ? AND status <> 'resolved'`), now, ActorSystem, OutcomeOther, note, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return err // resolved meanwhile: nothing to do
		}
		found = true
		if err := m.addHistory(ctx, tx, id, now, ActorSystem, ChannelRule, ActionResolved, "outcome "+OutcomeOther+": "+note); err != nil {
			return err
		}
		out, err = m.enqueue(ctx, tx, id, EventResolved, now)
		return err
	})
	if err != nil {
		return Alert{}, false, fmt.Errorf("auto-resolve %s: %w", key, err)
	}
	if found {
		m.signal()
	}
	return out, found, nil
}
