package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// putResident upserts r and replaces its medication schedule and safe zones.
func (s *Store) putResident(ctx context.Context, tx *sql.Tx, x Resident) error {
	exec := func(what, q string, args ...any) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(q), args...); err != nil {
			return fmt.Errorf("%s of resident %s: %w", what, x.ID, err)
		}
		return nil
	}
	if err := exec("upsert", `INSERT INTO residents (id, site_id, bed_id, name, birth_year, vulnerable, notes, visit_cadence_days, names)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, bed_id = excluded.bed_id,
		name = excluded.name, birth_year = excluded.birth_year, vulnerable = excluded.vulnerable,
		notes = excluded.notes, visit_cadence_days = excluded.visit_cadence_days, names = excluded.names`,
		x.ID, x.SiteID, nullable(x.BedID), x.Name, x.BirthYear, x.Vulnerable, x.Notes, x.VisitCadenceDays, x.Names.encode()); err != nil {
		return err
	}
	if err := exec("clear medication", `DELETE FROM medication_schedules WHERE resident_id = ?`, x.ID); err != nil {
		return err
	}
	for _, d := range x.Medication {
		if err := exec("medication", `INSERT INTO medication_schedules (resident_id, slot, tolerance_ms, medication) VALUES (?, ?, ?, ?)`,
			x.ID, d.Time, d.Tolerance.Milliseconds(), d.Medication); err != nil {
			return err
		}
	}
	if err := exec("clear safe zones", `DELETE FROM safe_zones WHERE resident_id = ?`, x.ID); err != nil {
		return err
	}
	for _, z := range x.SafeZones {
		shape, _ := json.Marshal(struct {
			Center  *Point  `json:"center,omitempty"`
			RadiusM float64 `json:"radius_m,omitempty"`
			Polygon []Point `json:"polygon,omitempty"`
		}{z.Center, z.RadiusM, z.Polygon})
		if err := exec("safe zone", `INSERT INTO safe_zones (resident_id, name, shape, from_hhmm, to_hhmm) VALUES (?, ?, ?, ?, ?)`,
			x.ID, z.Name, string(shape), z.From, z.To); err != nil {
			return err
		}
	}
	return nil
}

// putLimits replaces the limits of device x.
func (s *Store) putLimits(ctx context.Context, tx *sql.Tx, x Device) error {
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM device_limits WHERE device_id = ?`), x.ID); err != nil {
		return fmt.Errorf("clear limits of device %s: %w", x.ID, err)
	}
	for _, l := range x.Limits {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO device_limits (device_id, field, min_value, max_value, sustain_ms) VALUES (?, ?, ?, ?, ?)`),
			x.ID, l.Field, l.Min, l.Max, l.Sustain.Milliseconds()); err != nil {
			return fmt.Errorf("limit %s of device %s: %w", l.Field, x.ID, err)
		}
	}
	return nil
}

// attachCare fills the medication schedules and safe zones of rs.
func (s *Store) attachCare(ctx context.Context, q dbtx, rs []Resident) error {
	if len(rs) == 0 {
		return nil
	}
	idx := map[string]int{}
	for i, r := range rs {
		idx[r.ID] = i
	}
	doses, err := queryAll(ctx, q, `SELECT resident_id, slot, tolerance_ms, medication FROM medication_schedules ORDER BY resident_id, slot`,
		func(r *sql.Rows) (x struct {
			id string
			d  Dose
		}, err error) {
			var ms int64
			err = r.Scan(&x.id, &x.d.Time, &ms, &x.d.Medication)
			x.d.Tolerance = time.Duration(ms) * time.Millisecond
			return x, err
		})
	if err != nil {
		return fmt.Errorf("medication schedules: %w", err)
	}
	for _, d := range doses {
		if i, ok := idx[d.id]; ok {
			rs[i].Medication = append(rs[i].Medication, d.d)
		}
	}
	zones, err := queryAll(ctx, q, `SELECT resident_id, name, shape, from_hhmm, to_hhmm FROM safe_zones ORDER BY resident_id, name`,
		func(r *sql.Rows) (x struct {
			id string
			z  SafeZone
		}, err error) {
			var shape string
			if err = r.Scan(&x.id, &x.z.Name, &shape, &x.z.From, &x.z.To); err != nil {
				return x, err
			}
			err = json.Unmarshal([]byte(shape), &x.z)
			return x, err
		})
	if err != nil {
		return fmt.Errorf("safe zones: %w", err)
	}
	for _, z := range zones {
		if i, ok := idx[z.id]; ok {
			rs[i].SafeZones = append(rs[i].SafeZones, z.z)
		}
	}
	return nil
}

// attachLimits fills the limits of ds.
func (s *Store) attachLimits(ctx context.Context, q dbtx, ds []Device) error {
	if len(ds) == 0 {
		return nil
	}
	idx := map[string]int{}
	for i, d := range ds {
		idx[d.ID] = i
	}
	ls, err := queryAll(ctx, q, `SELECT device_id, field, min_value, max_value, sustain_ms FROM device_limits ORDER BY device_id, field`,
		func(r *sql.Rows) (x struct {
			id string
			l  Limit
		}, err error) {
			var lo, hi sql.NullFloat64
			var ms int64
			err = r.Scan(&x.id, &x.l.Field, &lo, &hi, &ms)
			if lo.Valid {
				x.l.Min = &lo.Float64
			}
			if hi.Valid {
				x.l.Max = &hi.Float64
			}
			x.l.Sustain = time.Duration(ms) * time.Millisecond
			return x, err
		})
	if err != nil {
		return fmt.Errorf("device limits: %w", err)
	}
	for _, l := range ls {
		if i, ok := idx[l.id]; ok {
			ds[i].Limits = append(ds[i].Limits, l.l)
		}
	}
	return nil
}

// PutResident creates or updates one resident with its visit cadence,
// medication schedule and safe zones (replaced as a whole), for the admin
// forms. It checks r with the same validation as the YAML import
// ([Document.Validate]: the same rules and messages, with the path
// "resident" instead of "residents[i]") and checks that its site and bed
// exist, the bed on that site and held by no other resident. Errors are
// joined; nothing is written unless all pass.
func (s *Store) PutResident(ctx context.Context, r Resident) error {
	var v validator
	if err := checkID(r.ID); err != nil {
		v.addf("resident.id", "%v", err)
	}
	v.residentFields("resident", r)
	errInvalid := errors.New("invalid")
	err := s.inTx(ctx, "put resident "+r.ID, func(tx *sql.Tx) error {
		var n int
		if r.SiteID == "" {
			v.addf("resident.site", "required")
		} else if err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT COUNT(*) FROM sites WHERE id = ?`), r.SiteID).Scan(&n); err != nil {
			return err
		} else if n == 0 {
			v.addf("resident.site", "unknown site %q", r.SiteID)
		}
		if r.BedID != "" {
			var site string
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT site_id FROM beds WHERE id = ?`), r.BedID).Scan(&site)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				v.addf("resident.bed", "unknown bed %q", r.BedID)
			case err != nil:
				return err
			case site != r.SiteID:
				v.addf("resident.bed", "bed %q is on site %q, not %q", r.BedID, site, r.SiteID)
			default:
				var holder string
				err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT id FROM residents WHERE bed_id = ? AND id <> ?`), r.BedID, r.ID).Scan(&holder)
				if err == nil {
					v.addf("resident.bed", "bed %q already assigned to resident %q", r.BedID, holder)
				} else if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
		}
		if len(v.errs) > 0 {
			return errInvalid // roll back; the messages go out unwrapped
		}
		return s.putResident(ctx, tx, r)
	})
	if errors.Is(err, errInvalid) {
		return errors.Join(v.errs...)
	}
	return err
}

// ChangeBedType converts bed bedID to type to at time at, recording the
// change (from, to, at, by, reason) in its history. by (the user) is
// required; reason is free text. Errors: an unknown type (the YAML
// import's message), an unknown bed (wrapping [ErrNotFound]), a bed that
// already has that type, or a change at the same millisecond as another.
func (s *Store) ChangeBedType(ctx context.Context, bedID, to, by, reason string, at time.Time) error {
	var v validator
	v.bedType("bed.type", to)
	if strings.TrimSpace(by) == "" {
		v.addf("bed.changed_by", "required (who converts the bed)")
	}
	v.name("bed.reason", reason, false)
	if err := errors.Join(v.errs...); err != nil {
		return err
	}
	return s.inTx(ctx, "change type of bed "+bedID, func(tx *sql.Tx) error {
		var from string
		err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT bed_type FROM beds WHERE id = ?`), bedID).Scan(&from)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("bed %q: %w", bedID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if from == to {
			return fmt.Errorf("bed %q is already of type %s", bedID, to)
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE beds SET bed_type = ?, nursing = ? WHERE id = ?`), to, to == BedNursing, bedID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO bed_type_changes (bed_id, at_ms, from_type, to_type, changed_by, reason) VALUES (?, ?, ?, ?, ?, ?)`),
			bedID, at.UnixMilli(), from, to, by, reason)
		return err
	})
}

// BedTypeHistory returns the type changes of bed bedID ("" = every bed)
// made in [from, to) (zero times: unbounded), oldest first.
func (s *Store) BedTypeHistory(ctx context.Context, bedID string, from, to time.Time) ([]BedTypeChange, error) {
	q := `SELECT bed_id, at_ms, from_type, to_type, changed_by, reason FROM bed_type_changes WHERE at_ms >= ? AND at_ms < ?`
	lo, hi := int64(-1<<62), openEnd
	if !from.IsZero() {
		lo = from.UnixMilli()
	}
	if !to.IsZero() {
		hi = to.UnixMilli()
	}
	args := []any{lo, hi}
	if bedID != "" {
		q += ` AND bed_id = ?`
		args = append(args, bedID)
	}
	xs, err := queryAll(ctx, s.db, s.db.Rebind(q+` ORDER BY at_ms, bed_id`), func(r *sql.Rows) (x BedTypeChange, err error) {
		var ms int64
		err = r.Scan(&x.BedID, &ms, &x.From, &x.To, &x.By, &x.Reason)
		x.At = msTime(ms)
		return x, err
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("bed type history: %w", err)
	}
	return xs, nil
}

// PutDevice creates or updates one device with its limits (replaced as a
// whole), for the admin forms. It checks dev with the same validation as
// the YAML import (the same rules and messages, with the path "device"
// instead of "devices[i]") and checks that its site exists, its bed (if
// any) is on that site and its gateway (if any) is a gateway device on that
// site, and that a device bound to a resident is not moved off the
// resident's site. Errors are joined; nothing is written unless all pass.
func (s *Store) PutDevice(ctx context.Context, dev Device) error {
	return s.putDevice(ctx, dev, false)
}

// AddDevice is PutDevice for a device that must be new (adopting an
// unregistered device): when a device with dev.ID exists already, or
// another request registers it at the same moment, it returns the
// validation error "device.id: device <id> is registered already" and
// changes nothing.
func (s *Store) AddDevice(ctx context.Context, dev Device) error {
	return s.putDevice(ctx, dev, true)
}

func (s *Store) putDevice(ctx context.Context, dev Device, create bool) error {
	var v validator
	if err := checkID(dev.ID); err != nil {
		v.addf("device.id", "%v", err)
	}
	v.deviceFields("device", dev)
	errInvalid := errors.New("invalid")
	err := s.inTx(ctx, "put device "+dev.ID, func(tx *sql.Tx) error {
		var n int
		if dev.SiteID == "" {
			v.addf("device.site", "required")
		} else if err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT COUNT(*) FROM sites WHERE id = ?`), dev.SiteID).Scan(&n); err != nil {
			return err
		} else if n == 0 {
			v.addf("device.site", "unknown site %q", dev.SiteID)
		}
		if dev.BedID != "" {
			var site string
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT site_id FROM beds WHERE id = ?`), dev.BedID).Scan(&site)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				v.addf("device.bed", "unknown bed %q", dev.BedID)
			case err != nil:
				return err
			case site != dev.SiteID:
				v.addf("device.bed", "bed %q is on site %q, not %q", dev.BedID, site, dev.SiteID)
			}
		}
		if dev.GatewayID != "" {
			var site, kind string
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT site_id, kind FROM devices WHERE id = ?`), dev.GatewayID).Scan(&site, &kind)
			switch {
			case dev.GatewayID == dev.ID:
				v.addf("device.gateway", "device %q cannot be its own gateway", dev.ID)
			case errors.Is(err, sql.ErrNoRows):
				v.addf("device.gateway", "unknown device %q", dev.GatewayID)
			case err != nil:
				return err
			case kind != KindGateway:
				v.addf("device.gateway", "device %q is a %s, not a gateway", dev.GatewayID, kind)
			case site != dev.SiteID:
				v.addf("device.gateway", "gateway %q is on site %q, not %q", dev.GatewayID, site, dev.SiteID)
			}
		}
		if dev.SiteID != "" {
			// A device bound to a resident stays on the resident's site
			// (Bind refuses a binding across sites; a move must not make one).
			var res, resSite string
			err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT b.resident_id, r.site_id FROM device_bindings b JOIN residents r ON r.id = b.resident_id
				WHERE b.device_id = ? AND b.to_ms IS NULL AND r.site_id <> ?`), dev.ID, dev.SiteID).Scan(&res, &resSite)
			switch {
			case err == nil:
				v.addf("device.site", "device %q is bound to resident %q of site %q", dev.ID, res, resSite)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		if create {
			if err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT COUNT(*) FROM devices WHERE id = ?`), dev.ID).Scan(&n); err != nil {
				return err
			} else if n > 0 {
				v.addf("device.id", "device %q is registered already", dev.ID)
			}
		}
		if len(v.errs) > 0 {
			return errInvalid
		}
		if create {
			// No upsert: of two requests adding the same id at once, the
			// second fails on the primary key instead of overwriting.
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO devices (id, site_id, kind, name, bed_id, gateway_id, power, report_interval_ms)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
				dev.ID, dev.SiteID, dev.Kind, dev.Name, nullable(dev.BedID), nullable(dev.GatewayID), dev.Power, dev.ReportInterval.Milliseconds()); err != nil {
				return fmt.Errorf("insert device %s: %w", dev.ID, err)
			}
			return s.putLimits(ctx, tx, dev)
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO devices (id, site_id, kind, name, bed_id, gateway_id, power, report_interval_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, kind = excluded.kind,
			name = excluded.name, bed_id = excluded.bed_id, gateway_id = excluded.gateway_id,
			power = excluded.power, report_interval_ms = excluded.report_interval_ms`),
			dev.ID, dev.SiteID, dev.Kind, dev.Name, nullable(dev.BedID), nullable(dev.GatewayID), dev.Power, dev.ReportInterval.Milliseconds()); err != nil {
			return fmt.Errorf("upsert device %s: %w", dev.ID, err)
		}
		return s.putLimits(ctx, tx, dev)
	})
	if errors.Is(err, errInvalid) {
		return errors.Join(v.errs...)
	}
	if err != nil && create {
		// The insert lost a race with another request adding the same id
		// (the primary key refused it), or the database failed.
		if _, derr := s.Device(ctx, dev.ID); derr == nil {
			return fmt.Errorf("device.id: device %q is registered already", dev.ID)
		}
	}
	return err
}
