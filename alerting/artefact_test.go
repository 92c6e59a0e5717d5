package alerting

import (
	"context"
	"fmt"

	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func TestArtefactRules(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	type step struct {
		from, to int // seconds, inclusive, 1 Hz
		values   map[string]float64
	}
	normal := map[string]float64{"hr_bpm": 70, "spo2_pct": 97, "resp_per_min": 16}
	rrOff := map[string]float64{"hr_bpm": 70, "spo2_pct": 97, "resp_per_min": 0}
	apnoea := map[string]float64{"hr_bpm": 70, "spo2_pct": 88, "resp_per_min": 0}
	probe := map[string]float64{"hr_bpm": 70, "spo2_pct": 70, "resp_per_min": 16}
	tests := []struct {
		name    string
		steps   []step
		dropped map[string]int // field -> samples kept out
		flag    []int
		unflag  []int // resolve sensor_suspect if open
	}{
		{"plausible readings pass (a calm run reports a clear once, for an alert left open by a restart)", []step{{0, 100, normal}}, nil, nil, []int{30}},
		{"RR 0 beside SpO2 97 % and a steady HR is kept out and flagged after 15 s, cleared after 30 s of RR again",
			[]step{{0, 30, normal}, {31, 90, rrOff}, {91, 200, normal}}, map[string]int{"resp_per_min": 60 + 30}, []int{46}, []int{30, 121}},
		{"a 5 s lead-off is kept out, not flagged", []step{{0, 30, normal}, {31, 35, rrOff}, {36, 100, normal}},
			map[string]int{"resp_per_min": 5 + 30}, nil, []int{30, 96}},
		{"RR 0 with SpO2 88 % may be apnoea: passed on", []step{{0, 30, normal}, {31, 40, map[string]float64{"hr_bpm": 70, "spo2_pct": 92, "resp_per_min": 16}}, {41, 100, apnoea}}, nil, nil, []int{30}},
		{"RR 0 without a heart rate is not judged", []step{{0, 60, map[string]float64{"spo2_pct": 97, "resp_per_min": 0}}}, nil, nil, []int{30}},
		{"SpO2 97 to 70 % in one second is the probe; 70 % steady for 30 s is trusted, not flagged",
			[]step{{0, 30, normal}, {31, 100, probe}}, map[string]int{"spo2_pct": 31}, nil, []int{30, 92}},
		{"a probe on and off every 5 s is flagged, cleared after 30 s steady",
			[]step{{0, 30, normal}, {31, 35, probe}, {36, 40, normal}, {41, 45, probe}, {46, 50, normal}, {51, 55, probe}, {56, 120, normal}},
			map[string]int{"spo2_pct": 56}, []int{46}, []int{30, 87}},
		{"a slow fall of SpO2 passes", []step{{0, 30, normal}, {31, 40, map[string]float64{"hr_bpm": 70, "spo2_pct": 90, "resp_per_min": 16}},
			{41, 60, map[string]float64{"hr_bpm": 70, "spo2_pct": 82, "resp_per_min": 16}}}, nil, nil, []int{30}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newArtefacts(DefaultArtefacts)
			dropped := map[string]int{}
			var flag, unflag []int
			for _, st := range tc.steps {
				for s := st.from; s <= st.to; s++ {
					res := a.check(t0.Add(time.Duration(s)*time.Second), st.values)
					for f := range st.values {
						if _, ok := res.Values[f]; !ok {
							dropped[f]++
						}
					}
					if res.Flag {
						flag = append(flag, s)
						if !strings.HasPrefix(res.Detail, "check sensor: ") {
							t.Errorf("detail %q", res.Detail)
						}
					}
					if res.Unflag {
						unflag = append(unflag, s)
					}
				}
			}
			if tc.dropped == nil {
				tc.dropped = map[string]int{}
			}
			if fmt.Sprint(dropped) != fmt.Sprint(tc.dropped) || fmt.Sprint(flag) != fmt.Sprint(tc.flag) || fmt.Sprint(unflag) != fmt.Sprint(tc.unflag) {
				t.Errorf("kept out %v, flagged at %v, cleared at %v; want %v %v %v", dropped, flag, unflag, tc.dropped, tc.flag, tc.unflag)
			}
		})
	}
}

// TestArtefactsOnBIDMC runs every BIDMC recording through the
// suspected-sensor-fault checks, the vitals thresholds and NEWS2 as the
// service chains them. Only bidmc_13 (RESP 0 for minutes while SpO2 stays
// 100 % and HR 66-67) is flagged; it then opens neither NEWS2 nor a
// respiration alert. The other recordings' firings are unchanged by the
// checks (compared with the rules run on the raw readings).
func TestArtefactsOnBIDMC(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(testenv.RealData(t), "vitals-bidmc", "bidmc_*_Numerics.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no BIDMC recordings: %v", err)
	}
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	run := func(rows []map[string]float64, filter bool) (flagged bool, fired []string) {
		a := newArtefacts(DefaultArtefacts)
		v := newVitals(DefaultThresholds, DefaultMaxGap)
		n := newNEWS2Tracker(DefaultNEWS2)
		for i, vals := range rows {
			at := t0.Add(time.Duration(i) * time.Second)
			res := artefactResult{Values: vals}
			if filter {
				res = a.check(at, vals)
				v.forget(res.Began)
				n.forget(res.Began)
				flagged = flagged || res.Flag
			}
			for _, f := range v.observe(1, uint64(i+1), at, res.Values) {
				if !slices.Contains(fired, f.Threshold.Type) {
					fired = append(fired, f.Threshold.Type)
				}
			}
			if r := n.observe(at, res.Values); r.Fired && !slices.Contains(fired, TypeNEWS2) {
				fired = append(fired, TypeNEWS2)
			}
		}
		return flagged, fired
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), "_Numerics.csv")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rows := bidmc(t, name)
			flagged, fired := run(rows, true)
			_, raw := run(rows, false)
			t.Logf("%s: flagged %v, fired %v (without the checks %v)", name, flagged, fired, raw)
			if flagged != (name == "bidmc_13") {
				t.Errorf("%s: flagged %v", name, flagged)
			}
			if name == "bidmc_13" {
				if len(fired) != 0 {
					t.Errorf("bidmc_13 fired %v on a respiration lead-off", fired)
				}
				return
			}
			if fmt.Sprint(fired) != fmt.Sprint(raw) {
				t.Errorf("%s: fired %v with the checks, %v without", name, fired, raw)
			}
		})
	}
}

// TestNEWS2Sustain: a score urgent for less than the sustain (a band-edge
// dip) opens nothing; a score urgent for the sustain fires once.
func TestNEWS2Sustain(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	edge := map[string]float64{"resp_per_min": 25, "spo2_pct": 91, "hr_bpm": 80}
	good := map[string]float64{"resp_per_min": 16, "spo2_pct": 97, "hr_bpm": 80}
	for _, tc := range []struct {
		name    string
		urgentS int
		fired   []int
	}{{"a 90 s dip at the band edge", 90, nil}, {"10 min urgent", 600, []int{131 + 120}}} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNEWS2Tracker(DefaultNEWS2)
			var fired []int
			for s := 0; s <= 100+tc.urgentS+600; s++ {
				vals := good
				if s > 100 && s <= 100+tc.urgentS {
					vals = edge
				}
				if n.observe(t0.Add(time.Duration(s)*time.Second), vals).Fired {
					fired = append(fired, s)
				}
			}
			if fmt.Sprint(fired) != fmt.Sprint(tc.fired) {
				t.Errorf("fired at %v, want %v", fired, tc.fired)
			}
		})
	}
}

// TestBIDMC13CheckSensor replays bidmc_13 (a respiration lead-off: RESP 0
// while SpO2 stays 100 %) through a real broker to the service: no NEWS2 or
// respiration alert; one sensor_suspect ("check sensor") alert; the kept-out
// samples are counted.
func TestBIDMC13CheckSensor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["vm-13"] = "res-013"
	r := e.start(nil)
	e.replay("vm-13", bidmc(t, "bidmc_13"), 1)
	e.readingsHandled(r, "probe-13")
	for _, typ := range []string{TypeNEWS2, TypeRespiration, TypeSpO2Low, TypeHeartRate} {
		if a := openAlerts(t, r.m, typ); len(a) != 0 {
			t.Errorf("%s alerts on a lead-off: %+v", typ, a)
		}
	}
	sus := openAlerts(t, r.m, TypeSensorSuspect)
	if len(sus) != 1 {
		t.Fatalf("%d sensor_suspect alerts, want 1: %+v", len(sus), openAlerts(t, r.m, ""))
	}
	a := sus[0]
	if a.Severity != SeverityWarning || a.Resident == nil || *a.Resident != "res-013" || !strings.HasPrefix(a.Detail, "check sensor: respiration 0 /min while SpO2 is 100 %") {
		t.Errorf("alert %+v", a)
	}
	t.Logf("detail: %s", a.Detail)
	if n := counterSum(r.reg, "eldercare_alerting_suspect_readings_total"); n < 200 {
		t.Errorf("%g suspect samples counted, want the lead-off's (about 220 RESP 0 beside SpO2 100 %%)", n)
	}

	// Restarted with the alert open, the lead re-attached (plausible
	// readings, bidmc_01's first minute): the alert clears itself.
	r.stop()
	r2 := e.start(nil)
	e.replay("vm-13", bidmc(t, "bidmc_01")[:45], 2)
	testenv.EventuallyTrue(t, 20*time.Second, "sensor_suspect resolved", func() bool { return len(openAlerts(t, r2.m, TypeSensorSuspect)) == 0 })
	got, err := r2.m.Get(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Note != "cleared: plausible readings again" || got.ResolvedBy != ActorSystem {
		t.Errorf("resolved %+v", got)
	}
}

// TestBIDMC32OneCauseOnePage replays bidmc_32 (SpO2 about 85 % throughout,
// RR about 25): spo2_low opens and pages; NEWS2, urgent too, is added to it
// as a finding: one alert, one opened notification, both findings.
func TestBIDMC32OneCauseOnePage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["vm-32"] = "res-032"
	r := e.start(nil)
	e.replay("vm-32", bidmc(t, "bidmc_32"), 1)
	e.readingsHandled(r, "probe-32")
	testenv.EventuallyTrue(t, 20*time.Second, "news2 finding on the spo2_low alert", func() bool {
		a := openAlerts(t, r.m, TypeSpO2Low)
		return len(a) == 1 && strings.Contains(a[0].Detail, "; also news2: NEWS2 ")
	})
	e.fall("fd-marker", 1)
	testenv.EventuallyTrue(t, 20*time.Second, "marker fall paged", func() bool { return len(e.hook.changes(TypeFall, EventOpened)) == 1 })
	all := openAlerts(t, r.m, "")
	var vitalsOpen []Alert
	for _, a := range all {
		if a.Type != TypeFall {
			vitalsOpen = append(vitalsOpen, a)
		}
	}
	if len(vitalsOpen) != 1 || vitalsOpen[0].Type != TypeSpO2Low {
		t.Fatalf("open vitals alerts %+v, want the one spo2_low", vitalsOpen)
	}
	a := vitalsOpen[0]
	t.Logf("detail: %s", a.Detail)
	if !strings.HasPrefix(a.Detail, "SpO2 8") || strings.Count(a.Detail, "also news2") != 1 {
		t.Errorf("detail %q, want the SpO2 finding and the NEWS2 one once", a.Detail)
	}
	var pages int
	for _, typ := range InhibitGroup {
		pages += len(e.hook.changes(typ, EventOpened)) + len(e.hook.changes(typ, EventRepeated))
	}
	if pages != 1 {
		t.Errorf("%d vitals notifications, want 1", pages)
	}
	h, err := r.m.History(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var comments int
	for _, x := range h {
		if x.Action == ActionComment && strings.HasPrefix(x.Detail, "news2 also fired") {
			comments++
		}
	}
	if comments != 1 {
		t.Errorf("%d news2 finding comments, want 1: %+v", comments, h)
	}
	if n := counterSum(r.reg, "eldercare_alerting_inhibited_total"); n != 1 {
		t.Errorf("inhibited %g, want 1", n)
	}
	e.hook.check(t)
}

// TestNEWS2OwnAlert: a NEWS2 urgent on parameters that breach no threshold
// (RR 24: 2, HR 115: 2, SpO2 94 %: 1, aggregate 5) opens its own news2
// alert after the sustain and pages once.
func TestNEWS2OwnAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["vm-5"] = "res-005"
	r := e.start(nil)
	end := time.Now()
	tel := device.Telemetry{V: 1, Device: "vm-5", Boot: 1, ID: 1}
	const n = 240
	for i := range n {
		tel.Readings = append(tel.Readings, device.Reading{Seq: uint64(i + 1), TS: end.Add(-time.Duration(n-1-i) * time.Second).UnixMilli(),
			Values: map[string]float64{"resp_per_min": 24, "hr_bpm": 115, "spo2_pct": 94}})
	}
	e.publish("vm-5", device.ChanTelemetry, tel)
	testenv.EventuallyTrue(t, 15*time.Second, "news2 paged", func() bool { return len(e.hook.changes(TypeNEWS2, EventOpened)) == 1 })
	all := openAlerts(t, r.m, "")
	if len(all) != 1 || all[0].Type != TypeNEWS2 || all[0].Value == nil || *all[0].Value != 5 || *all[0].Resident != "res-005" {
		t.Errorf("open alerts %+v, want one news2 of 5", all)
	}
}
