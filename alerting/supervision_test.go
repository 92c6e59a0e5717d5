package alerting

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// supRegistry: site s1 with gateway gw-1 serving a vitals monitor, a
// battery SOS button and a mains plug; site s2 with gw-2 and its monitor.
func supRegistry() *registry.Snapshot {
	sites := []registry.Site{{ID: "s1", TimeZone: "UTC"}, {ID: "s2", TimeZone: "UTC"}}
	devs := []registry.Device{
		{ID: "gw-1", SiteID: "s1", Kind: registry.KindGateway},
		{ID: "vm-1", SiteID: "s1", Kind: registry.KindVitalsMonitor, GatewayID: "gw-1"},
		{ID: "sos-1", SiteID: "s1", Kind: registry.KindSOSButton, Power: registry.PowerBattery, GatewayID: "gw-1"},
		{ID: "plug-1", SiteID: "s1", Kind: registry.KindOther, Power: registry.PowerMains, GatewayID: "gw-1"},
		{ID: "gw-2", SiteID: "s2", Kind: registry.KindGateway},
		{ID: "vm-2", SiteID: "s2", Kind: registry.KindVitalsMonitor, GatewayID: "gw-2"},
	}
	return registry.NewSnapshot(time.Time{}, sites, nil, nil, devs, nil, nil)
}

func newSup() *Supervisor {
	sn := supRegistry()
	return NewSupervisor(SupervisorConfig{Registry: func() SupervisedRegistry { return sn }})
}

var supT0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

func supKinds(vs []Verdict) string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Kind.String()+":"+v.Device)
	}
	return strings.Join(out, ",")
}

func supHeartbeat(gw string, at time.Time, devs []string, report ...device.DeviceReport) *device.Status {
	return &device.Status{V: 1, Device: gw, TS: at.UnixMilli(), State: device.Online, Reason: device.ReasonHeartbeat,
		Kind: device.Gateway, Devices: devs, HeartbeatMS: 30000, Report: report}
}

// TestSupervisorOwnIntervals: each device is offline only past its own
// interval; a battery button reporting only on change stays online for 25 h.
func TestSupervisorOwnIntervals(t *testing.T) {
	t.Parallel()
	s := newSup()
	s.Heard("s1", "vm-1", supT0)
	s.Heard("s1", "sos-1", supT0)
	s.Heard("s1", "plug-1", supT0)
	s.Status("s1", "gw-1", supHeartbeat("gw-1", supT0, []string{"vm-1", "sos-1", "plug-1"}), false, supT0)
	// Gateway heartbeats keep coming every 30 s for 24 h; vm-1 keeps
	// reporting; sos-1 and plug-1 are quiet.
	var got []Verdict
	for at := supT0.Add(30 * time.Second); at.Before(supT0.Add(24 * time.Hour)); at = at.Add(30 * time.Second) {
		s.Status("s1", "gw-1", supHeartbeat("gw-1", at, nil), false, at)
		s.Heard("s1", "vm-1", at)
		got = append(got, s.Tick(at)...)
	}
	if supKinds(got) != "offline:plug-1" {
		t.Fatalf("within 24 h: %s, want only the mains plug offline (10 min)", supKinds(got))
	}
	if !strings.Contains(got[0].Detail, "report interval 10m0s") || got[0].At.Sub(supT0) > 10*time.Minute+31*time.Second {
		t.Errorf("plug verdict %+v", got[0])
	}
	// 25 h + a bit: the battery button is offline too.
	at := supT0.Add(25*time.Hour + time.Minute)
	s.Status("s1", "gw-1", supHeartbeat("gw-1", at, nil), false, at)
	s.Heard("s1", "vm-1", at)
	if v := s.Tick(at); supKinds(v) != "offline:sos-1" {
		t.Fatalf("after 25 h: %s", supKinds(v))
	}
	// Heard again: back, once.
	if v := s.Heard("s1", "sos-1", at.Add(time.Second)); supKinds(v) != "back:sos-1" {
		t.Fatalf("comeback: %s", supKinds(v))
	}
	if v := s.Heard("s1", "sos-1", at.Add(2*time.Second)); len(v) != 0 {
		t.Fatalf("second message: %s", supKinds(v))
	}
}

// TestSupervisorAvailability: a gateway reporting a change-only device
// online through zigbee2mqtt availability keeps it online past its
// interval; a report of offline is an offline verdict.
func TestSupervisorAvailability(t *testing.T) {
	t.Parallel()
	s := newSup()
	s.Heard("s1", "plug-1", supT0)
	var got []Verdict
	for at := supT0; at.Before(supT0.Add(2 * time.Hour)); at = at.Add(30 * time.Second) {
		got = append(got, s.Status("s1", "gw-1", supHeartbeat("gw-1", at, []string{"plug-1"},
			device.DeviceReport{Device: "plug-1", State: device.Online, LastSeen: at.UnixMilli(), Via: device.ViaAvailability}), false, at)...)
		got = append(got, s.Tick(at)...)
	}
	if len(got) != 0 {
		t.Fatalf("2 h of availability online: %s", supKinds(got))
	}
	at := supT0.Add(2 * time.Hour)
	v := s.Status("s1", "gw-1", supHeartbeat("gw-1", at, nil,
		device.DeviceReport{Device: "plug-1", State: device.Offline, Via: device.ViaAvailability}), false, at)
	if supKinds(v) != "offline:plug-1" || !strings.Contains(v[0].Detail, "availability") {
		t.Fatalf("availability offline: %+v", v)
	}
}

// TestSupervisorGatewayLost: a gateway's last will is one verdict naming
// its devices; its devices raise nothing while it is gone; the same for a
// heartbeat missed.
func TestSupervisorGatewayLost(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"last_will", "heartbeat_missed"} {
		t.Run(how, func(t *testing.T) {
			s := newSup()
			s.Status("s1", "gw-1", supHeartbeat("gw-1", supT0, []string{"vm-1", "sos-1"}), false, supT0)
			s.Heard("s1", "vm-1", supT0)
			s.Heard("s1", "plug-1", supT0)
			var got []Verdict
			lostAt := supT0.Add(time.Minute)
			if how == "last_will" {
				will := &device.Status{V: 1, Device: "gw-1", TS: supT0.UnixMilli(), State: device.Unknown,
					Reason: device.ReasonGatewayLost, Devices: []string{"vm-1", "sos-1"}}
				got = append(got, s.Status("s1", "gw-1", will, false, lostAt)...)
			}
			for at := supT0.Add(10 * time.Second); at.Before(supT0.Add(2 * time.Hour)); at = at.Add(10 * time.Second) {
				got = append(got, s.Tick(at)...)
			}
			if supKinds(got) != "gateway_lost:gw-1" {
				t.Fatalf("verdicts %s, want one gateway_lost", supKinds(got))
			}
			v := got[0]
			if strings.Join(v.Devices, ",") != "plug-1,sos-1,vm-1" || !strings.Contains(v.Detail, "plug-1, sos-1, vm-1") {
				t.Errorf("lost verdict names %v: %s", v.Devices, v.Detail)
			}
			if how == "heartbeat_missed" && (v.At.Sub(supT0) <= 90*time.Second || v.At.Sub(supT0) > 100*time.Second) {
				t.Errorf("heartbeat missed at +%s, want just after 90 s (3 x 30 s)", v.At.Sub(supT0))
			}
			// The gateway comes back: one back verdict; its devices get a
			// fresh interval (the monitor goes offline 10 s later, alone).
			back := supT0.Add(3 * time.Hour)
			if v := s.Status("s1", "gw-1", supHeartbeat("gw-1", back, nil), false, back); supKinds(v) != "back:gw-1" {
				t.Fatalf("gateway back: %s", supKinds(v))
			}
			s.Status("s1", "gw-1", supHeartbeat("gw-1", back.Add(30*time.Second), nil), false, back.Add(30*time.Second))
			if v := s.Tick(back.Add(11 * time.Second)); supKinds(v) != "offline:vm-1" {
				t.Fatalf("after return: %s", supKinds(v))
			}
		})
	}
}

// TestSupervisorScope: statuses may name only devices registered behind the
// gateway; anything else is refused, counted each time, reported once, and
// raises nothing.
func TestSupervisorScope(t *testing.T) {
	t.Parallel()
	s := newSup()
	s.Heard("s2", "vm-2", supT0)
	// gw-1's last will lists a device of site s2.
	will := &device.Status{V: 1, Device: "gw-1", TS: supT0.UnixMilli(), State: device.Unknown, Reason: device.ReasonGatewayLost,
		Devices: []string{"vm-1", "vm-2", "ghost"}}
	s.Status("s1", "gw-1", supHeartbeat("gw-1", supT0, []string{"vm-1"}), false, supT0)
	v := s.Status("s1", "gw-1", will, false, supT0.Add(time.Second))
	if supKinds(v) != "refused:gw-1,gateway_lost:gw-1" {
		t.Fatalf("verdicts %s", supKinds(v))
	}
	if strings.Join(v[0].Devices, ",") != "ghost,vm-2" || strings.Contains(strings.Join(v[1].Devices, ","), "vm-2") {
		t.Errorf("refused %v, lost names %v", v[0].Devices, v[1].Devices)
	}
	// A device status for another site's device, from gw-1, on s1's topic
	// and on a topic naming the device on the wrong site.
	for i := range 3 {
		st := &device.Status{V: 1, Device: "vm-2", TS: supT0.UnixMilli(), State: device.Offline, Reason: device.ReasonNoReadings, Gateway: "gw-1"}
		v = s.Status("s1", "vm-2", st, false, supT0.Add(time.Duration(i+2)*time.Second))
		if supKinds(v) != "refused:vm-2" || !v[0].Whole || (i == 0) != (len(v[0].Fresh) == 1) {
			t.Fatalf("try %d: %+v, want refused, fresh only the first time", i, v)
		}
	}
	// A heartbeat reporting another site's device offline.
	v = s.Status("s1", "gw-1", supHeartbeat("gw-1", supT0.Add(10*time.Second), nil,
		device.DeviceReport{Device: "vm-2", State: device.Offline}), false, supT0.Add(10*time.Second))
	if supKinds(v) != "refused:gw-1,back:gw-1" || v[0].Whole {
		t.Fatalf("foreign report: %s", supKinds(v))
	}
	if got := s.Refused(); got["site"] != 5 || got["unregistered"] != 1 {
		t.Errorf("refused counts %v, want site 5 (will, 3 statuses, report), unregistered 1", got)
	}
	if off := s.Offline(); strings.Contains(strings.Join(off, ","), "vm-2") {
		t.Errorf("vm-2 marked offline by a foreign status: %v", off)
	}
}

// TestSupervisorVitalMissing: a monitor that keeps sending heart rate
// without SpO2 is flagged once after VitalGrace, and cleared when SpO2
// returns.
func TestSupervisorVitalMissing(t *testing.T) {
	t.Parallel()
	s := newSup()
	full := []device.Reading{{Values: map[string]float64{"hr_bpm": 80, "spo2_pct": 97}}}
	hrOnly := []device.Reading{{Values: map[string]float64{"hr_bpm": 80, "pulse_bpm": 80}}}
	s.Telemetry("s1", "vm-1", full, supT0)
	var got []Verdict
	for i := 1; i <= 60; i++ {
		got = append(got, s.Telemetry("s1", "vm-1", hrOnly, supT0.Add(time.Duration(i)*time.Second))...)
	}
	if supKinds(got) != "vital_missing:vm-1" || got[0].Field != "spo2_pct" || got[0].At != supT0.Add(31*time.Second) {
		t.Fatalf("got %+v", got)
	}
	if v := s.Telemetry("s1", "vm-1", full, supT0.Add(61*time.Second)); supKinds(v) != "vital_back:vm-1" {
		t.Fatalf("probe back: %s", supKinds(v))
	}
	// A 25 s gap (bidmc_19's longest SpO2 NaN stretch) is not flagged.
	got = nil
	for i := 62; i <= 87; i++ {
		got = append(got, s.Telemetry("s1", "vm-1", hrOnly, supT0.Add(time.Duration(i)*time.Second))...)
	}
	if len(got) != 0 {
		t.Fatalf("25 s gap flagged: %s", supKinds(got))
	}
	// An SOS button has no vital field.
	if v := s.Telemetry("s1", "sos-1", []device.Reading{{Values: map[string]float64{"battery_pct": 50}}}, supT0.Add(time.Hour)); len(v) != 0 {
		t.Fatalf("sos button: %s", supKinds(v))
	}
}

// TestSupervisorNoRegistry: without a registry, intervals come from the
// announced kind and nothing is scoped.
func TestSupervisorNoRegistry(t *testing.T) {
	t.Parallel()
	s := NewSupervisor(SupervisorConfig{})
	s.Status("x", "vm-9", &device.Status{V: 1, Device: "vm-9", TS: supT0.UnixMilli(), State: device.Online, Kind: device.VitalsMonitor}, false, supT0)
	if v := s.Tick(supT0.Add(10 * time.Second)); len(v) != 0 {
		t.Fatalf("at 10 s: %s", supKinds(v))
	}
	if v := s.Tick(supT0.Add(11 * time.Second)); supKinds(v) != "offline:vm-9" {
		t.Fatalf("at 11 s: %s", supKinds(v))
	}
	// A device with its own connection: last will at once.
	s.Heard("x", "fd-9", supT0)
	v := s.Status("x", "fd-9", &device.Status{V: 1, Device: "fd-9", TS: supT0.UnixMilli(), State: device.Offline, Reason: device.ReasonLastWill}, true, supT0.Add(time.Second))
	if supKinds(v) != "offline:fd-9" || !v[0].Retained {
		t.Fatalf("last will: %+v", v)
	}
	// A clean shutdown raises nothing, ever.
	s.Heard("x", "mt-9", supT0)
	s.Status("x", "mt-9", &device.Status{V: 1, Device: "mt-9", TS: supT0.UnixMilli(), State: device.Offline, Reason: device.ReasonShutdown}, false, supT0)
	if v := s.Tick(supT0.Add(48 * time.Hour)); fmt.Sprint(supKinds(v)) != "" {
		t.Fatalf("after shutdown: %s", supKinds(v))
	}
}

var _ SupervisedRegistry = (*registry.Snapshot)(nil)

// TestSupervisorRestart: a retained online status seen when alerting starts
// counts from now, not from its old ts; a device neither registered nor
// announcing a kind gets the fallback interval.
func TestSupervisorRestart(t *testing.T) {
	t.Parallel()
	s := NewSupervisor(SupervisorConfig{Fallback: 2 * time.Minute})
	old := &device.Status{V: 1, Device: "vm-9", TS: supT0.Add(-time.Hour).UnixMilli(), State: device.Online, Kind: device.VitalsMonitor}
	s.Status("x", "vm-9", old, true, supT0)
	if v := s.Tick(supT0.Add(time.Second)); len(v) != 0 {
		t.Fatalf("retained boot status of an hour ago: %s", supKinds(v))
	}
	s.Heard("x", "thing", supT0)
	if v := s.Tick(supT0.Add(119 * time.Second)); supKinds(v) != "offline:vm-9" {
		t.Fatalf("at 119 s: %s, want only the monitor (10 s)", supKinds(v))
	}
	if v := s.Tick(supT0.Add(121 * time.Second)); supKinds(v) != "offline:thing" {
		t.Fatalf("at 121 s: %s, want the kindless device (fallback 2 min)", supKinds(v))
	}
}

// TestVitalMissingAlert: through the broker and the store, a vitals monitor
// that keeps sending heart rate without SpO2 for longer than 30 s (wall
// time, injected clock) raises one vital_missing alert, resolved when SpO2
// is back.
func TestVitalMissingAlert(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	e := newEnv(t)
	r := e.start(func(c *Config) { c.Now = now })
	probes := 0
	// send publishes a reading of vm-v at the injected now and waits until
	// the service handled it (a probe status after it on the same
	// connection is handled after it).
	send := func(seq uint64, vals map[string]float64) {
		e.publish("vm-v", device.ChanTelemetry, device.Telemetry{V: 1, Device: "vm-v", Boot: 1, ID: seq, Seq: seq, TS: now().UnixMilli(), Values: vals})
		probes++
		p := fmt.Sprintf("probe-v-%d", probes)
		e.publish(p, device.ChanStatus, device.Status{V: 1, Device: p, TS: now().UnixMilli(), State: device.Offline, Reason: device.ReasonShutdown})
		testenv.EventuallyTrue(t, 10*time.Second, p+" handled", func() bool { return r.svc.knows(p) })
	}
	e.publish("vm-v", device.ChanStatus, device.Status{V: 1, Device: "vm-v", TS: now().UnixMilli(), State: device.Online, Reason: device.ReasonBoot, Kind: device.VitalsMonitor})
	full := map[string]float64{"hr_bpm": 80, "spo2_pct": 97}
	hrOnly := map[string]float64{"hr_bpm": 80, "pulse_bpm": 80}
	send(1, full)
	for i := uint64(2); i <= 8; i++ {
		clock.Add(int64(5 * time.Second))
		send(i, hrOnly)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "vital_missing opened", func() bool { return len(openAlerts(t, r.m, TypeVitalMissing)) == 1 })
	a := openAlerts(t, r.m, TypeVitalMissing)[0]
	if a.Device != "vm-v" || a.Severity != SeverityHigh || !strings.Contains(a.Detail, "spo2_pct") {
		t.Errorf("alert %+v", a)
	}
	clock.Add(int64(time.Second))
	send(9, full)
	testenv.EventuallyTrue(t, 10*time.Second, "vital_missing resolved", func() bool { return len(openAlerts(t, r.m, TypeVitalMissing)) == 0 })
	if n := len(alertsOf(t, r.m, "vm-v", TypeVitalMissing)); n != 1 {
		t.Errorf("%d vital_missing alerts, want 1", n)
	}
}
