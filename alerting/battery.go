// Stage 2, rules: low battery per device, and the unprotected rule (a resident's safety device down).

package alerting

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Alert types of the device-health rules.
const (
	// TypeLowBattery: battery_pct below BatteryRule.Low, or a low_battery
	// event; one alert per device.
	TypeLowBattery = "low_battery"
	// TypeUnprotected: one of the resident's safety devices (fall
	// detector, SOS button, bed sensor) is offline or unknown.
	TypeUnprotected = "unprotected"
)

// BatteryRule raises low_battery (warning, per device) when a reading's
// battery_pct (%) is below Low or the device sends a low_battery event, and
// clears it (resolved by the system, outcome other) at the first reading of
// battery_pct >= Clear. The gap between Low and Clear is the hysteresis
// that keeps a battery hovering at the threshold from flapping. The bounds
// are ours (typical of vendors' low-battery warnings at 20 %), not from a
// datasheet.
type BatteryRule struct {
	Low, Clear float64
}

// DefaultBattery: below 20 %, cleared at >= 30 %.
var DefaultBattery = BatteryRule{Low: 20, Clear: 30}

// batteryState is the low-battery rule of one device.
type batteryState struct {
	low bool // below Low seen (or event) and not yet cleared
	// clearedSeen: a reading >= Clear was reported as a clear since the
	// last low, so later good readings do not resolve again.
	clearedSeen bool
}

// batteryResult is what one battery observation did.
type batteryResult struct {
	Raise, Clear bool
}

// observe feeds battery_pct v (%). The first reading >= Clear after a low
// clears; a first good reading after a restart also reports a clear once,
// so an alert left open by a previous process is resolved.
func (b *batteryState) observe(r BatteryRule, v float64) batteryResult {
	switch {
	case v < r.Low:
		wasLow := b.low
		b.low, b.clearedSeen = true, false
		return batteryResult{Raise: !wasLow}
	case v >= r.Clear:
		if b.clearedSeen {
			return batteryResult{}
		}
		b.low, b.clearedSeen = false, true
		return batteryResult{Clear: true}
	}
	return batteryResult{} // between Low and Clear: no change
}

// event records a low_battery event.
func (b *batteryState) event() batteryResult {
	wasLow := b.low
	b.low, b.clearedSeen = true, false
	return batteryResult{Raise: !wasLow}
}

// perDeviceType reports whether alerts of typ deduplicate per device even
// for a bound device (device_offline, low_battery: two devices of one
// resident are two problems).
func perDeviceType(typ string) bool {
	return typ == TypeDeviceOffline || typ == TypeLowBattery
}

// alertKey is the dedup key of an alert: per device for perDeviceType,
// else per resident (or per device when unassigned), see dedupKey.
func alertKey(resident *string, deviceID, typ string) string {
	if perDeviceType(typ) {
		return dedupKey(nil, deviceID, typ)
	}
	return dedupKey(resident, deviceID, typ)
}

// safetyKinds are the device kinds whose loss leaves a resident
// unprotected.
var safetyKinds = []string{"fall_detector", "sos_button", "bed_sensor"}

func isSafetyKind(k string) bool { return slices.Contains(safetyKinds, k) }

// unprotected tracks, per resident, which safety devices are offline or
// unknown (device id -> kind).
type unprotected map[string]map[string]string

// down records dev (of kind) of resident as offline; it reports whether
// this is news.
func (u unprotected) down(resident, dev, kind string) bool {
	m := u[resident]
	if m == nil {
		m = map[string]string{}
		u[resident] = m
	}
	_, had := m[dev]
	m[dev] = kind
	return !had
}

// up records dev as back; it returns the residents whose last offline
// safety device this was (now fully protected again).
func (u unprotected) up(dev string) []string {
	var out []string
	for r, m := range u {
		if _, ok := m[dev]; !ok {
			continue
		}
		delete(m, dev)
		if len(m) == 0 {
			delete(u, r)
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// detail renders the resident's offline safety devices, e.g.
// "safety devices offline: fall_detector fd-101, sos_button sos-101".
func (u unprotected) detail(resident string) string {
	var parts []string
	for dev, kind := range u[resident] {
		parts = append(parts, kind+" "+dev)
	}
	sort.Strings(parts)
	return fmt.Sprintf("safety devices offline: %s", strings.Join(parts, ", "))
}
