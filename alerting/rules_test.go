package alerting

import (
	"slices"
	"testing"
	"time"
)

type sample struct {
	sec    float64 // device time in s from t0
	values map[string]float64
	seq    uint64 // 0: the sample's position in the list, from 1
}

// spo2Every is one spo2_pct sample of value v each device second from
// from to to, inclusive.
func spo2Every(from, to int, v float64) []sample {
	var out []sample
	for s := from; s <= to; s++ {
		out = append(out, spo2(float64(s), v))
	}
	return out
}

func spo2(sec float64, v float64) sample {
	return sample{sec: sec, values: map[string]float64{"spo2_pct": v}}
}

func TestVitalsWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	every := spo2Every
	cat := slices.Concat[[]sample]
	tests := []struct {
		name    string
		samples []sample
		// fireAt lists the device seconds at which spo2_low fires.
		fireAt []float64
		worst  float64
	}{
		{"span 29 s does not fire", every(0, 29, 85), nil, 0},
		{"span exactly 30 s fires at the boundary", every(0, 30, 85), []float64{30}, 85},
		{"re-arms after firing: fires again after another full 30 s", every(0, 100, 85), []float64{30, 60, 90}, 85},
		{"89.9 breaches, 90 does not", cat(every(0, 20, 89.9), every(21, 60, 90)), nil, 0},
		{"normal sample resets", cat(every(0, 20, 85), every(21, 21, 95), every(22, 51, 85)), nil, 0},
		{"normal sample resets then refires", cat(every(0, 20, 85), every(21, 21, 95), every(22, 52, 85)), []float64{52}, 85},
		{"worst value reported", cat(every(0, 10, 88), every(11, 11, 83), every(12, 30, 87)), []float64{30}, 83},
		{"missing field neither breaks nor extends", cat(every(0, 10, 85),
			[]sample{{sec: 11, values: map[string]float64{"hr_bpm": 80}}, {sec: 12, values: map[string]float64{"hr_bpm": 80}}},
			every(13, 29, 85)), nil, 0},
		{"missing field keeps the window", cat(every(0, 10, 85),
			[]sample{{sec: 11, values: map[string]float64{"hr_bpm": 80}}, {sec: 12, values: map[string]float64{"hr_bpm": 80}}},
			every(13, 30, 85)), []float64{30}, 85},
		{"gap of 10 s keeps the window", cat(every(0, 10, 85), every(20, 30, 85)), []float64{30}, 85},
		{"gap over 10 s resets", cat(every(0, 10, 85), every(21, 50, 85)), nil, 0},
		{"gap over 10 s resets then fires 30 s after the gap", cat(every(0, 10, 85), every(21, 51, 85)), []float64{51}, 85},
		{"redelivered sample (same seq) ignored", cat(every(0, 20, 85), []sample{{sec: 5, seq: 6, values: map[string]float64{"spo2_pct": 99}}},
			func() []sample { // keep the sequence numbers going after the redelivery
				xs := every(21, 30, 85)
				for i := range xs {
					xs[i].seq = uint64(22 + i)
				}
				return xs
			}()), []float64{30}, 85},
		{"sub-second samples", func() []sample {
			var out []sample
			for i := 0; i <= 120; i++ {
				out = append(out, spo2(float64(i)*0.25, 84))
			}
			return out
		}(), []float64{30}, 84},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVitals([]Threshold{SpO2Low}, DefaultMaxGap)
			var got []firing
			for i, s := range tc.samples {
				at := t0.Add(time.Duration(s.sec * float64(time.Second)))
				seq := s.seq
				if seq == 0 {
					seq = uint64(i + 1)
				}
				got = append(got, v.observe(1, seq, at, s.values)...)
			}
			if len(got) != len(tc.fireAt) {
				t.Fatalf("fired %d times (%v), want at %v", len(got), got, tc.fireAt)
			}
			for i, f := range got {
				want := t0.Add(time.Duration(tc.fireAt[i] * float64(time.Second)))
				if !f.At.Equal(want) {
					t.Errorf("firing %d at %s, want %s", i, f.At.Sub(t0), want.Sub(t0))
				}
				if f.Worst != tc.worst {
					t.Errorf("worst %g, want %g", f.Worst, tc.worst)
				}
				if f.Threshold.Type != TypeSpO2Low {
					t.Errorf("type %s", f.Threshold.Type)
				}
			}
		})
	}
}

func TestThresholdBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		th     Threshold
		v      float64
		breach bool
	}{
		{SpO2Low, 89.99, true}, {SpO2Low, 90, false}, {SpO2Low, 100, false},
		{HeartRate, 120, false}, {HeartRate, 120.5, true}, {HeartRate, 50, false}, {HeartRate, 49, true},
		{Respiration, 25, false}, {Respiration, 26, true}, {Respiration, 8, false}, {Respiration, 7, true},
	}
	for _, tc := range tests {
		t.Run(tc.th.Field, func(t *testing.T) {
			if got := tc.th.breaches(tc.v); got != tc.breach {
				t.Errorf("%s breaches(%g) = %v, want %v", tc.th.Type, tc.v, got, tc.breach)
			}
		})
	}
}

func TestVitalsRulesIndependent(t *testing.T) {
	t.Parallel()
	// HR high, RR low and SpO2 normal in the same readings; pulse_bpm is
	// ignored even when it breaches.
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	v := newVitals(DefaultThresholds, DefaultMaxGap)
	got := map[string][]firing{}
	for s := 0; s <= 60; s++ {
		vals := map[string]float64{"hr_bpm": 130, "pulse_bpm": 30, "resp_per_min": 6, "spo2_pct": 97}
		if s == 30 {
			vals["hr_bpm"] = 40 // flips direction: restarts the HR window
		}
		for _, f := range v.observe(1, uint64(s+1), t0.Add(time.Duration(s)*time.Second), vals) {
			got[f.Threshold.Type] = append(got[f.Threshold.Type], f)
		}
	}
	if len(got[TypeRespiration]) != 1 || got[TypeRespiration][0].Detail() != "Respiration 6 /min for 60 s" {
		t.Errorf("respiration firings %+v", got[TypeRespiration])
	}
	if len(got[TypeHeartRate]) != 0 {
		t.Errorf("heart rate fired %+v although the breach flipped direction at 30 s", got[TypeHeartRate])
	}
	if len(got[TypeSpO2Low]) != 0 {
		t.Errorf("spo2 fired %+v", got[TypeSpO2Low])
	}
}

// A device clock that jumped ahead (a reading stamped now+290 s) must not
// blind the rules to the real readings that follow (greater seq, earlier ts).
func TestVitalsClockJumpBack(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	v := newVitals([]Threshold{SpO2Low}, DefaultMaxGap)
	var got []firing
	got = append(got, v.observe(1, 1, now.Add(290*time.Second), map[string]float64{"spo2_pct": 85})...)
	for i := 0; i <= 60; i++ {
		got = append(got, v.observe(1, uint64(i+2), now.Add(time.Duration(i-60)*time.Second), map[string]float64{"spo2_pct": 85})...)
	}
	// The window restarts at now-60 s (the first real reading): it fires
	// 30 s later and, re-armed, again at now.
	want := []time.Time{now.Add(-30 * time.Second), now}
	if len(got) != len(want) {
		t.Fatalf("fired %d times (%+v), want at %v", len(got), got, want)
	}
	for i := range want {
		if !got[i].At.Equal(want[i]) || got[i].Span != 30*time.Second {
			t.Errorf("firing %d at %s span %s, want %s span 30s", i, got[i].At, got[i].Span, want[i])
		}
	}
}

// A QoS 1 redelivery (same boot and seq) of a batch must not extend the
// window; a new boot starts over.
func TestVitalsSeqDedup(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	v := newVitals([]Threshold{SpO2Low}, DefaultMaxGap)
	var got []firing
	feed := func(boot uint32, seq uint64, sec int) {
		got = append(got, v.observe(boot, seq, t0.Add(time.Duration(sec)*time.Second), map[string]float64{"spo2_pct": 85})...)
	}
	for s := 0; s <= 20; s++ {
		feed(1, uint64(s+1), s)
	}
	// The whole batch again, then redeliveries stamped later than the last
	// sample (a redelivery is recognised by seq, not by ts).
	for s := 0; s <= 20; s++ {
		feed(1, uint64(s+1), s)
	}
	for s := 21; s <= 40; s++ {
		feed(1, uint64(s-20), s) // seq 1..20 again with later ts: duplicates
	}
	if len(got) != 0 {
		t.Fatalf("redeliveries fired %+v", got)
	}
	for s := 21; s <= 29; s++ {
		feed(1, uint64(s+1), s)
	}
	if len(got) != 0 {
		t.Fatalf("fired before 30 s of breach: %+v", got)
	}
	// A restart of the device (boot 2, seq from 1) resets the window.
	for s := 30; s <= 59; s++ {
		feed(2, uint64(s-29), s)
	}
	if len(got) != 0 {
		t.Fatalf("fired %+v although the new boot reset the window at 30 s", got)
	}
	feed(2, 31, 60)
	if len(got) != 1 || !got[0].At.Equal(t0.Add(60*time.Second)) {
		t.Fatalf("firings %+v, want one at 60 s", got)
	}
}
