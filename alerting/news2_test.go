package alerting

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestNEWS2Bands checks every band boundary of RCP 2017 chart 1 (SpO2
// scale 1), on both sides.
func TestNEWS2Bands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field string
		v     float64
		score int
	}{
		// Respiration rate: <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3.
		{"resp_per_min", 8, 3}, {"resp_per_min", 9, 1}, {"resp_per_min", 11, 1}, {"resp_per_min", 12, 0},
		{"resp_per_min", 20, 0}, {"resp_per_min", 21, 2}, {"resp_per_min", 24, 2}, {"resp_per_min", 25, 3},
		{"resp_per_min", 0, 3}, {"resp_per_min", 8.4, 3}, {"resp_per_min", 8.5, 1},
		// SpO2 scale 1: <=91 3, 92-93 2, 94-95 1, >=96 0.
		{"spo2_pct", 91, 3}, {"spo2_pct", 92, 2}, {"spo2_pct", 93, 2}, {"spo2_pct", 94, 1},
		{"spo2_pct", 95, 1}, {"spo2_pct", 96, 0}, {"spo2_pct", 100, 0}, {"spo2_pct", 91.4, 3}, {"spo2_pct", 91.5, 2},
		// Air or oxygen: oxygen 2, air 0.
		{FieldOnOxygen, 1, 2}, {FieldOnOxygen, 0, 0},
		// Systolic BP: <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3.
		{"sbp_mmhg", 90, 3}, {"sbp_mmhg", 91, 2}, {"sbp_mmhg", 100, 2}, {"sbp_mmhg", 101, 1},
		{"sbp_mmhg", 110, 1}, {"sbp_mmhg", 111, 0}, {"sbp_mmhg", 219, 0}, {"sbp_mmhg", 220, 3},
		// Pulse: <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3.
		{"hr_bpm", 40, 3}, {"hr_bpm", 41, 1}, {"hr_bpm", 50, 1}, {"hr_bpm", 51, 0}, {"hr_bpm", 90, 0},
		{"hr_bpm", 91, 1}, {"hr_bpm", 110, 1}, {"hr_bpm", 111, 2}, {"hr_bpm", 130, 2}, {"hr_bpm", 131, 3},
		{"pulse_bpm", 131, 3}, {"pulse_bpm", 51, 0},
		// Consciousness: alert 0, CVPU 3.
		{FieldACVPU, 0, 0}, {FieldACVPU, 1, 3}, {FieldACVPU, 4, 3},
		// Temperature: <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2.
		{"temp_c", 35.0, 3}, {"temp_c", 35.1, 1}, {"temp_c", 36.0, 1}, {"temp_c", 36.1, 0}, {"temp_c", 38.0, 0},
		{"temp_c", 38.1, 1}, {"temp_c", 39.0, 1}, {"temp_c", 39.1, 2}, {"temp_c", 35.04, 3}, {"temp_c", 35.05, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s=%g", tc.field, tc.v), func(t *testing.T) {
			s := ScoreNEWS2(map[string]float64{tc.field: tc.v})
			if len(s.Parts) != 1 || s.Total != tc.score || s.Parts[0].Score != tc.score {
				t.Fatalf("score %+v, want %d", s, tc.score)
			}
			if len(s.Missing) != len(news2Params)-1 {
				t.Errorf("missing %v, want the other %d parameters", s.Missing, len(news2Params)-1)
			}
		})
	}
}

func TestNEWS2AggregateAndUrgent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values map[string]float64
		total  int
		urgent bool
		text   string
	}{
		{"issue example", map[string]float64{"resp_per_min": 25, "spo2_pct": 88, "hr_bpm": 118}, 8, true,
			"NEWS2 8 (RR 25/min: 3, SpO2 88 %: 3, HR 118 bpm: 2; air/oxygen, BP, consciousness, temperature not measured)"},
		{"normal", map[string]float64{"resp_per_min": 16, "spo2_pct": 97, "hr_bpm": 72}, 0, false,
			"NEWS2 0 (RR 16/min: 0, SpO2 97 %: 0, HR 72 bpm: 0; air/oxygen, BP, consciousness, temperature not measured)"},
		{"aggregate 5 without a 3", map[string]float64{"resp_per_min": 22, "spo2_pct": 93, "hr_bpm": 95}, 5, true, ""},
		{"aggregate 4 without a 3", map[string]float64{"resp_per_min": 22, "spo2_pct": 94, "hr_bpm": 95}, 4, false, ""},
		{"single 3 alone", map[string]float64{"hr_bpm": 131}, 3, true, ""},
		{"hr_bpm preferred to pulse_bpm", map[string]float64{"hr_bpm": 70, "pulse_bpm": 140}, 0, false, ""},
		{"NaN is missing", map[string]float64{"hr_bpm": math.NaN(), "spo2_pct": 97}, 0, false, ""},
		{"all seven", map[string]float64{"resp_per_min": 18, "spo2_pct": 95, FieldOnOxygen: 1, "sbp_mmhg": 105, "hr_bpm": 100,
			FieldACVPU: 0, "temp_c": 38.5}, 6, true,
			"NEWS2 6 (RR 18/min: 0, SpO2 95 %: 1, on oxygen: 2, BP 105 mmHg: 1, HR 100 bpm: 1, alert: 0, temperature 38.5 °C: 1)"},
		{"nothing", map[string]float64{}, 0, false,
			"NEWS2 0 (RR, SpO2, air/oxygen, BP, HR, consciousness, temperature not measured)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ScoreNEWS2(tc.values)
			if s.Total != tc.total || s.Urgent() != tc.urgent {
				t.Errorf("total %d urgent %v, want %d %v (%s)", s.Total, s.Urgent(), tc.total, tc.urgent, s)
			}
			if tc.text != "" && s.String() != tc.text {
				t.Errorf("text\n%s\nwant\n%s", s, tc.text)
			}
		})
	}
}

func TestNEWS2Tracker(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	rule := NEWS2Rule{Window: 60 * time.Second, Stale: 15 * time.Minute, Clear: 5 * time.Minute}
	type step struct {
		from, to int // seconds, inclusive, 1 Hz
		values   map[string]float64
	}
	bad := map[string]float64{"resp_per_min": 26, "spo2_pct": 97, "hr_bpm": 80}
	good := map[string]float64{"resp_per_min": 16, "spo2_pct": 97, "hr_bpm": 80}
	tests := []struct {
		name    string
		steps   []step
		fired   []int
		cleared []int
	}{
		{"urgent from the start fires once the window is full", []step{{0, 120, bad}}, []int{60}, nil},
		{"a 10 s spike is outvoted by the median", []step{{0, 100, good}, {101, 110, bad}, {111, 200, good}}, nil, nil},
		{"30 s of a 60 s window is not a majority", []step{{0, 100, good}, {101, 130, bad}, {131, 200, good}}, nil, nil},
		{"31 s is", []step{{0, 100, good}, {101, 131, bad}, {132, 200, good}}, []int{131}, nil},
		{"clears after 5 min calm, once", []step{{0, 70, bad}, {71, 800, good}}, []int{60}, []int{101 + 300}},
		{"calm before any alert reports a clear once (restart safety)", []step{{0, 400, good}}, nil, []int{360}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNEWS2Tracker(rule)
			var fired, cleared []int
			for _, st := range tc.steps {
				for s := st.from; s <= st.to; s++ {
					res := n.observe(t0.Add(time.Duration(s)*time.Second), st.values)
					if res.Fired {
						fired = append(fired, s)
					}
					if res.Cleared {
						cleared = append(cleared, s)
					}
				}
			}
			if fmt.Sprint(fired) != fmt.Sprint(tc.fired) || fmt.Sprint(cleared) != fmt.Sprint(tc.cleared) {
				t.Errorf("fired at %v cleared at %v, want %v %v", fired, cleared, tc.fired, tc.cleared)
			}
		})
	}
}

// TestNEWS2OnBIDMC runs the NEWS2 rule over real ICU recordings (8 min at
// 1 Hz each). Expected, from the recordings' medians: bidmc_32 (SpO2 about
// 85 %, RR about 25) is urgent; bidmc_25 (HR about 124: 2 points), bidmc_05
// (RR about 11: 1, HR about 98: 1) and bidmc_01 (RR about 21: 2, HR about
// 91: 1, SpO2 about 94: 1) score below 5 with no single 3.
func TestNEWS2OnBIDMC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rec     string
		fires   bool
		highest int // highest aggregate seen after the 60 s warm-up
	}{
		{"bidmc_32", true, 6},
		{"bidmc_25", false, 2},
		{"bidmc_05", false, 2},
		{"bidmc_01", false, 3},
	}
	for _, tc := range tests {
		t.Run(tc.rec, func(t *testing.T) {
			rows := bidmc(t, tc.rec)
			n := newNEWS2Tracker(DefaultNEWS2)
			t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
			var fired []NEWS2Score
			hi := 0
			for i, vals := range rows {
				res := n.observe(t0.Add(time.Duration(i)*time.Second), vals)
				if res.Fired {
					fired = append(fired, res.Score)
				}
				if i >= 60 && res.Score.Total > hi {
					hi = res.Score.Total
				}
			}
			t.Logf("%s: %d readings, highest aggregate %d, fired %d", tc.rec, len(rows), hi, len(fired))
			if tc.fires != (len(fired) > 0) {
				t.Fatalf("fired %v, want firing %v", fired, tc.fires)
			}
			if len(fired) > 1 {
				t.Errorf("fired %d times in one episode: %v", len(fired), fired)
			}
			if hi != tc.highest {
				t.Errorf("highest aggregate %d, want %d", hi, tc.highest)
			}
			for _, s := range fired {
				t.Logf("detail: %s", s)
				spo2 := s.Parts[slicesIndex(s.Parts, NEWS2SpO2)]
				if spo2.Score != 3 {
					t.Errorf("bidmc_32 SpO2 part %+v, want 3 points", spo2)
				}
			}
		})
	}
}

func slicesIndex(parts []NEWS2Part, param string) int {
	for i, p := range parts {
		if p.Param == param {
			return i
		}
	}
	return -1
}

func FuzzScoreNEWS2(f *testing.F) {
	f.Add(16.0, 97.0, 72.0, 120.0, 36.6)
	f.Add(8.0, 91.0, 131.0, 90.0, 35.0)
	f.Fuzz(func(t *testing.T, rr, spo2, hr, sbp, temp float64) {
		s := ScoreNEWS2(map[string]float64{"resp_per_min": rr, "spo2_pct": spo2, "hr_bpm": hr, "sbp_mmhg": sbp, "temp_c": temp})
		sum := 0
		for _, p := range s.Parts {
			if p.Score < 0 || p.Score > 3 {
				t.Fatalf("part %+v out of 0-3", p)
			}
			sum += p.Score
		}
		if sum != s.Total || len(s.Parts)+len(s.Missing) != len(news2Params) {
			t.Fatalf("inconsistent score %+v", s)
		}
		_ = s.String()
	})
}
