package alerting

import (
	"fmt"
	"testing"
)

func TestBatteryHysteresis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		feed []float64 // battery_pct readings; -1 is a low_battery event
		want string    // R raise, C clear, . nothing
	}{
		{"healthy: one clear at the first good reading (restart safety), then quiet", []float64{80, 79, 78}, "C.."},
		{"below 20 raises once", []float64{25, 19, 18, 17}, ".R.."},
		{"20 itself is not low", []float64{20, 21}, ".."},
		{"hovering 19-21 does not flap", []float64{19, 21, 19, 21, 19, 29}, "R....."},
		{"clears at 30", []float64{15, 29, 30, 31, 15}, "R.C.R"},
		{"event raises, reading >= 30 clears", []float64{-1, -1, 50}, "R.C"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b batteryState
			got := ""
			for _, v := range tc.feed {
				var r batteryResult
				if v < 0 {
					r = b.event()
				} else {
					r = b.observe(DefaultBattery, v)
				}
				switch {
				case r.Raise:
					got += "R"
				case r.Clear:
					got += "C"
				default:
					got += "."
				}
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestUnprotectedSet(t *testing.T) {
	t.Parallel()
	u := unprotected{}
	if !u.down("res-1", "fd-1", "fall_detector") || u.down("res-1", "fd-1", "fall_detector") {
		t.Fatal("down should report news once")
	}
	u.down("res-1", "sos-1", "sos_button")
	if d := u.detail("res-1"); d != "safety devices offline: fall_detector fd-1, sos_button sos-1" {
		t.Errorf("detail %q", d)
	}
	if back := u.up("fd-1"); len(back) != 0 {
		t.Errorf("res-1 protected again with sos-1 still offline: %v", back)
	}
	if back := u.up("sos-1"); fmt.Sprint(back) != "[res-1]" {
		t.Errorf("back %v, want [res-1]", back)
	}
	if back := u.up("sos-1"); len(back) != 0 {
		t.Errorf("second up %v", back)
	}
	for _, k := range []string{"fall_detector", "sos_button", "bed_sensor"} {
		if !isSafetyKind(k) {
			t.Errorf("%s is a safety kind", k)
		}
	}
	if isSafetyKind("vitals_monitor") || isSafetyKind("") {
		t.Error("vitals monitor or unknown kind counted as safety device")
	}
	if alertKey(strp("r"), "d", TypeLowBattery) != "device:d:low_battery" || alertKey(strp("r"), "d", TypeUnprotected) != "resident:r:unprotected" {
		t.Error("keys: low_battery per device, unprotected per resident")
	}
}
