// Facility safety (issue 13 item 5): per-device limits from the registry
// (registry.Device.Limits: a fridge or cold store's appliance_temp_c above
// its max, a room's co2_ppm above its max) that must hold for a sustain
// window measured in device time before the alert opens. A device with
// limits and no resident is a site device: its alert is unassigned and goes
// to the site's duty staff. The alert resolves when a reading is back
// within the limit.

package alerting

import (
	"context"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// LimitAlertType is the alert type of a per-device limit on field:
// "limit_" + field, e.g. limit_appliance_temp_c.
func LimitAlertType(field string) string { return "limit_" + field }

// limitState is one (device, field) limit's breach.
type limitState struct {
	since  time.Time // device time of the first reading outside; zero: inside
	raised bool
}

// kitTelemetry runs the safety-kit and programme rules on a telemetry
// message (hook in afterTelemetry): the unknown-device list, command
// confirmations, per-device limits, positions.
func (s *Service) kitTelemetry(ctx context.Context, t device.Topic, tel *device.Telemetry) error {
	for _, r := range tel.Readings {
		s.noteUnknown(ctx, t.Site, t.Device, r.Values, "") // unknown.go; events are noted in decode.go
		if err := s.commandObserved(ctx, t.Site, t.Device, r.Values, ""); err != nil {
			return err
		}
		if v, ok := r.Values["open"]; ok {
			if err := s.doorChange(ctx, t, v >= 0.5, "", r.Time()); err != nil {
				return err
			}
		}
	}
	if err := s.facilityLimits(ctx, t, tel); err != nil {
		return err
	}
	return s.positions(ctx, t, tel)
}

// facilityLimits applies the device's registry limits to its readings.
func (s *Service) facilityLimits(ctx context.Context, t device.Topic, tel *device.Telemetry) error {
	d := s.directory()
	if d == nil {
		return nil
	}
	dev, ok := d.Device(t.Device)
	if !ok || len(dev.Limits) == 0 {
		return nil
	}
	type decision struct {
		lim   registry.Limit
		clear bool
		at    time.Time
		v     float64
		dur   time.Duration
	}
	var out []decision
	s.cmds.mu.Lock()
	for _, r := range tel.Readings {
		at := r.Time()
		for _, lim := range dev.Limits {
			v, has := r.Values[lim.Field]
			if !has {
				continue
			}
			k := t.Device + "\x00" + lim.Field
			st := s.cmds.limits[k]
			if st == nil {
				st = &limitState{}
				s.cmds.limits[k] = st
			}
			outside := (lim.Max != nil && v > *lim.Max) || (lim.Min != nil && v < *lim.Min)
			switch {
			case !outside:
				if st.raised {
					out = append(out, decision{lim: lim, clear: true, at: at, v: v})
				}
				st.since, st.raised = time.Time{}, false
			case st.since.IsZero() || at.Before(st.since):
				st.since = at
				fallthrough
			default:
				if !st.raised && at.Sub(st.since) >= lim.Sustain {
					st.raised = true
					out = append(out, decision{lim: lim, at: at, v: v, dur: at.Sub(st.since)})
				}
			}
		}
	}
	s.cmds.mu.Unlock()
	for _, x := range out {
		typ := LimitAlertType(x.lim.Field)
		var err error
		if x.clear {
			var resident *string
			if r, ok := s.residentOf(t.Device, x.at); ok {
				resident = &r
			}
			err = s.autoResolve(ctx, alertKey(resident, t.Device, typ), fmt.Sprintf("cleared: %s %g back within its limit", x.lim.Field, x.v))
		} else {
			v := x.v
			err = s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: typ, Severity: SeverityHigh, At: x.at, Value: &v,
				Detail: fmt.Sprintf("%s %g %s outside its limit (%s) for %s (device time)", x.lim.Field, x.v, unitOf(x.lim.Field),
					limitText(x.lim), x.dur.Round(time.Second))})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unitOf(field string) string {
	if f, ok := device.Fields[field]; ok {
		return f.Unit
	}
	return ""
}

func limitText(l registry.Limit) string {
	switch {
	case l.Min != nil && l.Max != nil:
		return fmt.Sprintf("%g-%g, sustain %s", *l.Min, *l.Max, l.Sustain)
	case l.Max != nil:
		return fmt.Sprintf("max %g, sustain %s", *l.Max, l.Sustain)
	default:
		return fmt.Sprintf("min %g, sustain %s", *l.Min, l.Sustain)
	}
}
