// Stage: rules (device supervision). The Supervisor decides from the data
// when a device or a gateway is offline, when a sensor stopped sending its
// vital field, and which gateway statuses to refuse. It is pure logic with
// the clock passed in; offline.go feeds it the decoded messages and turns
// its verdicts into alerts.
package alerting

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// SupervisedRegistry is what the Supervisor needs of the registry; a
// *registry.Snapshot implements it.
type SupervisedRegistry interface {
	// Device returns a registered device (site, kind, gateway).
	Device(id string) (registry.Device, bool)
	// ReportInterval is a registered device's expected report interval
	// (its own, its kind's, or the default of device.DefaultInterval).
	ReportInterval(id string) (time.Duration, bool)
	// KindInterval is the interval of an unregistered device of a kind.
	KindInterval(kind, power string) time.Duration
	// DevicesBehind lists the devices registered behind a gateway.
	DevicesBehind(gw string) []string
}

// DefaultVitalGrace is how long a device may keep sending readings without
// one of its vital fields (device.VitalFields) before it is flagged: 30 s,
// three vitals-monitor intervals. The longest SpO2 gaps of the BIDMC
// recordings (13 s in bidmc_01, 25 s in bidmc_19) stay below it; a probe
// taken off does not.
const DefaultVitalGrace = 30 * time.Second

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Registry returns the current registry (nil, or a nil result: no
	// registry; intervals come from the kinds devices announce and
	// gateway statuses are not scoped).
	Registry func() SupervisedRegistry
	// VitalGrace: see DefaultVitalGrace; 0 = default.
	VitalGrace time.Duration
	// Fallback is the report interval of a device the registry does not
	// know and that announced no kind; 0 = device.DefaultInterval of kind
	// "other" (25 h).
	Fallback time.Duration
}

// VerdictKind says what the Supervisor decided.
type VerdictKind int

// The verdicts.
const (
	// VerdictOffline: Device missed its interval, or it (or its gateway for
	// it) said it is offline. Raise device_offline for it.
	VerdictOffline VerdictKind = iota + 1
	// VerdictGatewayLost: the gateway Device went away (last will, or no
	// heartbeat within its interval). Devices lists every device behind it,
	// now unknown. Raise ONE alert, for the gateway.
	VerdictGatewayLost
	// VerdictBack: Device (or gateway) that had an offline verdict is heard
	// from again.
	VerdictBack
	// VerdictVitalMissing: Device keeps sending readings but not Field.
	VerdictVitalMissing
	// VerdictVitalBack: Field is back after VerdictVitalMissing.
	VerdictVitalBack
	// VerdictRefused: a status on Device's topic named devices it may not
	// speak for (Devices); they were ignored (with Whole, the whole status
	// was). Fresh lists those not reported before: log only those.
	VerdictRefused
)

func (k VerdictKind) String() string {
	switch k {
	case VerdictOffline:
		return "offline"
	case VerdictGatewayLost:
		return "gateway_lost"
	case VerdictBack:
		return "back"
	case VerdictVitalMissing:
		return "vital_missing"
	case VerdictVitalBack:
		return "vital_back"
	case VerdictRefused:
		return "refused"
	}
	return fmt.Sprintf("verdict(%d)", int(k))
}

// Verdict is one decision of the Supervisor.
type Verdict struct {
	Kind   VerdictKind
	Site   string
	Device string
	// Devices: the devices behind a lost gateway, or the refused ids.
	Devices []string
	// Field: the vital field (VerdictVitalMissing, VerdictVitalBack).
	Field string
	// At is when the decision was made (wall time).
	At time.Time
	// Detail is a sentence for staff, e.g. "no message for 12m0s (report
	// interval 10m0s)".
	Detail string
	// Retained and StatusTS: the verdict comes from a retained status
	// composed at StatusTS (a last will seen again after a restart); the
	// caller may skip it when an alert was opened since.
	Retained bool
	StatusTS time.Time
	// Reason of a refusal: "site" (the device is registered on another
	// site), "gateway" (not registered behind this gateway), "unregistered".
	Reason string
	// Fresh and Whole: see VerdictRefused.
	Fresh []string
	Whole bool
}

// supDevice is what the Supervisor knows of one device (wall time).
type supDevice struct {
	site     string
	kind     string
	gateway  string // the gateway it is behind, as registered or announced
	lastSeen time.Time
	armed    bool // heard from and not shut down: a silence is an offline
	offline  bool // an offline (or gateway-lost) verdict stands
	unknown  bool // its gateway is lost
	// gateways only
	heartbeat time.Duration // announced heartbeat period
	listed    []string      // devices its statuses listed (scoped)
	// vital fields: when each was last received; flagged ones
	vitalAt  map[string]time.Time
	vitalBad map[string]bool
}

// Supervisor supervises devices and gateways from their data. Safe for
// concurrent use. Create it with NewSupervisor.
type Supervisor struct {
	cfg SupervisorConfig

	mu       sync.Mutex
	devices  map[string]*supDevice
	reported map[string]bool // refusal pairs already reported
	refused  map[string]int  // refusals by reason
}

// NewSupervisor returns a Supervisor.
func NewSupervisor(cfg SupervisorConfig) *Supervisor {
	if cfg.VitalGrace <= 0 {
		cfg.VitalGrace = DefaultVitalGrace
	}
	return &Supervisor{cfg: cfg, devices: map[string]*supDevice{}, reported: map[string]bool{}, refused: map[string]int{}}
}

func (s *Supervisor) registry() SupervisedRegistry {
	if s.cfg.Registry == nil {
		return nil
	}
	r := s.cfg.Registry()
	if r == nil {
		return nil
	}
	return r
}

// dev returns the state of id, creating it. mu is held.
func (s *Supervisor) dev(reg SupervisedRegistry, site, id string) *supDevice {
	d := s.devices[id]
	if d == nil {
		d = &supDevice{site: site}
		s.devices[id] = d
	}
	if d.site == "" {
		d.site = site
	}
	if reg != nil {
		if rd, ok := reg.Device(id); ok {
			d.site, d.kind = rd.SiteID, rd.Kind
			if rd.GatewayID != "" {
				d.gateway = rd.GatewayID
			}
		}
	}
	return d
}

// interval is the report interval of id. mu is held.
func (s *Supervisor) interval(reg SupervisedRegistry, id string, d *supDevice) time.Duration {
	var iv time.Duration
	_, registered := func() (registry.Device, bool) {
		if reg == nil {
			return registry.Device{}, false
		}
		return reg.Device(id)
	}()
	if !registered && d.kind == "" && s.cfg.Fallback > 0 {
		iv = s.cfg.Fallback
	} else if reg != nil {
		if x, ok := reg.ReportInterval(id); ok {
			iv = x
		} else {
			iv = reg.KindInterval(d.kind, "")
		}
	} else {
		iv = device.DefaultInterval(device.Kind(d.kind), "")
	}
	if d.heartbeat > 0 && 3*d.heartbeat > iv {
		iv = 3 * d.heartbeat
	}
	return iv
}

// Interval returns the report interval the Supervisor applies to a device
// now (registry, announced kind and heartbeat).
func (s *Supervisor) Interval(id string) time.Duration {
	reg := s.registry()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[id]
	if d == nil {
		d = &supDevice{}
		if reg != nil {
			if rd, ok := reg.Device(id); ok {
				d.kind = rd.Kind
			}
		}
	}
	return s.interval(reg, id, d)
}

// heard marks id as heard from at now and returns a VerdictBack when an
// offline verdict stood. A gateway heard again takes its devices out of
// "unknown" with a fresh interval. mu is held.
func (s *Supervisor) heard(reg SupervisedRegistry, site, id string, at, now time.Time) []Verdict {
	d := s.dev(reg, site, id)
	if at.After(now) {
		at = now
	}
	if at.After(d.lastSeen) {
		d.lastSeen = at
	}
	d.armed = true
	var out []Verdict
	if d.offline {
		d.offline = false
		out = append(out, Verdict{Kind: VerdictBack, Site: d.site, Device: id, At: now, Detail: "device back online"})
	}
	if d.unknown {
		d.unknown = false
	}
	if d.kind == string(device.Gateway) || d.heartbeat > 0 || len(d.listed) > 0 {
		for _, c := range s.behind(reg, id, d) {
			if cd := s.devices[c]; cd != nil && cd.unknown {
				cd.unknown = false
				if cd.lastSeen.Before(now) {
					cd.lastSeen = now // a fresh interval from the gateway's return
				}
			}
		}
	}
	return out
}

// behind lists the devices behind gateway gw: registered and listed. mu is
// held.
func (s *Supervisor) behind(reg SupervisedRegistry, gw string, d *supDevice) []string {
	var out []string
	if reg != nil {
		out = append(out, reg.DevicesBehind(gw)...)
	}
	out = append(out, d.listed...)
	for id, x := range s.devices {
		if x.gateway == gw {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Heard records a valid reading or event of a device on site at now (wall
// time).
func (s *Supervisor) Heard(site, id string, now time.Time) []Verdict {
	reg := s.registry()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heard(reg, site, id, now, now)
}

// Telemetry records a valid telemetry message of a device at now: it is
// heard from, and each of its kind's vital fields (device.VitalFields) that
// no reading of the message carries and that has not been received for
// longer than VitalGrace is flagged once (VerdictVitalMissing), until it
// comes back (VerdictVitalBack).
func (s *Supervisor) Telemetry(site, id string, readings []device.Reading, now time.Time) []Verdict {
	reg := s.registry()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.heard(reg, site, id, now, now)
	d := s.devices[id]
	vitals := device.VitalFields(device.Kind(d.kind))
	if len(vitals) == 0 {
		return out
	}
	if d.vitalAt == nil {
		d.vitalAt, d.vitalBad = map[string]time.Time{}, map[string]bool{}
	}
	for _, f := range vitals {
		present := false
		for _, r := range readings {
			if _, ok := r.Values[f]; ok {
				present = true
				break
			}
		}
		last, known := d.vitalAt[f]
		switch {
		case present:
			d.vitalAt[f] = now
			if d.vitalBad[f] {
				d.vitalBad[f] = false
				out = append(out, Verdict{Kind: VerdictVitalBack, Site: d.site, Device: id, Field: f, At: now,
					Detail: fmt.Sprintf("%s received again", f)})
			}
		case !known:
			d.vitalAt[f] = now // the clock starts at the first reading
		case !d.vitalBad[f] && now.Sub(last) > s.cfg.VitalGrace:
			d.vitalBad[f] = true
			out = append(out, Verdict{Kind: VerdictVitalMissing, Site: d.site, Device: id, Field: f, At: now,
				Detail: fmt.Sprintf("readings keep arriving without %s for %s (sensor or probe off?)", f, now.Sub(last).Round(time.Second))})
		}
	}
	return out
}

// scope checks a status on the topic of device id at site against the
// registry: the device must not be registered on another site; a status
// published by a gateway (st.Gateway) may be only for a device registered
// behind it; a gateway's Devices and Report may name only devices
// registered behind it. It returns the refused ids with their reason, and
// whether the whole status is refused. mu is held.
func (s *Supervisor) scope(reg SupervisedRegistry, site, id string, st *device.Status) (refused map[string]string, whole bool) {
	if reg == nil {
		return nil, false
	}
	refused = map[string]string{}
	if rd, ok := reg.Device(id); ok && rd.SiteID != site {
		refused[id] = "site"
		return refused, true
	}
	if st.Gateway != "" {
		rd, ok := reg.Device(id)
		switch {
		case !ok:
			refused[id] = "unregistered"
			return refused, true
		case rd.GatewayID != st.Gateway:
			refused[id] = "gateway"
			return refused, true
		}
	}
	check := func(x string) {
		if x == id {
			return
		}
		rd, ok := reg.Device(x)
		switch {
		case !ok:
			refused[x] = "unregistered"
		case rd.SiteID != site:
			refused[x] = "site"
		case rd.GatewayID != id:
			refused[x] = "gateway"
		}
	}
	for _, x := range st.Devices {
		check(x)
	}
	for _, r := range st.Report {
		check(r.Device)
	}
	return refused, false
}

// refusal counts the refusals and returns their VerdictRefused (nil when
// nothing was refused); Fresh lists the pairs not reported before. mu is
// held.
func (s *Supervisor) refusal(site, id string, refused map[string]string, whole bool, now time.Time) []Verdict {
	if len(refused) == 0 {
		return nil
	}
	ids := make([]string, 0, len(refused))
	for x := range refused {
		ids = append(ids, x)
	}
	sort.Strings(ids)
	var fresh, reasons []string
	for _, x := range ids {
		s.refused[refused[x]]++
		reasons = append(reasons, x+": "+refused[x])
		key := id + "\x00" + x
		if !s.reported[key] {
			s.reported[key] = true
			fresh = append(fresh, x)
		}
	}
	what := "status names devices not registered behind " + id
	if whole {
		what = "status refused: " + id + " may not speak for it"
	}
	return []Verdict{{Kind: VerdictRefused, Site: site, Device: id, Devices: ids, Fresh: fresh, Whole: whole, At: now,
		Reason: refused[ids[0]], Detail: what + " on site " + site + " (" + strings.Join(reasons, ", ") + "); ignored"}}
}

// Refused returns how many device ids in statuses were refused, by reason
// (site, gateway, unregistered).
func (s *Supervisor) Refused() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.refused))
	for k, v := range s.refused {
		out[k] = v
	}
	return out
}

// Status applies a decoded status received at now on the status topic of
// device id at site (retained: it came as a retained message).
//
//   - online (boot, heartbeat, or a gateway's report of one device): heard;
//     a heartbeat's Report marks each device online (heard at its
//     last_seen) or offline.
//   - offline/shutdown: disarmed, no verdict.
//   - gateway_lost (a gateway's last will): one VerdictGatewayLost naming
//     every device behind the gateway; those devices become unknown and are
//     not timed out until the gateway is back.
//   - offline with last_will or no_readings: VerdictOffline at once.
//
// Names the device may not speak for are refused first (see scope): a
// refused device gets no verdict, and the refusal is a VerdictRefused (its
// Fresh ids not reported before).
func (s *Supervisor) Status(site, id string, st *device.Status, retained bool, now time.Time) []Verdict {
	reg := s.registry()
	s.mu.Lock()
	defer s.mu.Unlock()
	refused, whole := s.scope(reg, site, id, st)
	out := s.refusal(site, id, refused, whole, now)
	if whole {
		return out
	}
	d := s.dev(reg, site, id)
	if st.Kind != "" && d.kind == "" {
		d.kind = string(st.Kind)
	}
	if st.Gateway != "" && d.gateway == "" {
		d.gateway = st.Gateway
	}
	if st.HeartbeatMS > 0 {
		d.heartbeat = time.Duration(st.HeartbeatMS) * time.Millisecond
	}
	if len(st.Devices) > 0 {
		d.listed = d.listed[:0]
		for _, x := range st.Devices {
			if _, bad := refused[x]; !bad && x != id {
				d.listed = append(d.listed, x)
				if cd := s.dev(reg, site, x); cd.gateway == "" {
					cd.gateway = id
				}
			}
		}
	}
	statusTS := time.UnixMilli(st.TS)
	switch {
	case st.State == device.Online:
		// A retained online status may be old, but counting from its own
		// time would take every device for silent when this process
		// starts: it counts as heard now (a dead device is found one
		// interval later).
		out = append(out, s.heard(reg, site, id, now, now)...)
		for _, r := range st.Report {
			if _, bad := refused[r.Device]; bad || r.Device == id {
				continue
			}
			cd := s.dev(reg, site, r.Device)
			switch r.State {
			case device.Online:
				seen := now
				if r.LastSeen > 0 {
					seen = time.UnixMilli(r.LastSeen)
				}
				if !cd.armed && r.LastSeen > 0 && now.Sub(seen) > s.interval(reg, r.Device, cd) {
					// First heard of through an old last_seen: armed, and
					// the next tick decides.
					cd.armed, cd.lastSeen = true, seen
					continue
				}
				out = append(out, s.heard(reg, cd.site, r.Device, seen, now)...)
			case device.Offline:
				if !cd.offline {
					cd.offline, cd.armed = true, false
					how := "its gateway " + id + " reports no readings"
					if r.Via == device.ViaAvailability {
						how = "zigbee2mqtt availability (via gateway " + id + ") reports it offline"
					}
					out = append(out, Verdict{Kind: VerdictOffline, Site: cd.site, Device: r.Device, At: now, Detail: "device offline: " + how})
				}
			}
		}
	case st.Reason == device.ReasonShutdown:
		d.armed = false
		for _, c := range s.behind(reg, id, d) {
			if cd := s.devices[c]; cd != nil {
				cd.unknown = true
			}
		}
	case st.Reason == device.ReasonGatewayLost:
		out = append(out, s.lose(reg, id, d, "last will: connection lost", now, retained, statusTS)...)
	case st.State == device.Offline && (st.Reason == device.ReasonLastWill || st.Reason == device.ReasonNoReadings):
		if !d.offline {
			d.offline, d.armed = true, false
			out = append(out, Verdict{Kind: VerdictOffline, Site: d.site, Device: id, At: now, Retained: retained, StatusTS: statusTS,
				Detail: "device offline (" + st.Reason + ")"})
		}
	}
	return out
}

// lose marks gateway id lost and returns its VerdictGatewayLost (none when
// it is lost already). mu is held.
func (s *Supervisor) lose(reg SupervisedRegistry, id string, d *supDevice, why string, now time.Time, retained bool, ts time.Time) []Verdict {
	if d.offline {
		return nil
	}
	d.offline, d.armed = true, false
	devs := s.behind(reg, id, d)
	for _, c := range devs {
		if cd := s.devices[c]; cd != nil {
			cd.unknown = true
		} else {
			s.devices[c] = &supDevice{site: d.site, gateway: id, unknown: true}
		}
	}
	detail := "gateway " + id + " lost (" + why + ")"
	if len(devs) > 0 {
		detail += fmt.Sprintf("; %d devices behind it are unknown: %s", len(devs), strings.Join(devs, ", "))
	}
	return []Verdict{{Kind: VerdictGatewayLost, Site: d.site, Device: id, Devices: devs, At: now, Detail: detail,
		Retained: retained, StatusTS: ts}}
}

// Tick returns the verdicts due at now: a gateway silent past its interval
// is lost (one VerdictGatewayLost); any other armed device silent past its
// interval is offline, unless its gateway is lost (it is unknown then).
// Behind a gateway that sends heartbeats, a device's verdict waits for the
// first heartbeat after its deadline (at most one heartbeat period late),
// so that a gateway that dies silently is one alert, not one per device.
func (s *Supervisor) Tick(now time.Time) []Verdict {
	reg := s.registry()
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.devices))
	for id := range s.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []Verdict
	isGateway := func(d *supDevice) bool { return d.kind == string(device.Gateway) || d.heartbeat > 0 }
	// Gateways first, so that their devices are unknown, not offline.
	for _, id := range ids {
		d := s.devices[id]
		if !isGateway(d) || !d.armed || d.offline {
			continue
		}
		iv := s.interval(reg, id, d)
		if silence := now.Sub(d.lastSeen); silence > iv {
			out = append(out, s.lose(reg, id, d, fmt.Sprintf("no heartbeat for %s, interval %s", silence.Round(time.Second), iv), now, false, time.Time{})...)
		}
	}
	for _, id := range ids {
		d := s.devices[id]
		if isGateway(d) || !d.armed || d.offline || d.unknown {
			continue
		}
		iv := s.interval(reg, id, d)
		if gw := s.devices[d.gateway]; d.gateway != "" && gw != nil {
			if gw.offline {
				continue
			}
			// Behind a gateway that sends heartbeats, the device's silence
			// counts only once the gateway has been heard after the
			// device's deadline: a gateway that just died is one alert
			// when its heartbeat is missed, not one per device before.
			if gw.heartbeat > 0 && !gw.lastSeen.After(d.lastSeen.Add(iv)) {
				continue
			}
		}
		if silence := now.Sub(d.lastSeen); silence > iv {
			d.offline = true
			out = append(out, Verdict{Kind: VerdictOffline, Site: d.site, Device: id, At: now,
				Detail: fmt.Sprintf("no message for %s (report interval %s)", silence.Round(time.Second), iv)})
		}
	}
	return out
}

// Offline returns the devices with an offline or gateway-lost verdict
// standing, sorted.
func (s *Supervisor) Offline() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, d := range s.devices {
		if d.offline {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Knows reports whether the Supervisor has state for a device (it was
// heard of).
func (s *Supervisor) Knows(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.devices[id]
	return ok
}
