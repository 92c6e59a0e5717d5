// Stage 2, rules: a fall or SOS that only the gateway knows of. A gateway
// holds every fall or SOS of a device behind it as a local alarm until the
// platform's call_acknowledged arrives, and reports it in its heartbeat
// (device.DeviceReport.LocalAlarm, LocalAlarmSince). When the event itself
// never reached the platform (the gateway's spool refused it, a fault on
// the way), that report is the platform's only trace of the call: the
// alert is raised from it.

package alerting

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// LocalAlarmGrace is how long a gateway must have held a local alarm
// before its report alone raises the alert: the event itself normally
// arrives within seconds, and raises it with its own details.
const LocalAlarmGrace = time.Minute

// localAlarmSlack is how far the platform's record of the call (the
// alert's opening, its last occurrence, acknowledgement or resolution) may
// be older than the gateway's LocalAlarmSince and still count as the same
// call: room for the gateway's and the platform's clocks to differ.
const localAlarmSlack = 2 * time.Minute

// heldLocalAlarms raises a critical fall or SOS alert for each local alarm
// in st's report (a gateway's online status of site t.Site, not retained:
// a retained one may be old) held for at
// least LocalAlarmGrace that the platform has no record of: no alert of
// that device's resident (or, unassigned, that device) and type opened,
// occurred, acknowledged or resolved since the alarm began (within
// localAlarmSlack). Each held alarm is raised at most once (event key
// "local-alarm:<device>:<since>"), by this or another replica; devices the
// gateway may not speak for (refused) are skipped.
func (s *Service) heldLocalAlarms(ctx context.Context, t device.Topic, st *device.Status, vs []Verdict, now time.Time) error {
	var refused map[string]bool
	for _, v := range vs {
		if v.Kind == VerdictRefused {
			if refused == nil {
				refused = map[string]bool{}
			}
			for _, d := range v.Devices {
				refused[d] = true
			}
		}
	}
	for _, r := range st.Report {
		var typ string
		switch r.LocalAlarm {
		case device.EventFall:
			typ = TypeFall
		case device.EventSOS:
			typ = TypeSOS
		default:
			continue
		}
		since := time.UnixMilli(r.LocalAlarmSince)
		if r.LocalAlarmSince <= 0 || refused[r.Device] || r.Device == t.Device || now.Sub(since) < LocalAlarmGrace {
			continue
		}
		var resident *string
		if s.residents != nil {
			if res, ok := s.residents.ResidentAt(r.Device, since); ok {
				id := res.ID
				resident = &id
			}
		}
		key := alertKey(resident, r.Device, typ)
		var known time.Time
		if err := s.durably(ctx, "read of "+key, func(ctx context.Context) error {
			var err error
			known, err = s.m.lastRecord(ctx, key)
			return err
		}); err != nil {
			return err
		}
		if !known.IsZero() && !known.Before(since.Add(-localAlarmSlack)) {
			// The platform has this call. Acknowledged or resolved already:
			// the gateway missed the call_acknowledged (it expired on the
			// way, or the call repeated after the acknowledgement), so
			// it is told again.
			if err := s.reassure(ctx, t.Site, r.Device, key, now); err != nil {
				return err
			}
			continue
		}
		s.log.Error("alerting: a gateway holds a local alarm the platform never received; raising it", "gateway", t.Device,
			"device", r.Device, "type", typ, "since", since.UTC())
		detail := fmt.Sprintf("%s of %s reported by gateway %s, which has held it as a local alarm since %s: the event itself has not reached the platform (lost to a spool fault, or still queued behind an uplink outage)",
			typ, r.Device, t.Device, since.UTC().Format(time.RFC3339))
		if err := s.raiseFor(ctx, openSpec{Site: t.Site, Resident: resident, Device: r.Device, Type: typ, Severity: SeverityCritical,
			At: since, Detail: detail, NotifyRepeat: true, EventKey: fmt.Sprintf("local-alarm:%s:%d", r.Device, r.LocalAlarmSince)}); err != nil {
			return err
		}
	}
	return nil
}

// lastRecord returns the latest time the alerts of dedup key key were
// opened, occurred, acknowledged or resolved (zero: none).
func (m *Manager) lastRecord(ctx context.Context, key string) (time.Time, error) {
	var a, b, c, d *int64
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT MAX(opened_ms), MAX(last_occurred_ms), MAX(acknowledged_ms), MAX(resolved_ms)
		FROM alerts WHERE dedup_key = ?`), key).Scan(&a, &b, &c, &d)
	if err != nil {
		return time.Time{}, fmt.Errorf("last record of %s: %w", key, err)
	}
	var ms int64
	for _, x := range []*int64{a, b, c, d} {
		if x != nil && *x > ms {
			ms = *x
		}
	}
	if ms == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// ReassureEvery is the shortest time between two call_acknowledged
// commands re-sent to one device because its gateway still reports a
// local alarm for a call the platform has acknowledged or resolved.
const ReassureEvery = 2 * time.Minute

// reassure re-sends call_acknowledged to dev of site (id
// "assure-<alert>-<ms>", params as AssuranceCommand's plus "resent":
// true) when the latest alert of key is acknowledged or resolved, at most
// every ReassureEvery per device; it publishes directly (the next
// heartbeat repeats it if it is lost). Nothing before the command loop
// runs.
func (s *Service) reassure(ctx context.Context, site, dev, key string, now time.Time) error {
	var a Alert
	var found bool
	if err := s.durably(ctx, "read of "+key, func(ctx context.Context) error {
		var err error
		a, found, err = s.m.latestOf(ctx, key)
		return err
	}); err != nil {
		return err
	}
	if !found || a.Status == StatusOpen {
		return nil // nobody acknowledged it: the gateway's alarm is right
	}
	by := a.AcknowledgedBy
	if by == "" {
		by = a.ResolvedBy
	}
	s.cmds.mu.Lock()
	pub := s.cmds.publish
	last := s.cmds.reassured[dev]
	if pub == nil || (!last.IsZero() && now.Sub(last) < ReassureEvery) {
		s.cmds.mu.Unlock()
		return nil
	}
	if s.cmds.reassured == nil {
		s.cmds.reassured = map[string]time.Time{}
	}
	s.cmds.reassured[dev] = now
	s.cmds.mu.Unlock()
	cmd := AssuranceCommand{V: device.Version, ID: fmt.Sprintf("assure-%d-%d", a.ID, now.UnixMilli()), TS: now.UnixMilli(), Device: dev,
		Action: ActionCallAcknowledged, Params: map[string]any{"alert": a.ID, "type": a.Type, "by": by, "resent": true},
		Expires: now.Add(CallAssuranceTTL).UnixMilli()}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil
	}
	s.log.Warn("alerting: a gateway still holds a local alarm for a call already "+a.Status+"; sending call_acknowledged again",
		"device", dev, "alert", a.ID)
	if err := pub(device.CommandTopic(s.cfg.Root, site, dev), b); err != nil {
		s.log.Warn("alerting: call_acknowledged not re-sent; the next heartbeat tries again", "device", dev, "err", err)
		s.cmds.mu.Lock()
		delete(s.cmds.reassured, dev)
		s.cmds.mu.Unlock()
	}
	return nil
}

// latestOf returns the most recently opened alert of dedup key key.
func (m *Manager) latestOf(ctx context.Context, key string) (Alert, bool, error) {
	var id int64
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT id FROM alerts WHERE dedup_key = ? ORDER BY opened_ms DESC, id DESC LIMIT 1`), key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, false, nil
	}
	if err != nil {
		return Alert{}, false, fmt.Errorf("latest alert of %s: %w", key, err)
	}
	a, err := getAlert(ctx, m.db, m.db, id)
	if err != nil {
		return Alert{}, false, err
	}
	return a, true, nil
}
