package alerting

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// testClock is an injected wall clock (Config.Now) the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// kitDirectory is a registry view with devices (limits) and residents
// (safe zones) by id.
type kitDirectory struct {
	testDirectory
	devices   map[string]registry.Device
	residents map[string]registry.Resident
}

func (d kitDirectory) Device(id string) (registry.Device, bool) {
	x, ok := d.devices[id]
	return x, ok
}
func (d kitDirectory) Resident(id string) (registry.Resident, bool) {
	x, ok := d.residents[id]
	return x, ok
}

func kitZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("zone %s: %v", name, err)
	}
	return loc
}

func ptr(v float64) *float64 { return &v }

// TestColdStoreSustain: a fridge's appliance_temp_c above its max 8 °C
// raises limit_appliance_temp_c (unassigned: a site alert) once the breach
// lasted the 30 min sustain window in device time, across midnight UTC and
// the end of British Summer Time (2026-10-25 01:00 UTC, Europe/London);
// further readings above do not raise again, a reading back within
// resolves it, and a 20 min breach raises nothing.
func TestColdStoreSustain(t *testing.T) {
	t.Parallel()
	london := kitZone(t, "Europe/London")
	clk := &testClock{}
	start := time.Date(2026, 10, 24, 23, 40, 0, 0, time.UTC) // 00:40 BST
	clk.Set(start)
	e := newEnv(t)
	dir := kitDirectory{testDirectory: testDirectory{loc: london}, devices: map[string]registry.Device{
		"fridge-1": {ID: "fridge-1", SiteID: "demo", Kind: string(device.EnvSensor),
			Limits: []registry.Limit{{Field: "appliance_temp_c", Max: ptr(8), Sustain: 30 * time.Minute}}},
		"co2-1": {ID: "co2-1", SiteID: "demo", Kind: string(device.EnvSensor),
			Limits: []registry.Limit{{Field: "co2_ppm", Max: ptr(1500), Sustain: 0}}},
	}}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return dir }
	})
	var seq uint64
	send := func(dev string, at time.Time, vals map[string]float64) {
		clk.Set(at.Add(time.Second))
		seq++
		e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(), Values: vals})
	}
	temps := []float64{5, 9, 9.5, 10, 9, 11, 12, 9} // every 10 min from 23:40 UTC; above from 23:50
	for i, v := range temps {
		send("fridge-1", start.Add(time.Duration(i)*10*time.Minute), map[string]float64{"appliance_temp_c": v})
	}
	var a Alert
	testenv.EventuallyTrue(t, 10*time.Second, "cold-store alert", func() bool {
		x := openAlerts(t, r.m, LimitAlertType("appliance_temp_c"))
		if len(x) == 1 {
			a = x[0]
		}
		return len(x) == 1
	})
	// Above since 23:50 UTC; the 00:20 reading (9 °C) completes 30 min.
	if a.Resident != nil || a.Device != "fridge-1" || !strings.Contains(a.Detail, "appliance_temp_c 9 °C outside its limit (max 8, sustain 30m0s) for 30m0s (device time)") {
		t.Errorf("alert = %+v", a)
	}
	// Back within: resolved. Then 20 min above: nothing; co2 at once.
	at := start.Add(time.Duration(len(temps)) * 10 * time.Minute)
	send("fridge-1", at, map[string]float64{"appliance_temp_c": 4})
	send("fridge-1", at.Add(10*time.Minute), map[string]float64{"appliance_temp_c": 9})
	send("fridge-1", at.Add(20*time.Minute), map[string]float64{"appliance_temp_c": 9})
	send("fridge-1", at.Add(29*time.Minute), map[string]float64{"appliance_temp_c": 9})
	send("co2-1", at.Add(30*time.Minute), map[string]float64{"co2_ppm": 2100})
	testenv.EventuallyTrue(t, 10*time.Second, "co2 alert (every fridge reading before it handled)", func() bool {
		return len(openAlerts(t, r.m, LimitAlertType("co2_ppm"))) == 1
	})
	if n := len(alertsOf(t, r.m, "fridge-1", LimitAlertType("appliance_temp_c"))); n != 1 {
		t.Errorf("%d cold-store alerts, want 1", n)
	}
	if n := len(openAlerts(t, r.m, LimitAlertType("appliance_temp_c"))); n != 0 {
		t.Errorf("cold-store alert still open after the reading back within the limit")
	}
}

// TestDoseMissedAcrossMidnightAndDST: in America/New_York on the night
// the clocks go back (2026-11-01 02:00 EDT -> 01:00 EST), the 23:30 dose
// (tolerance 1 h) is missed at 00:30 and raised once; a late dose_taken
// through the broker resolves it; the 01:30 dose (tolerance 30 min; 01:30
// happens twice that night) is raised once; the 03:00 dose taken at 03:05
// raises nothing. The clock ticks every 5 min.
func TestDoseMissedAcrossMidnightAndDST(t *testing.T) {
	t.Parallel()
	ny := kitZone(t, "America/New_York")
	clk := &testClock{}
	clk.Set(time.Date(2026, 10, 31, 22, 0, 0, 0, ny))
	e := newEnv(t)
	e.binding["pill-1"] = "ann"
	ann := registry.Resident{ID: "ann", SiteID: "demo", Medication: []registry.Dose{
		{Time: "23:30", Tolerance: time.Hour, Medication: "amlodipine 5 mg"},
		{Time: "01:30", Tolerance: 30 * time.Minute},
		{Time: "03:00", Tolerance: 30 * time.Minute},
	}}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return testDirectory{loc: ny} }
		c.Programme = ProgrammeConfig{Every: time.Hour,
			Residents: func(context.Context) ([]registry.Resident, error) { return []registry.Resident{ann}, nil }}
	})
	ctx := context.Background()
	var seq uint64
	take := func(slot string, at time.Time) {
		seq++
		e.publish("pill-1", device.ChanEvent, device.Event{V: 1, Device: "pill-1", Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(),
			Type: device.EventDoseTaken, Attrs: map[string]any{"slot": slot}})
	}
	now := clk.Now()
	tick := func(until time.Time) {
		for ; !now.After(until); now = now.Add(5 * time.Minute) {
			clk.Set(now)
			if err := r.svc.tickProgramme(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	tick(time.Date(2026, 11, 1, 0, 40, 0, 0, ny))
	missed := openAlerts(t, r.m, TypeDoseMissed)
	if len(missed) != 1 || !strings.Contains(missed[0].Detail, "the 23:30 dose (amlodipine 5 mg) of 2026-10-31") ||
		missed[0].Resident == nil || *missed[0].Resident != "ann" {
		t.Fatalf("after 00:40: %+v", missed)
	}
	take("23:30", now)
	testenv.EventuallyTrue(t, 10*time.Second, "late dose resolves the alert", func() bool { return len(openAlerts(t, r.m, TypeDoseMissed)) == 0 })
	// Through both 01:30s and 03:00 (taken at 03:05 EST, before its deadline).
	tick(time.Date(2026, 11, 1, 3, 0, 0, 0, ny))
	clk.Set(time.Date(2026, 11, 1, 3, 5, 0, 0, ny))
	take("03:00", clk.Now())
	testenv.EventuallyTrue(t, 10*time.Second, "03:00 dose recorded", func() bool {
		r.svc.cmds.mu.Lock()
		defer r.svc.cmds.mu.Unlock()
		_, ok := r.svc.cmds.doses.taken["ann|03:00|2026-11-01"]
		return ok
	})
	tick(time.Date(2026, 11, 1, 6, 0, 0, 0, ny))
	var details []string
	for _, a := range allAlerts(t, r.m) {
		if a.Type == TypeDoseMissed {
			details = append(details, a.Detail)
		}
	}
	if len(details) != 2 || !strings.Contains(details[0]+details[1], "the 01:30 dose of 2026-11-01") {
		t.Fatalf("dose_missed alerts = %q, want the 23:30 and the 01:30 once each", details)
	}
	if a := openAlerts(t, r.m, TypeDoseMissed); len(a) != 1 {
		t.Fatalf("open = %+v", a)
	} else if h := historyText(t, r.m, a[0].ID); strings.Contains(h, "repeated") {
		t.Errorf("the 01:30 dose raised twice (DST):\n%s", h)
	}
}

// TestWanderingPolygonTimeOfDay: a wristband's positions against a
// polygon "day-park" zone (08:00-18:00 Asia/Shanghai) and a 150 m circle
// "home": inside the park by day is safe; the same point at 19:00 is
// outside every zone that applies and raises wandering once with the last
// positions; back home resolves it; an SOS then carries the last position.
func TestWanderingPolygonTimeOfDay(t *testing.T) {
	t.Parallel()
	sh := kitZone(t, "Asia/Shanghai")
	clk := &testClock{}
	day := time.Date(2026, 12, 6, 17, 50, 0, 0, sh)
	clk.Set(day)
	e := newEnv(t)
	e.binding["band-1"] = "li"
	li := registry.Resident{ID: "li", SiteID: "demo", SafeZones: []registry.SafeZone{
		{Name: "home", Center: &registry.Point{Lat: 31.2304, Lon: 121.4737}, RadiusM: 150},
		{Name: "day-park", Polygon: []registry.Point{{Lat: 31.230, Lon: 121.470}, {Lat: 31.232, Lon: 121.470}, {Lat: 31.232, Lon: 121.472}, {Lat: 31.230, Lon: 121.472}},
			From: "08:00", To: "18:00"},
	}}
	dir := kitDirectory{testDirectory: testDirectory{loc: sh}, devices: map[string]registry.Device{},
		residents: map[string]registry.Resident{"li": li}}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return dir }
	})
	var seq uint64
	pos := func(at time.Time, lat, lon float64) {
		clk.Set(at.Add(time.Second))
		seq++
		e.publish("band-1", device.ChanTelemetry, device.Telemetry{V: 1, Device: "band-1", Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(),
			Values: map[string]float64{"lat_deg": lat, "lon_deg": lon, "accuracy_m": 12}})
	}
	pos(day, 31.2310, 121.4710)                     // in the park, 17:50
	pos(day.Add(5*time.Minute), 31.2311, 121.4711)  // in the park, 17:55
	pos(day.Add(70*time.Minute), 31.2312, 121.4712) // same place, 19:00: park closed
	pos(day.Add(75*time.Minute), 31.2313, 121.4713) // still out: no second alert
	var a Alert
	testenv.EventuallyTrue(t, 10*time.Second, "wandering alert", func() bool {
		x := openAlerts(t, r.m, TypeWandering)
		if len(x) == 1 {
			a = x[0]
		}
		return len(x) == 1
	})
	if a.Resident == nil || *a.Resident != "li" || !strings.Contains(a.Detail, "31.23120,121.47120 ±12m at 11:00:00Z") {
		t.Errorf("alert = %+v", a)
	}
	pos(day.Add(80*time.Minute), 31.2305, 121.4738) // home
	testenv.EventuallyTrue(t, 10*time.Second, "back home resolves", func() bool { return len(openAlerts(t, r.m, TypeWandering)) == 0 })
	if n := len(alertsOf(t, r.m, "band-1", TypeWandering)); n != 1 {
		t.Errorf("%d wandering alerts, want 1", n)
	}
	clk.Set(day.Add(81 * time.Minute))
	e.publish("band-1", device.ChanEvent, device.Event{V: 1, Device: "band-1", Boot: 1, ID: 99, Seq: 99, TS: clk.Now().UnixMilli(), Type: device.EventSOS})
	testenv.EventuallyTrue(t, 10*time.Second, "sos with position", func() bool {
		x := openAlerts(t, r.m, TypeSOS)
		return len(x) == 1 && strings.Contains(x[0].Detail, "last known position 31.23050,121.47380")
	})
}

// TestVisitOverdue: in America/New_York, ann (vulnerable, monthly) is not
// visited in October: visit_overdue opens once, after local midnight of
// 1 November (not at midnight UTC, 20:00 local), the night the clocks go
// back; bob, visited on 15 October (check_in with a resident attribute),
// and cy (not vulnerable) raise nothing; dee (14-day cadence) visited on
// 3 October by her own card reader is overdue once from 17 October. A
// check_in resolves ann's alert.
func TestVisitOverdue(t *testing.T) {
	t.Parallel()
	ny := kitZone(t, "America/New_York")
	clk := &testClock{}
	now := time.Date(2026, 10, 1, 0, 0, 0, 0, ny)
	clk.Set(now)
	e := newEnv(t)
	e.binding["reader-dee"] = "dee"
	rs := []registry.Resident{
		{ID: "ann", SiteID: "demo", Vulnerable: true}, {ID: "bob", SiteID: "demo", Vulnerable: true},
		{ID: "cy", SiteID: "demo"}, {ID: "dee", SiteID: "demo", Vulnerable: true, VisitCadenceDays: 14},
	}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return testDirectory{loc: ny} }
		c.Programme = ProgrammeConfig{Every: time.Hour, Residents: func(context.Context) ([]registry.Resident, error) { return rs, nil }}
	})
	ctx := context.Background()
	var seq uint64
	checkIn := func(dev string, at time.Time, attrs map[string]any) {
		clk.Set(at)
		seq++
		e.publish(dev, device.ChanEvent, device.Event{V: 1, Device: dev, Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(), Type: device.EventCheckIn, Attrs: attrs})
	}
	visited := func(who string, at time.Time) {
		testenv.EventuallyTrue(t, 10*time.Second, "visit to "+who+" recorded", func() bool {
			last, ok, err := r.m.LastVisit(ctx, who, at.Add(time.Hour))
			return err == nil && ok && last.Equal(at)
		})
	}
	tick := func(until time.Time, step time.Duration) {
		for ; !now.After(until); now = now.Add(step) {
			clk.Set(now)
			if err := r.svc.tickProgramme(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	overdue := func() map[string]int {
		out := map[string]int{}
		for _, a := range allAlerts(t, r.m) {
			if a.Type == TypeVisitOverdue && a.Resident != nil {
				out[*a.Resident]++
			}
		}
		return out
	}
	tick(now, time.Hour) // the first check
	d3 := time.Date(2026, 10, 3, 10, 0, 0, 0, ny)
	checkIn("reader-dee", d3, map[string]any{"method": "reader", "card": "04A1"})
	visited("dee", d3)
	b15 := time.Date(2026, 10, 15, 9, 0, 0, 0, ny)
	checkIn("app-7", b15, map[string]any{"method": "app", "resident": "bob", "staff": "nurse-1"})
	visited("bob", b15)
	tick(time.Date(2026, 10, 31, 23, 50, 0, 0, ny), 2*time.Hour)
	if got := overdue(); len(got) != 1 || got["dee"] != 1 {
		t.Fatalf("before local midnight: overdue = %v, want dee once", got)
	}
	tick(time.Date(2026, 11, 1, 4, 0, 0, 0, ny), 10*time.Minute)
	if got := overdue(); len(got) != 2 || got["ann"] != 1 || got["dee"] != 1 {
		t.Fatalf("after 1 November: overdue = %v, want ann and dee once each", got)
	}
	a := openAlerts(t, r.m, TypeVisitOverdue)
	for _, x := range a {
		if *x.Resident == "ann" && !strings.Contains(x.Detail, "not visited in October 2026") {
			t.Errorf("ann: %+v", x)
		}
	}
	checkIn("app-7", now, map[string]any{"method": "app", "resident": "ann"})
	testenv.EventuallyTrue(t, 10*time.Second, "ann's alert resolved", func() bool {
		for _, x := range openAlerts(t, r.m, TypeVisitOverdue) {
			if *x.Resident == "ann" {
				return false
			}
		}
		return true
	})
}

// TestDoorContacts: in Asia/Shanghai, li (safe zones: at risk of
// wandering) has a front-door contact: opened at 23:30 local it raises
// door_open_night; a bedroom window opened at night raises nothing; the
// door opened at 14:00 raises no night alert but, left open 11 min (the
// limit is 10), door_open_long, resolved when it closes.
func TestDoorContacts(t *testing.T) {
	t.Parallel()
	sh := kitZone(t, "Asia/Shanghai")
	clk := &testClock{}
	night := time.Date(2026, 12, 5, 23, 30, 0, 0, sh)
	clk.Set(night)
	e := newEnv(t)
	e.binding["door-1"] = "li"
	e.binding["win-1"] = "li"
	li := registry.Resident{ID: "li", SiteID: "demo", SafeZones: []registry.SafeZone{{Name: "home", Center: &registry.Point{Lat: 31.2304, Lon: 121.4737}, RadiusM: 150}}}
	dir := kitDirectory{testDirectory: testDirectory{loc: sh}, devices: map[string]registry.Device{}, residents: map[string]registry.Resident{"li": li}}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return dir }
		c.Commands = CommandConfig{Tick: 50 * time.Millisecond}
	})
	var seq uint64
	contact := func(dev string, at time.Time, typ device.EventType, where string) {
		clk.Set(at)
		seq++
		e.publish(dev, device.ChanEvent, device.Event{V: 1, Device: dev, Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(), Type: typ,
			Attrs: map[string]any{"location": where}})
	}
	contact("win-1", night, device.EventContactOpen, "bedroom_window")
	contact("door-1", night.Add(time.Minute), device.EventContactOpen, "front_door")
	testenv.EventuallyTrue(t, 10*time.Second, "door_open_night", func() bool { return len(openAlerts(t, r.m, TypeDoorOpenNight)) == 1 })
	if a := openAlerts(t, r.m, TypeDoorOpenNight)[0]; a.Device != "door-1" || !strings.Contains(a.Detail, "front_door opened at 23:31") {
		t.Errorf("night alert = %+v", a)
	}
	contact("door-1", night.Add(2*time.Minute), device.EventContactClose, "front_door")
	contact("win-1", night.Add(2*time.Minute), device.EventContactClose, "bedroom_window")
	// Both closes must be handled before the clock jumps to the afternoon,
	// or the door-timeout tick would see the door open since 23:31 (or the
	// window since 23:30: waiting for the door alone failed once under load).
	testenv.EventuallyTrue(t, 10*time.Second, "door and window closed recorded", func() bool {
		r.svc.cmds.mu.Lock()
		defer r.svc.cmds.mu.Unlock()
		d, w := r.svc.cmds.doors["door-1"], r.svc.cmds.doors["win-1"]
		return d != nil && d.openAt.IsZero() && w != nil && w.openAt.IsZero()
	})
	day := time.Date(2026, 12, 6, 14, 0, 0, 0, sh)
	contact("door-1", day, device.EventContactOpen, "front_door")
	testenv.EventuallyTrue(t, 10*time.Second, "door open recorded", func() bool {
		r.svc.cmds.mu.Lock()
		defer r.svc.cmds.mu.Unlock()
		d := r.svc.cmds.doors["door-1"]
		return d != nil && d.openAt.Equal(day)
	})
	clk.Set(day.Add(11 * time.Minute))
	testenv.EventuallyTrue(t, 10*time.Second, "door_open_long", func() bool { return len(openAlerts(t, r.m, TypeDoorOpenLong)) == 1 })
	contact("door-1", day.Add(12*time.Minute), device.EventContactClose, "front_door")
	testenv.EventuallyTrue(t, 10*time.Second, "door closed resolves", func() bool { return len(openAlerts(t, r.m, TypeDoorOpenLong)) == 0 })
	var night2 int
	for _, a := range allAlerts(t, r.m) {
		if a.Type == TypeDoorOpenNight || a.Type == TypeDoorOpenLong {
			night2++
		}
	}
	if night2 != 2 {
		t.Errorf("%d door alerts, want one night and one too-long", night2)
	}
}

// TestLateDoseKeepsOtherMissedOpen: the 08:00 and 12:00 doses are both
// missed, so the resident's one dose_missed alert covers both (opened,
// then repeated). Taking the 08:00 dose late leaves it open: the 12:00
// dose is still missing (before the fix it resolved, and the second missed
// dose was no longer shown). Taking the 12:00 dose too resolves it.
func TestLateDoseKeepsOtherMissedOpen(t *testing.T) {
	t.Parallel()
	clk := &testClock{}
	clk.Set(time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC))
	e := newEnv(t)
	e.binding["pill-1"] = "ann"
	e.binding["pill-2"] = "bob"
	ann := registry.Resident{ID: "ann", SiteID: "demo", Medication: []registry.Dose{
		{Time: "08:00", Tolerance: 30 * time.Minute},
		{Time: "12:00", Tolerance: 30 * time.Minute},
	}}
	r := e.start(func(c *Config) {
		c.Now = clk.Now
		c.Rules.Directory = func() Directory { return testDirectory{loc: time.UTC} }
		c.Programme = ProgrammeConfig{Every: time.Hour,
			Residents: func(context.Context) ([]registry.Resident, error) { return []registry.Resident{ann}, nil }}
	})
	ctx := context.Background()
	var seq uint64
	take := func(slot string, at time.Time) {
		seq++
		e.publish("pill-1", device.ChanEvent, device.Event{V: 1, Device: "pill-1", Boot: 1, ID: seq, Seq: seq, TS: at.UnixMilli(),
			Type: device.EventDoseTaken, Attrs: map[string]any{"slot": slot}})
	}
	for now := clk.Now(); !now.After(time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)); now = now.Add(5 * time.Minute) {
		clk.Set(now)
		if err := r.svc.tickProgramme(ctx); err != nil {
			t.Fatal(err)
		}
	}
	missed := openAlerts(t, r.m, TypeDoseMissed)
	if len(missed) != 1 || missed[0].Repeats != 1 {
		t.Fatalf("after 13:00: %+v, want one alert repeated once (08:00 and 12:00)", missed)
	}
	take("08:00", clk.Now())
	// A later message of the same lane: once it is handled, so is the
	// 08:00 dose, with whatever it resolved.
	seq++
	e.publish("pill-2", device.ChanEvent, device.Event{V: 1, Device: "pill-2", Boot: 1, ID: seq, Seq: seq, TS: clk.Now().UnixMilli(),
		Type: device.EventDoseTaken, Attrs: map[string]any{"slot": "12:00"}})
	testenv.EventuallyTrue(t, 10*time.Second, "the next message handled", func() bool {
		r.svc.cmds.mu.Lock()
		defer r.svc.cmds.mu.Unlock()
		_, ann := r.svc.cmds.doses.taken["ann|08:00|2026-12-07"]
		_, bob := r.svc.cmds.doses.taken["bob|12:00|2026-12-07"]
		return ann && bob
	})
	if got := openAlerts(t, r.m, TypeDoseMissed); len(got) != 1 {
		t.Fatalf("after the late 08:00 dose: open %+v, want still open for the 12:00 dose", got)
	}
	clk.Set(time.Date(2026, 12, 7, 13, 10, 0, 0, time.UTC))
	take("12:00", clk.Now())
	testenv.EventuallyTrue(t, 10*time.Second, "both taken: resolved", func() bool { return len(openAlerts(t, r.m, TypeDoseMissed)) == 0 })
}
