// The home safety kit's rules (docs/protocol.md "Device kinds"): smoke and
// gas are life-safety alarms (device.SafetyKinds), critical, never held by
// quiet hours (quiet.go lets every critical notification through); a gas
// alarm closes the site's shut-off valves at once (commands.go). A water
// leak and a tamper are alerts too. An alarm_test is not a fire: it opens
// nothing and only confirms an alarm_test command.

package alerting

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Alert types of the home safety kit.
const (
	// TypeSmoke: a smoke alarm detected smoke (event smoke). Critical.
	TypeSmoke = "smoke"
	// TypeGas: a gas alarm detected gas (event gas). Critical; the site's
	// valves are closed automatically and the alert's history shows
	// whether each closed.
	TypeGas = "gas"
	// TypeWaterLeak: a water-leak sensor detected water. High.
	TypeWaterLeak = "water_leak"
	// TypeTamper: a device's casing was opened or it was removed. Warning.
	TypeTamper = "tamper"
)

// safetyEvent applies the safety kit's events. It reports whether the
// event was fully handled (else the caller goes on with ruleEvent).
func (s *Service) safetyEvent(ctx context.Context, t device.Topic, e *device.Event) (bool, error) {
	var typ, sev, detail string
	switch e.Type {
	case device.EventSmoke:
		typ, sev, detail = TypeSmoke, SeverityCritical, "smoke detected"
		if d, ok := e.Attrs["smoke_density"].(float64); ok {
			detail += fmt.Sprintf(", density %g (vendor scale)", d)
		}
	case device.EventGas:
		typ, sev, detail = TypeGas, SeverityCritical, "gas detected"
		if p, ok := e.Attrs["gas_lel_pct"].(float64); ok {
			detail += fmt.Sprintf(", %g %%LEL", p)
		}
	case device.EventWaterLeak:
		typ, sev, detail = TypeWaterLeak, SeverityHigh, "water leak detected"
	case device.EventTamper:
		typ, sev, detail = TypeTamper, SeverityWarning, "tamper: casing opened or device removed"
	case device.EventContactOpen, device.EventContactClose:
		where, _ := e.Attrs["location"].(string)
		return false, s.doorChange(ctx, t, e.Type == device.EventContactOpen, where, e.Time())
	case device.EventCheckIn:
		return false, s.checkIn(ctx, t, e)
	case device.EventDoseTaken:
		return false, s.doseTaken(ctx, t, e)
	case device.EventAlarmTest, device.EventValveClosed, device.EventValveOpened:
		// Not an alarm: confirms a command; the rest (activity) as before.
		return false, s.commandObserved(ctx, t.Site, t.Device, nil, e.Type)
	default:
		return false, nil
	}
	if kind := s.kindOf(t.Device); kind != "" && kind != string(device.SmokeAlarm) && kind != string(device.GasAlarm) &&
		(typ == TypeSmoke || typ == TypeGas) {
		detail += " (device registered as " + kind + ")"
	}
	key := eventKey{device: t.Device, boot: e.Boot, seq: e.Seq}
	if s.recent.seen(key) {
		return true, nil
	}
	err := s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: typ, Severity: sev, At: e.Time(), Detail: detail,
		NotifyRepeat: sev == SeverityCritical, EventKey: key.String()})
	if err != nil {
		return true, err
	}
	s.recent.add(key)
	if typ == TypeGas {
		s.closeValves(ctx, t.Site, t.Device, e.Time())
	}
	return true, nil
}

// gatewayDevices is implemented by a Directory that lists the devices
// behind a gateway (a *registry.Snapshot).
type gatewayDevices interface {
	DevicesBehind(gw string) []string
}

// valvesFor returns the shut-off valves a gas alarm dev at site closes: the
// valves registered behind the alarm's gateway, and every valve seen
// reporting valve_open at the site.
func (s *Service) valvesFor(site, dev string) []string {
	set := map[string]bool{}
	if d := s.directory(); d != nil {
		if g, ok := d.(gatewayDevices); ok {
			if x, ok := d.Device(dev); ok && x.GatewayID != "" {
				for _, id := range g.DevicesBehind(x.GatewayID) {
					if v, ok := d.Device(id); ok && v.Kind == string(device.Valve) {
						set[id] = true
					}
				}
			}
		}
	}
	s.cmds.mu.Lock()
	for v := range s.cmds.valves[site] {
		set[v] = true
	}
	s.cmds.mu.Unlock()
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// closeValves sends valve_close to each valve of the site, tied to the open
// gas alert; a site without a known valve gets a note saying so.
func (s *Service) closeValves(ctx context.Context, site, dev string, at time.Time) {
	key := ""
	if r, ok := s.residentOf(dev, at); ok {
		key = alertKey(&r, dev, TypeGas)
	} else {
		key = alertKey(nil, dev, TypeGas)
	}
	s.mu.Lock()
	id := s.open[key]
	s.mu.Unlock()
	valves := s.valvesFor(site, dev)
	if len(valves) == 0 {
		if err := s.commentOpen(ctx, key, "command", "no shut-off valve known at site "+site+": close the gas supply by hand"); err != nil {
			s.log.Error("alerting: note on gas alert", "err", err)
		}
		return
	}
	for _, v := range valves {
		if _, err := s.SendCommand(ctx, site, v, device.ActionValveClose, nil, id, ActorSystem); err != nil {
			s.log.Error("alerting: automatic valve close", "valve", v, "site", site, "err", err)
		}
	}
}
