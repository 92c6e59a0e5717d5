package alerting

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// testDirectory is a registry view for the service tests.
type testDirectory struct {
	loc   *time.Location
	kinds map[string]string
	cards map[string]string // card -> resident
	// cardSites: card -> the holder's site (default "demo").
	cardSites map[string]string
}

func (d testDirectory) ResidentAt(string, time.Time) (registry.Resident, bool) {
	return registry.Resident{}, false
}
func (d testDirectory) Location(string) *time.Location { return d.loc }
func (d testDirectory) Device(id string) (registry.Device, bool) {
	k, ok := d.kinds[id]
	return registry.Device{ID: id, Kind: k, SiteID: "demo"}, ok
}
func (d testDirectory) ResidentByCard(card string, _ time.Time) (registry.Resident, bool) {
	r, ok := d.cards[card]
	site := "demo"
	if s, ok := d.cardSites[card]; ok {
		site = s
	}
	return registry.Resident{ID: r, SiteID: site}, ok
}

func alertWith(t *testing.T, m *Manager, typ string, ok func(Alert) bool) (Alert, bool) {
	t.Helper()
	for _, a := range allAlerts(t, m) {
		if a.Type == typ && ok(a) {
			return a, true
		}
	}
	return Alert{}, false
}

// TestRulesThroughService runs the new rules through the real service on
// the machine's Mosquitto: threshold hysteresis (auto-resolve), a
// per-resident threshold changed live, NEWS2, low battery with hysteresis,
// unprotected resident, bed exit at night and out of bed at night.
func TestRulesThroughService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, d := range []string{"vm-9", "fd-9", "bed-9", "vm-8"} {
		e.binding[d] = "res-9"
	}
	e.binding["vm-8"] = "res-8"
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// A night window around the current time, so a live bed exit is "at night".
	now := time.Now().In(berlin)
	night := DailyWindow{Start: hhmm(now.Add(-time.Hour).Hour(), 0), End: hhmm(now.Add(2*time.Hour).Hour(), 0)}
	dir := testDirectory{loc: berlin, kinds: map[string]string{"vm-9": "vitals_monitor", "vm-8": "vitals_monitor",
		"fd-9": "fall_detector", "bed-9": "bed_sensor"}}
	var clk skewClock // moved past OutOfBed in step 5
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules = RuleConfig{Directory: func() Directory { return dir }, TickEvery: 100 * time.Millisecond,
			ThresholdsEvery: 100 * time.Millisecond,
			Absence:         AbsenceRules{Night: night, OutOfBed: 2 * time.Second, Day: DefaultAbsence.Day, NoActivity: 4 * time.Hour}}
	})
	ctx := context.Background()

	// 1. SpO2 85 % for 31 s, then 95 % for 61 s (device time), as one batch
	// stamped up to now: spo2_low opens and is resolved by the system;
	// NEWS2 (SpO2 3 points) is urgent on one 60 s median only, less than its
	// 2 min sustain: it does not open.
	batch := func(dev string, boot uint32, vals []float64) {
		end := time.Now()
		tel := device.Telemetry{V: 1, Device: dev, Boot: boot, ID: 1}
		for i, v := range vals {
			tel.Readings = append(tel.Readings, device.Reading{Seq: uint64(i + 1),
				TS: end.Add(-time.Duration(len(vals)-1-i) * time.Second).UnixMilli(), Values: map[string]float64{"spo2_pct": v}})
		}
		e.publish(dev, device.ChanTelemetry, tel)
	}
	var vals []float64
	for i := 0; i <= 30; i++ {
		vals = append(vals, 85)
	}
	for i := 0; i <= 60; i++ {
		vals = append(vals, 95)
	}
	batch("vm-9", 1, vals)
	testenv.EventuallyTrue(t, 10*time.Second, "spo2_low opened and auto-resolved", func() bool {
		_, ok := alertWith(t, r.m, TypeSpO2Low, func(a Alert) bool {
			return a.Status == StatusResolved && a.ResolvedBy == ActorSystem && a.Outcome == OutcomeOther &&
				a.Note == "cleared: value back in range for 60 s"
		})
		return ok
	})
	// A status published after the batch is handled after it (one session,
	// one normal lane, in order).
	e.publish("probe-9", device.ChanStatus, device.Status{V: 1, Device: "probe-9", TS: time.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonShutdown})
	testenv.EventuallyTrue(t, 10*time.Second, "batch handled", func() bool { return r.svc.knows("probe-9") })
	if a := openAlerts(t, r.m, TypeNEWS2); len(a) != 0 {
		t.Errorf("news2 opened on one urgent median: %+v", a)
	}

	// 2. A resident's own threshold (COPD: SpO2 < 80 %) applies live: 85 %
	// for 40 s opens nothing for res-8's device; the default would.
	copd := SpO2Low
	copd.Low, copd.ClearLow = 80, 82
	if err := r.m.SetResidentThreshold(ctx, "nurse-ana", "res-8", copd); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 5*time.Second, "threshold reloaded", func() bool {
		r.svc.rules.thMu.RLock()
		defer r.svc.rules.thMu.RUnlock()
		return len(r.svc.rules.own["res-8"]) == 1
	})
	vals = nil
	for i := 0; i <= 40; i++ {
		vals = append(vals, 85)
	}
	batch("vm-8", 1, vals)
	vals = nil
	for i := 0; i <= 40; i++ {
		vals = append(vals, 78)
	}
	batch("vm-8", 2, vals)
	testenv.EventuallyTrue(t, 10*time.Second, "spo2_low for res-8 at 78 %", func() bool {
		_, ok := alertWith(t, r.m, TypeSpO2Low, func(a Alert) bool { return *a.Resident == "res-8" && *a.Value == 78 })
		return ok
	})
	if _, ok := alertWith(t, r.m, TypeSpO2Low, func(a Alert) bool { return *a.Resident == "res-8" && *a.Value == 85 }); ok {
		t.Error("85 % raised spo2_low for a resident whose own threshold is 80 %")
	}

	// 3. Low battery on the fall detector: 15 % raises, 25 % keeps, 35 % clears.
	for i, pct := range []float64{15, 25, 35} {
		e.publish("fd-9", device.ChanTelemetry, device.Telemetry{V: 1, Device: "fd-9", Boot: 1, ID: uint64(i + 1), Seq: uint64(i + 1),
			TS: time.Now().UnixMilli(), Values: map[string]float64{"battery_pct": pct}})
		if i == 0 {
			testenv.EventuallyTrue(t, 5*time.Second, "low_battery opened", func() bool { return len(openAlerts(t, r.m, TypeLowBattery)) == 1 })
		}
	}
	testenv.EventuallyTrue(t, 5*time.Second, "low_battery cleared at 35 %", func() bool {
		_, ok := alertWith(t, r.m, TypeLowBattery, func(a Alert) bool {
			return a.Status == StatusResolved && a.Note == "cleared: battery 35 %" && a.Device == "fd-9"
		})
		return ok
	})

	// 4. The fall detector's connection is lost: device_offline and
	// unprotected for res-9; back online: unprotected resolves.
	e.publish("fd-9", device.ChanStatus, device.Status{V: 1, Device: "fd-9", TS: time.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonLastWill})
	testenv.EventuallyTrue(t, 5*time.Second, "unprotected opened", func() bool {
		_, ok := alertWith(t, r.m, TypeUnprotected, func(a Alert) bool {
			return a.Open() && *a.Resident == "res-9" && a.Severity == SeverityHigh && a.Detail == "safety devices offline: fall_detector fd-9"
		})
		return ok
	})
	e.publish("fd-9", device.ChanStatus, device.Status{V: 1, Device: "fd-9", TS: time.Now().UnixMilli(), State: device.Online, Reason: device.ReasonBoot})
	testenv.EventuallyTrue(t, 5*time.Second, "unprotected resolved", func() bool {
		_, ok := alertWith(t, r.m, TypeUnprotected, func(a Alert) bool { return a.Status == StatusResolved })
		return ok
	})

	// 5. Bed exit at night: bed_exit at once; not back within 2 s:
	// out_of_bed_night; back in bed: it resolves.
	e.publish("bed-9", device.ChanEvent, device.Event{V: 1, Device: "bed-9", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventBedExit})
	testenv.EventuallyTrue(t, 5*time.Second, "bed_exit opened", func() bool { return len(openAlerts(t, r.m, TypeBedExit)) == 1 })
	clk.Add(2 * time.Second) // the absence timer's 2 s pass at once
	testenv.EventuallyTrue(t, 10*time.Second, "out_of_bed_night opened", func() bool { return len(openAlerts(t, r.m, TypeOutOfBedNight)) == 1 })
	e.publish("bed-9", device.ChanEvent, device.Event{V: 1, Device: "bed-9", Boot: 1, ID: 2, Seq: 2, TS: time.Now().UnixMilli(), Type: device.EventBedEntry})
	testenv.EventuallyTrue(t, 5*time.Second, "out_of_bed_night resolved", func() bool {
		_, ok := alertWith(t, r.m, TypeOutOfBedNight, func(a Alert) bool {
			return a.Status == StatusResolved && strings.HasPrefix(a.Note, "cleared: back in bed at ")
		})
		return ok
	})
	if n := len(alertsOf(t, r.m, "bed-9", TypeBedExit)); n != 1 {
		t.Errorf("%d bed_exit alerts, want 1", n)
	}
}

// A registry snapshot is a Directory: cmd wires Rules.Directory to the
// registry cache's Current.
var _ Directory = (*registry.Snapshot)(nil)

// TestMealCardOfAnotherSite: a meal event on site demo's topic with the card
// of a resident of another site is refused: counted in
// eldercare_alerting_rejected_total{channel="event",reason="card_other_site"},
// the meal is not recorded for that resident (so their meal_missed can
// neither be suppressed nor cleared from another site), nothing is opened.
// The same terminal's meal with a card of its own site is recorded.
func TestMealCardOfAnotherSite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := testDirectory{loc: time.UTC, kinds: map[string]string{"meal-1": "meal_terminal"},
		cards:     map[string]string{"card-own": "res-own", "card-far": "res-far"},
		cardSites: map[string]string{"card-far": "other"}}
	r := e.start(func(c *Config) { c.Rules = RuleConfig{Directory: func() Directory { return dir }} })
	meal := func(seq uint64, card string) {
		e.publish("meal-1", device.ChanEvent, device.Event{V: 1, Device: "meal-1", Boot: 1, ID: seq, Seq: seq, TS: time.Now().UnixMilli(),
			Type: device.EventMeal, Attrs: map[string]any{"card": card, "meal": "lunch", "eaten_pct": 80.0}})
	}
	meal(1, "card-far")
	meal(2, "card-far")
	meal(3, "card-own")
	recorded := func(resident string) bool {
		r.svc.rules.mu.Lock()
		defer r.svc.rules.mu.Unlock()
		ra := r.svc.rules.absence.residents[resident]
		return ra != nil && ra.meals["lunch"] != ""
	}
	testenv.EventuallyTrue(t, 10*time.Second, "own-site meal recorded", func() bool { return recorded("res-own") })
	if recorded("res-far") {
		t.Error("a meal was recorded for another site's resident")
	}
	if n := counterValue(t, r.reg, "eldercare_alerting_rejected_total", map[string]string{"channel": "event", "reason": ReasonCardOtherSite}); n != 2 {
		t.Errorf("rejected{event,card_other_site} = %v, want 2", n)
	}
	if got := allAlerts(t, r.m); len(got) != 0 {
		t.Errorf("alerts opened: %+v", got)
	}
}

// counterValue returns the value of the counter series of name with labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
