package fall

import (
	"bytes"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"
	"unsafe"
)

const g = StandardGravity

// synth builds a signal at a fixed period from segments of constant
// acceleration.
type synth struct {
	t   time.Duration
	dt  time.Duration
	out []Sample
}

func (s *synth) hold(d time.Duration, x, y, z float64) {
	for end := s.t + d; s.t < end; s.t += s.dt {
		s.out = append(s.out, Sample{T: s.t, X: x, Y: y, Z: z})
	}
}

// fallSignal: 3 s upright (gravity on +Z), 0.4 s free fall (0.1 g),
// 0.06 s impact of 5 g, then 5 s lying with gravity on +X (90°).
func fallSignal(dt time.Duration) []Sample {
	s := &synth{dt: dt}
	s.hold(3*time.Second, 0, 0, g)
	s.hold(400*time.Millisecond, 0, 0, 0.1*g)
	s.hold(60*time.Millisecond, 3*g, 0, 4*g)
	s.hold(5*time.Second, g, 0, 0)
	return s.out
}

// orientModel is a hand-made model for mechanism tests: a fall is an
// orientation change of more than 45° with the wrist still afterwards.
var orientModel = func() Model {
	m := Model{Threshold: 0.5}
	for i := range m.Scale {
		m.Scale[i] = 1
	}
	m.Weights[5] = 1   // orientation_change_deg
	m.Weights[3] = -10 // post_std_svm
	m.Bias = -45
	return m
}()

func runOrient(samples []Sample) ([]Detection, []Candidate) {
	cfg := DefaultConfig()
	cfg.Model = &orientModel
	return Run(cfg, samples)
}

func TestSyntheticFallFeatures(t *testing.T) {
	for _, dt := range []time.Duration{20 * time.Millisecond, 50 * time.Millisecond} {
		t.Run(dt.String(), func(t *testing.T) {
			dets, cands := runOrient(fallSignal(dt))
			if len(dets) != 1 || len(cands) != 1 {
				t.Fatalf("got %d detections, %d candidates, want 1 and 1: %+v", len(dets), len(cands), cands)
			}
			d := dets[0]
			if d.At < 3400*time.Millisecond || d.At > 3500*time.Millisecond {
				t.Errorf("At = %v, want within the impact bin 3.40-3.50 s", d.At)
			}
			f := d.Features
			if math.Abs(f.OrientationChangeDeg-90) > 1e-6 || f.PostStdSVM > 1e-5 || math.Abs(f.PostMeanSVM-g) > 1e-9 {
				t.Errorf("features %+v: want 90° change, still (std 0) at 1 g after", f)
			}
			if f.DipSVM > 0.1*g+1e-9 || f.PeakSVM < 4*g {
				t.Errorf("dip %v peak %v, want <= 0.1 g and >= 4 g", f.DipSVM, f.PeakSVM)
			}
			if d.DecidedAt < d.At+3700*time.Millisecond-GridPeriod {
				t.Errorf("DecidedAt %v before the late post-impact window (3.7 s) ended", d.DecidedAt)
			}
			// Lying still on the side later; a 0.4 s descent at 0.1 g before.
			if f.LateStdSVM > 1e-5 || math.Abs(f.LateOrientationChangeDeg-90) > 1e-6 || f.StillFrac < 0.99 {
				t.Errorf("late std %v, late change %v°, still share %v: want 0, 90°, 1", f.LateStdSVM, f.LateOrientationChangeDeg, f.StillFrac)
			}
			// ∫(a·ĝ - g) dt over the free fall: 0.4 s × -0.9 g = -3.53 m/s,
			// less at 20 Hz where interpolation blurs its edges into the
			// impact bin (-2.94 m/s).
			if want := -0.4 * 0.9 * g; f.PreVerticalVel > 0.8*want || f.PreVerticalVel < 1.05*want || math.Abs(f.PreMinVertical-0.1*g) > 1e-6 {
				t.Errorf("pre-impact vertical velocity %v m/s, min %v m/s^2: want %.2f and %.2f", f.PreVerticalVel, f.PreMinVertical, want, 0.1*g)
			}
			// Upright and still before the last second: the 2 s integral adds
			// nothing; the attitude turns by 90° across the impact; the
			// descent falls straight down (no rotation).
			if math.Abs(f.PreVerticalVel2s-f.PreVerticalVel) > 1e-9 || math.Abs(f.ShortOrientationChangeDeg-90) > 1e-6 || f.RotationPathDeg > 1e-6 {
				t.Errorf("2 s vertical velocity %v (1 s: %v), short change %v°, rotation path %v°: want equal, 90°, 0°",
					f.PreVerticalVel2s, f.PreVerticalVel, f.ShortOrientationChangeDeg, f.RotationPathDeg)
			}
		})
	}
}

// TestDescentRotation: a wrist that turns by 90° in 0.8 s (in 10 steps of
// 9°, gravity from +Z to +X) before the impact gives as rotation path the
// part of that turn inside [p-1.5 s, p-0.25 s], at 20 and 50 Hz; a still
// wrist gives 0 (TestSyntheticFallFeatures).
func TestDescentRotation(t *testing.T) {
	for _, dt := range []time.Duration{20 * time.Millisecond, 50 * time.Millisecond} {
		s := &synth{dt: dt}
		s.hold(3*time.Second, 0, 0, g)
		for k := 1; k <= 10; k++ {
			a := float64(k) * 9 * math.Pi / 180
			s.hold(80*time.Millisecond, g*math.Sin(a), 0, g*math.Cos(a))
		}
		s.hold(60*time.Millisecond, 3*g, 0, 4*g)
		s.hold(5*time.Second, g, 0, 0)
		_, cands := runOrient(s.out)
		if len(cands) != 1 {
			t.Fatalf("%v: %d candidates, want 1", dt, len(cands))
		}
		// The turn steps by 9° every 80 ms from 3.0 s, the peak is in the
		// bin [3.8 s, 3.85 s), so the path window ends with the bin
		// [3.55 s, 3.6 s): 7 to 8 steps (63-72°) have turned by then, the
		// input grid's interpolation blurring the last a little.
		if r := cands[0].Features.RotationPathDeg; r < 63 || r > 80 {
			t.Errorf("%v: rotation path %.1f°, want 63-80°", dt, r)
		}
	}
}

// TestModelTrees: a depth-2 tree adds the leaf its two comparisons reach
// to the log-odds, and Validate refuses a tree naming a missing feature.
func TestModelTrees(t *testing.T) {
	m := Model{Scale: ones(), Threshold: 0.5, Trees: []Tree{{
		F: 0, Split: 20,
		Lo: Stump{F: 1, Split: 5, Left: -1, Right: -2},
		Hi: Stump{F: 2, Split: 1, Left: 3, Right: 4},
	}}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peak, dip, preStd float64
		logit             float64
	}{
		{10, 4, 0, -1}, {10, 6, 0, -2}, {30, 0, 0.5, 3}, {30, 0, 2, 4},
	} {
		got := m.Score(Features{PeakSVM: tc.peak, DipSVM: tc.dip, PreStdSVM: tc.preStd})
		if want := 1 / (1 + math.Exp(-tc.logit)); math.Abs(got-want) > 1e-12 {
			t.Errorf("%+v: score %v, want %v", tc, got, want)
		}
	}
	bad := m
	bad.Trees = []Tree{{F: 0, Split: 1, Lo: Stump{F: NumFeatures}, Hi: Stump{}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "tree 0") {
		t.Errorf("Validate of a tree with feature %d: %v, want an error naming tree 0", NumFeatures, err)
	}
	if err := Trained.Validate(); err != nil || len(Trained.Trees) == 0 {
		t.Errorf("Trained: %v, %d trees", err, len(Trained.Trees))
	}
}

func TestSpikeWithoutOrientationChangeRejected(t *testing.T) {
	s := &synth{dt: 20 * time.Millisecond}
	s.hold(3*time.Second, 0, 0, g)
	s.hold(200*time.Millisecond, 0, 0, 0.3*g) // swing: low-g
	s.hold(40*time.Millisecond, 0, 3*g, 5*g)  // hit the table
	s.hold(5*time.Second, 0, 0, g)            // same attitude as before
	dets, cands := runOrient(s.out)
	if len(dets) != 0 || len(cands) != 1 || !strings.HasPrefix(cands[0].Reason, "score") {
		t.Fatalf("got %+v / %+v, want one candidate rejected by its score", dets, cands)
	}
	if cands[0].Features.OrientationChangeDeg > 1e-6 {
		t.Errorf("orientation change %v, want 0", cands[0].Features.OrientationChangeDeg)
	}
}

func TestNaNSamplesSkipped(t *testing.T) {
	clean := fallSignal(20 * time.Millisecond)
	var dirty []Sample
	for i, s := range clean {
		dirty = append(dirty, s)
		if i%7 == 0 {
			dirty = append(dirty, Sample{T: s.T, X: math.NaN(), Y: 0, Z: g})
			dirty = append(dirty, Sample{T: s.T, X: 0, Y: math.Inf(-1), Z: g})
		}
	}
	cfg := DefaultConfig()
	cfg.Model = &orientModel
	d := NewDetector(cfg)
	var dets []Detection
	for _, s := range dirty {
		if det, ok := d.Push(s); ok {
			dets = append(dets, det)
		}
	}
	want, _ := runOrient(clean)
	if len(dets) != 1 || dets[0] != want[0] {
		t.Fatalf("with NaN/Inf samples got %+v, want %+v", dets, want)
	}
	if d.Dropped() != 2*((len(clean)+6)/7) {
		t.Errorf("Dropped = %d, want %d", d.Dropped(), 2*((len(clean)+6)/7))
	}
}

// TestIrregularSampling mimics the watch: bursts of samples 1-3 ms apart
// separated by gaps of 80-170 ms, plus jitter, out-of-order and repeated
// times.
func TestIrregularSampling(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	at := func(ts time.Duration) (x, y, z float64) {
		switch {
		case ts < 3*time.Second:
			return 0, 0, g
		case ts < 3400*time.Millisecond:
			return 0, 0, 0.1 * g
		case ts < 3600*time.Millisecond:
			return 3 * g, 0, 4 * g
		default:
			return 0, g, 0
		}
	}
	var samples []Sample
	for ts := time.Duration(0); ts < 9*time.Second; {
		n := 1 + rng.Intn(4)
		for i := 0; i < n; i++ {
			x, y, z := at(ts)
			j := (rng.Float64() - 0.5) * 0.4
			samples = append(samples, Sample{T: ts, X: x + j, Y: y + j, Z: z - j})
			if rng.Intn(10) == 0 {
				samples = append(samples, Sample{T: ts, X: x, Y: y, Z: z})
			}
			ts += time.Duration(1+rng.Intn(3)) * time.Millisecond
		}
		if rng.Intn(8) == 0 { // a late sample from the past: dropped
			samples = append(samples, Sample{T: ts - 50*time.Millisecond, X: 0, Y: 0, Z: g})
		}
		ts += time.Duration(80+rng.Intn(90)) * time.Millisecond
	}
	dets, cands := runOrient(samples)
	if len(dets) != 1 {
		t.Fatalf("got %d detections, want 1: %+v", len(dets), cands)
	}
	if dets[0].At < 3300*time.Millisecond || dets[0].At >= 3700*time.Millisecond {
		t.Errorf("At = %v, want in the impact 3.4-3.6 s", dets[0].At)
	}
	if dets[0].Features.OrientationChangeDeg < 80 {
		t.Errorf("orientation change %.1f°, want ~90°", dets[0].Features.OrientationChangeDeg)
	}
}

func TestRefractory(t *testing.T) {
	s := &synth{dt: 20 * time.Millisecond}
	fall := func(from, to [3]float64) {
		s.hold(3*time.Second, from[0], from[1], from[2])
		s.hold(400*time.Millisecond, 0, 0, 0.1*g)
		s.hold(60*time.Millisecond, 3*g, 0, 4*g)
		s.hold(3*time.Second, to[0], to[1], to[2])
	}
	up, side := [3]float64{0, 0, g}, [3]float64{g, 0, 0}
	fall(up, side) // impact at ~3.4 s
	fall(side, up) // ~9.9 s: same fall (inside 10 s)
	s.hold(5*time.Second, 0, 0, g)
	fall(up, side) // ~21.3 s: a new fall
	dets, cands := runOrient(s.out)
	if len(dets) != 2 {
		t.Fatalf("got %d detections %+v, want 2; candidates %+v", len(dets), dets, cands)
	}
	if dets[1].At-dets[0].At < DefaultConfig().Refractory {
		t.Errorf("second detection inside the refractory period: %+v", dets)
	}
	refr := 0
	for _, c := range cands {
		if strings.Contains(c.Reason, "refractory") {
			refr++
		}
	}
	if refr != 1 {
		t.Errorf("%d candidates rejected as refractory, want 1: %+v", refr, cands)
	}
}

func TestLongGapStartsNewSegment(t *testing.T) {
	// 3 s still, a 5 s gap (sensor off), then a fall-shaped event right
	// after the gap: its reference window lies in the gap, so it has no
	// orientation change and is not reported as the 90° fall it would be
	// if the gap were bridged.
	s := &synth{dt: 20 * time.Millisecond}
	s.hold(3*time.Second, g, 0, 0)
	s.t += 5 * time.Second
	s.hold(60*time.Millisecond, 3*g, 0, 4*g)
	s.hold(4*time.Second, 0, 0, g)
	dets, cands := runOrient(s.out)
	if len(dets) != 0 || len(cands) != 1 || cands[0].Features.OrientationChangeDeg != 0 {
		t.Fatalf("got %+v / %+v, want one candidate without a reference", dets, cands)
	}
}

func TestFlushDecidesCutPostWindow(t *testing.T) {
	all := fallSignal(20 * time.Millisecond)
	var cut []Sample
	for _, s := range all {
		if s.T < 3400*time.Millisecond+2000*time.Millisecond {
			cut = append(cut, s)
		}
	}
	cfg := DefaultConfig()
	cfg.Model = &orientModel
	d := NewDetector(cfg)
	for _, s := range cut {
		if _, ok := d.Push(s); ok {
			t.Fatal("decided before the post-impact window ended")
		}
	}
	if got := d.Flush(); len(got) != 1 {
		t.Fatalf("Flush = %+v, want one detection", got)
	}
	if got := d.Flush(); len(got) != 0 {
		t.Fatalf("second Flush = %+v, want none", got)
	}
	// Cut 0.3 s after the impact: too little to decide.
	var short []Sample
	for _, s := range all {
		if s.T < 3700*time.Millisecond {
			short = append(short, s)
		}
	}
	dets, cands := runOrient(short)
	if len(dets) != 0 || len(cands) != 1 || !strings.Contains(cands[0].Reason, "stream ends") {
		t.Fatalf("got %+v / %+v, want one candidate rejected for lack of signal", dets, cands)
	}
}

func TestUnitErrorInG(t *testing.T) {
	inG := fallSignal(20 * time.Millisecond)
	for i := range inG {
		inG[i].X /= g
		inG[i].Y /= g
		inG[i].Z /= g
	}
	cfg := DefaultConfig()
	cfg.Model = &orientModel
	d := NewDetector(cfg)
	for _, s := range inG {
		d.Push(s)
	}
	if err := d.UnitError(); err == nil || !strings.Contains(err.Error(), "looks like g") {
		t.Fatalf("UnitError = %v, want one saying it looks like g", err)
	}
	ok := NewDetector(cfg)
	for _, s := range fallSignal(20 * time.Millisecond) {
		ok.Push(s)
	}
	if err := ok.UnitError(); err != nil {
		t.Fatalf("UnitError in m/s^2 = %v", err)
	}
}

func TestNormalizeUnits(t *testing.T) {
	ms2 := fallSignal(20 * time.Millisecond)
	got, u, err := NormalizeUnits(ms2)
	if err != nil || u != MS2 || &got[0] != &ms2[0] {
		t.Fatalf("m/s^2: %v %v", u, err)
	}
	inG := make([]Sample, len(ms2))
	for i, s := range ms2 {
		inG[i] = Sample{s.T, s.X / g, s.Y / g, s.Z / g}
	}
	got, u, err = NormalizeUnits(inG)
	if err != nil || u != G {
		t.Fatalf("g: %v %v", u, err)
	}
	for i := range got {
		if math.Abs(got[i].X-ms2[i].X) > 1e-9 || math.Abs(got[i].Z-ms2[i].Z) > 1e-9 {
			t.Fatalf("sample %d converted to %+v, want %+v", i, got[i], ms2[i])
		}
	}
	inMg := make([]Sample, len(ms2))
	for i, s := range inG {
		inMg[i] = Sample{s.T, s.X * 1000, s.Y * 1000, s.Z * 1000}
	}
	if _, _, err := NormalizeUnits(inMg); err == nil || !strings.Contains(err.Error(), "unknown units") {
		t.Fatalf("mg: error %v, want a refusal", err)
	}
	if _, _, err := NormalizeUnits(nil); err == nil {
		t.Fatal("empty: no error")
	}
}

func TestResample(t *testing.T) {
	in := []Sample{{0, 0, 0, 0}, {100 * time.Millisecond, 10, 0, 0}, {100 * time.Millisecond, 10, 0, 0}, {300 * time.Millisecond, 30, 0, 0}}
	out, err := Resample(in, 20)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 5, 10, 15, 20, 25, 30}
	if len(out) != len(want) {
		t.Fatalf("got %+v", out)
	}
	for i, w := range want {
		if math.Abs(out[i].X-w) > 1e-9 || out[i].T != time.Duration(i)*50*time.Millisecond {
			t.Errorf("sample %d = %+v, want X %v at %v", i, out[i], w, time.Duration(i)*50*time.Millisecond)
		}
	}
	if _, err := Resample(in, 0); err == nil {
		t.Error("0 Hz accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := Trained.Validate(); err != nil {
		t.Fatalf("shipped model: %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.CandidateThreshold = g },
		func(c *Config) { c.CandidateThreshold = math.NaN() },
		func(c *Config) { c.Refractory = -time.Second },
		func(c *Config) { c.MaxGap = GridPeriod },
		func(c *Config) { m := Trained; m.Threshold = 1; c.Model = &m },
		func(c *Config) { m := Trained; m.Scale[2] = 0; c.Model = &m },
		func(c *Config) { m := Trained; m.Weights[0] = math.Inf(1); c.Model = &m },
	}
	for i, m := range bad {
		c := DefaultConfig()
		m(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: Validate accepted %+v", i, c)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewDetector accepted an invalid config")
		}
	}()
	NewDetector(Config{})
}

func TestReadAccelCSV(t *testing.T) {
	in := "\ufeffaccel_time_list,accel_x_list,accel_y_list,accel_z_list\r\n" +
		"0.0,-0.1,1.1,9.3\r\n" +
		"\r\n" +
		"0.02, 1, 2, 3\r\n" +
		"0.01,4,5,6\r\n" + // out of order
		"0.02,1,2,3\r\n" + // repeated reading: dropped
		"0.02,7,8,9\r\n" + // same time, other values: kept
		"0.03,NaN,0,0\r\n" + // skipped
		"0.04,0,0,9.8\r\n"
	got, err := ReadAccelCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := []Sample{
		{0, -0.1, 1.1, 9.3},
		{10 * ms, 4, 5, 6},
		{20 * ms, 1, 2, 3},
		{20 * ms, 7, 8, 9},
		{40 * ms, 0, 0, 9.8},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Columns by name, in another order.
	got, err = ReadAccelCSV(strings.NewReader("accel_z_list,accel_time_list,accel_y_list,accel_x_list\n9.8,1.5,2,1\n"))
	if err != nil || len(got) != 1 || got[0] != (Sample{1500 * ms, 1, 2, 9.8}) {
		t.Fatalf("reordered columns: %+v, %v", got, err)
	}
}

func TestReadAccelCSVErrors(t *testing.T) {
	cases := map[string]string{
		"":        "empty input",
		"a,b,c\n": "line 1",
		"accel_time_list,accel_x_list,accel_y_list,accel_z_list\n0,1,2,3\n0.1,1,x,3\n": "line 3",
		"accel_time_list,accel_x_list,accel_y_list,accel_z_list\n0,1,2\n":              "line 2",
		"accel_time_list,accel_x_list,accel_y_list,accel_z_list\n\n-1,1,2,3\n":         "line 3",
		"accel_time_list,accel_x_list,accel_y_list,accel_z_list\n1e300,1,2,3\n":        "line 2",
	}
	for in, want := range cases {
		_, err := ReadAccelCSV(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadAccelCSV(%q) error %v, want one containing %q", in, err, want)
		}
	}
}

func TestReadFallWindows(t *testing.T) {
	in := "\ufefffilename,start_time,end_time\r\nF01/U01_R01,4.7,7.7\r\nF02/U02_R01,4.0,7.0\r\n\r\n"
	got, err := ReadFallWindows(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["F01/U01_R01"] != [2]float64{4.7, 7.7} || got["F02/U02_R01"] != [2]float64{4, 7} {
		t.Fatalf("got %v", got)
	}
	for in, want := range map[string]string{
		"":                                      "empty input",
		"name,start,end\n":                      "line 1",
		"filename,start_time,end_time\nF,1\n":   "line 2",
		"filename,start_time,end_time\nF,2,1\n": "line 2",
		"filename,start_time,end_time\nF,1,2\nF,1,2\n": "line 3",
		"filename,start_time,end_time\nF,x,2\n":        "line 2",
		"filename,start_time,end_time\nF,NaN,2\n":      "line 2",
	} {
		_, err := ReadFallWindows(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFallWindows(%q) error %v, want one containing %q", in, err, want)
		}
	}
}

func FuzzReadAccelCSV(f *testing.F) {
	f.Add([]byte("\ufeffaccel_time_list,accel_x_list,accel_y_list,accel_z_list\r\n0.0,-0.1,1.1,9.3\r\n0.001,0.2,2.0,9.7\r\n"))
	f.Add([]byte("accel_time_list,accel_x_list,accel_y_list,accel_z_list\n\n1,NaN,2,3\n0.5,1,2,3\n0.5,1,2,3\n"))
	f.Add([]byte("accel_time_list,accel_x_list\n\"1,2\n"))
	f.Add([]byte("accel_time_list,accel_x_list,accel_y_list,accel_z_list\n-0,1e308,-1e308,Inf\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, err := ReadAccelCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		d := NewDetector(DefaultConfig())
		for i, s := range samples {
			if i > 0 && s.T < samples[i-1].T {
				t.Fatalf("samples not sorted at %d", i)
			}
			d.Push(s)
		}
		d.Flush()
	})
}

// BenchmarkPush feeds a 50 Hz stream with occasional impacts through the
// shipped detector; it reports the CPU per second of signal.
func BenchmarkPush(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const n = 1 << 16
	samples := make([]Sample, n)
	ts := time.Duration(0)
	for i := range samples {
		ts += 20 * time.Millisecond
		x, y, z := rng.NormFloat64()*2, rng.NormFloat64()*2, g+rng.NormFloat64()*2
		if i%300 == 150 { // an impact candidate every 6 s
			x *= 20
		}
		samples[i] = Sample{T: ts, X: x, Y: y, Z: z}
	}
	d := NewDetector(DefaultConfig())
	b.ReportAllocs()
	b.ResetTimer()
	offset := time.Duration(0)
	for i := 0; i < b.N; i++ {
		s := samples[i%n]
		if i%n == 0 && i > 0 {
			offset += ts
		}
		s.T += offset
		d.Push(s)
	}
	b.StopTimer()
	perSample := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perSample*50/1000, "µs/s-of-signal@50Hz")
	b.ReportMetric(float64(unsafe.Sizeof(Detector{})), "B/detector")
}

// BenchmarkCandidate measures the work done once per impact candidate (at
// most one per second): the 25 features from the ring and the shipped
// model's score.
func BenchmarkCandidate(b *testing.B) {
	d := NewDetector(DefaultConfig())
	rng := rand.New(rand.NewSource(2))
	for i := range 500 { // 10 s at 50 Hz, an impact at 5 s
		x, y, z := rng.NormFloat64(), rng.NormFloat64(), g+rng.NormFloat64()
		if i == 250 {
			x = 40
		}
		d.Push(Sample{T: time.Duration(i) * 20 * time.Millisecond, X: x, Y: y, Z: z})
	}
	p := int64(5 * time.Second / GridPeriod)
	b.ReportAllocs()
	b.ResetTimer()
	var sink float64
	for i := 0; i < b.N; i++ {
		sink += d.model.Score(d.features(p))
	}
	if math.IsNaN(sink) {
		b.Fatal("NaN score")
	}
}
