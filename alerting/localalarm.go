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
// in st's report (a gateway's online status of site t.Site) held for at
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
			continue // the platform has this call
		}
		s.log.Error("alerting: a gateway holds a local alarm the platform never received; raising it", "gateway", t.Device,
			"device", r.Device, "type", typ, "since", since.UTC())
		detail := fmt.Sprintf("%s of %s reported by gateway %s, which has held it as a local alarm since %s: the event itself never reached the platform (a spool or uplink fault)",
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
