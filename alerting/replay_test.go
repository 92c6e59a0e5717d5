package alerting

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestReplayKasteren: the Kasteren month read by ParseKasteren and run
// through ReplayAbsence gives the alerts TestNoActivityKasteren expects
// (23 no_activity alerts on 23 days, each cleared by the resident's
// return), in well under a second.
func TestReplayKasteren(t *testing.T) {
	t.Parallel()
	loc := absZone(t, "Europe/Amsterdam")
	f, err := os.Open(filepath.Join(testenv.RealData(t), "activity-kasteren", "kasterenSenseData.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := ParseKasteren(f, loc)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eps := ReplayAbsence(recs, DefaultAbsence, loc, 0)
	took := time.Since(start)
	t.Logf("%d records, %s to %s, replayed in %s", len(recs), recs[0].At, recs[len(recs)-1].At, took)
	days := map[string]bool{}
	for _, e := range eps {
		if e.Type != TypeNoActivity || e.Severity != SeverityWarning {
			t.Errorf("episode %+v", e)
		}
		if e.Cleared == nil || !e.Cleared.After(e.Opened) || !strings.HasPrefix(e.ClearedBy, "cleared: activity again (") {
			t.Errorf("episode not cleared by activity: %+v", e)
		}
		if h := e.Opened.In(loc).Hour(); h < 8 || h >= 20 {
			t.Errorf("opened outside the day window: %s", e.Opened.In(loc))
		}
		days[e.Opened.In(loc).Format(time.DateOnly)] = true
	}
	if len(eps) != kasterenWantAlerts || len(days) != kasterenWantDays {
		t.Errorf("%d alerts on %d days, want %d on %d", len(eps), len(days), kasterenWantAlerts, kasterenWantDays)
	}
	if took > 10*time.Second {
		t.Errorf("a month took %s to replay", took)
	}
}

func TestParseActivityCSV(t *testing.T) {
	t.Parallel()
	loc := absZone(t, "Asia/Shanghai")
	kinds := map[string]string{"front": "contact_sensor", "hall": "motion_sensor", "pad": "bed_sensor"}
	in := "time,sensor,value\n2026-03-02 08:00:00,front,1\n2026-03-02 08:00:05,front,0\n2026-03-02 08:01:00,hall,on\n2026-03-02 08:02:00,hall,clear\n2026-03-02T09:00:00+08:00,pad,1\n"
	recs, err := ParseActivityCSV(strings.NewReader(in), loc, kinds)
	if err != nil {
		t.Fatal(err)
	}
	// The door's close is activity; the motion sensor's clear is not.
	if len(recs) != 4 || recs[1].Sensor != "front" || recs[2].Sensor != "hall" || !recs[0].At.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("records %+v", recs)
	}
	for _, tc := range []struct{ in, want string }{
		{"2026-03-02 08:00:00,kitchen,1\n", `line 1: sensor "kitchen" has no kind in the mapping`},
		{"yesterday,front,1\n", `line 1: time "yesterday"`},
		{"2026-03-02 08:00:00,front,maybe\n", `line 1: value "maybe"`},
		{"2026-03-02 08:00:00,front\n", "line 1: want time,sensor,value"},
	} {
		if _, err := ParseActivityCSV(strings.NewReader(tc.in), loc, kinds); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseActivityCSV(strings.NewReader(in), loc, map[string]string{"front": "doorbell"}); err == nil || !strings.Contains(err.Error(), `unknown kind "doorbell"`) {
		t.Errorf("unknown kind: %v", err)
	}
	// A vitals monitor's reports are not activity in the replay.
	eps := ReplayAbsence([]ActivityRecord{{At: time.Date(2026, 3, 2, 8, 0, 0, 0, loc), Sensor: "front", Kind: "contact_sensor"},
		{At: time.Date(2026, 3, 2, 10, 0, 0, 0, loc), Sensor: "vm", Kind: "vitals_monitor"},
		{At: time.Date(2026, 3, 2, 13, 0, 0, 0, loc), Sensor: "front", Kind: "contact_sensor"}}, DefaultAbsence, loc, 0)
	if len(eps) != 1 || !eps[0].Opened.Equal(time.Date(2026, 3, 2, 12, 0, 0, 0, loc)) || eps[0].Cleared == nil ||
		!eps[0].Cleared.Equal(time.Date(2026, 3, 2, 13, 0, 0, 0, loc)) {
		t.Errorf("episodes %+v", eps)
	}
}

// TestIsActivity: what counts as the resident's activity, by kind.
func TestIsActivity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind   string
		values map[string]float64
		event  string
		want   bool
	}{
		{"contact_sensor", map[string]float64{"open": 1}, "", true},
		{"contact_sensor", map[string]float64{"open": 0}, "", true}, // closed by someone
		{"contact_sensor", map[string]float64{"battery_pct": 80}, "", false},
		{"contact_sensor", nil, "contact_open", true},
		{"contact_sensor", nil, "low_battery", false},
		{"motion_sensor", map[string]float64{"motion": 1}, "", true},
		{"motion_sensor", map[string]float64{"motion": 0}, "", false},
		{"motion_sensor", nil, "motion", true},
		{"smoke_alarm", map[string]float64{"smoke": 0}, "", false},
		{"smoke_alarm", nil, "alarm_test", false},
		{"vitals_monitor", map[string]float64{"hr_bpm": 70}, "", false},
		{"gateway", nil, "card_tap", false},
		{"bed_sensor", map[string]float64{"in_bed": 1}, "", true},
		{"", map[string]float64{"hr_bpm": 70}, "", false},
		{"", map[string]float64{"lux": 30}, "", true},
	} {
		var got bool
		if tc.event != "" {
			got = isActivityEvent(tc.kind, device.EventType(tc.event))
		} else {
			got = isActivity(tc.kind, tc.values)
		}
		if got != tc.want {
			t.Errorf("%s %v %s: activity %v, want %v", tc.kind, tc.values, tc.event, got, tc.want)
		}
	}
}
