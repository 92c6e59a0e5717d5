package fall

import (
	"bytes"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"
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

func detectAll(t *testing.T, samples []Sample) ([]Detection, []Candidate) {
	t.Helper()
	return runAll(DefaultConfig(), samples)
}

func TestSyntheticFreeFallImpactDetects(t *testing.T) {
	dets, cands := detectAll(t, fallSignal(20*time.Millisecond))
	if len(dets) != 1 {
		t.Fatalf("got %d detections, want 1; candidates %+v", len(dets), cands)
	}
	d := dets[0]
	if d.At < 3400*time.Millisecond || d.At > 3460*time.Millisecond {
		t.Errorf("At = %v, want within the impact 3.40–3.46 s", d.At)
	}
	if math.Abs(d.PeakSVM-5*g) > 1e-9 || math.Abs(d.MinSVM-0.1*g) > 1e-9 {
		t.Errorf("PeakSVM %v MinSVM %v, want %v and %v", d.PeakSVM, d.MinSVM, 5*g, 0.1*g)
	}
	if math.Abs(d.OrientationChangeDeg-90) > 1e-6 {
		t.Errorf("OrientationChangeDeg = %v, want 90", d.OrientationChangeDeg)
	}
	if d.DecidedAt < d.At+2400*time.Millisecond {
		t.Errorf("DecidedAt %v before the posture window ended", d.DecidedAt)
	}
}

func TestLoneSpikeWithoutOrientationChangeRejected(t *testing.T) {
	s := &synth{dt: 20 * time.Millisecond}
	s.hold(3*time.Second, 0, 0, g)
	s.hold(200*time.Millisecond, 0, 0, 0.3*g) // swing: low-g
	s.hold(40*time.Millisecond, 0, 3*g, 5*g)  // hit the table
	s.hold(5*time.Second, 0, 0, g)            // same attitude as before
	dets, cands := detectAll(t, s.out)
	if len(dets) != 0 {
		t.Fatalf("got %+v, want no detection", dets)
	}
	if len(cands) != 1 || !strings.HasPrefix(cands[0].Reason, "no posture change") {
		t.Fatalf("want one candidate rejected by the posture phase, got %+v", cands)
	}
}

func TestSpikeWithoutFreeFallRejected(t *testing.T) {
	s := &synth{dt: 20 * time.Millisecond}
	s.hold(3*time.Second, 0, 0, g)
	s.hold(60*time.Millisecond, 3*g, 0, 4*g)
	s.hold(5*time.Second, g, 0, 0) // even with a posture change
	dets, cands := detectAll(t, s.out)
	if len(dets) != 0 {
		t.Fatalf("got %+v, want none", dets)
	}
	if len(cands) != 1 || !strings.HasPrefix(cands[0].Reason, "no start-of-fall") {
		t.Fatalf("want one rejection by the start-of-fall phase, got %+v", cands)
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
	d := NewDetector(DefaultConfig())
	var dets []Detection
	for _, s := range dirty {
		if det, ok := d.Push(s); ok {
			dets = append(dets, det)
		}
	}
	want, _ := detectAll(t, clean)
	if len(dets) != 1 || dets[0] != want[0] {
		t.Fatalf("with NaN/Inf samples got %+v, want %+v", dets, want)
	}
	if d.Dropped() != 2*((len(clean)+6)/7) {
		t.Errorf("Dropped = %d, want %d", d.Dropped(), 2*((len(clean)+6)/7))
	}
}

// TestIrregularSampling mimics the watch: bursts of samples 1–3 ms apart
// separated by gaps of 80–170 ms, plus jitter, out-of-order and repeated
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
			if rng.Intn(10) == 0 { // repeated time
				samples = append(samples, Sample{T: ts, X: x, Y: y, Z: z})
			}
			ts += time.Duration(1+rng.Intn(3)) * time.Millisecond
		}
		if rng.Intn(8) == 0 { // a late sample from the past
			samples = append(samples, Sample{T: ts - 50*time.Millisecond, X: 0, Y: 0, Z: g})
		}
		ts += time.Duration(80+rng.Intn(90)) * time.Millisecond
	}
	dets, cands := detectAll(t, samples)
	if len(dets) != 1 {
		t.Fatalf("got %d detections, want 1: %+v", len(dets), cands)
	}
	if dets[0].At < 3400*time.Millisecond || dets[0].At >= 3600*time.Millisecond {
		t.Errorf("At = %v, want in the impact 3.4–3.6 s", dets[0].At)
	}
	if dets[0].OrientationChangeDeg < 80 {
		t.Errorf("orientation change %.1f°, want ~90°", dets[0].OrientationChangeDeg)
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
	dets, _ := detectAll(t, s.out)
	if len(dets) != 2 {
		t.Fatalf("got %d detections %+v, want 2", len(dets), dets)
	}
	if dets[1].At-dets[0].At < DefaultConfig().Refractory {
		t.Errorf("second detection inside the refractory period: %+v", dets)
	}
}

func TestStartOfRecordingNeedsReference(t *testing.T) {
	// A fall-shaped event 0.5 s into the recording has no pre-fall
	// reference: it must not be reported.
	s := &synth{dt: 20 * time.Millisecond}
	s.hold(200*time.Millisecond, 0, 0, g)
	s.hold(300*time.Millisecond, 0, 0, 0.1*g)
	s.hold(60*time.Millisecond, 3*g, 0, 4*g)
	s.hold(4*time.Second, g, 0, 0)
	dets, cands := detectAll(t, s.out)
	if len(dets) != 0 || len(cands) != 1 || !strings.Contains(cands[0].Reason, "reference window") {
		t.Fatalf("got %+v / %+v, want one candidate rejected for lack of reference", dets, cands)
	}
}

func TestFlushDecidesCutPostureWindow(t *testing.T) {
	all := fallSignal(20 * time.Millisecond)
	// Cut the recording 2.2 s after the impact: inside the posture window.
	var cut []Sample
	for _, s := range all {
		if s.T < 3400*time.Millisecond+2200*time.Millisecond {
			cut = append(cut, s)
		}
	}
	d := NewDetector(DefaultConfig())
	for _, s := range cut {
		if _, ok := d.Push(s); ok {
			t.Fatal("decided before the posture window ended")
		}
	}
	if got := d.Flush(); len(got) != 1 {
		t.Fatalf("Flush = %+v, want one detection", got)
	}
	if got := d.Flush(); len(got) != 0 {
		t.Fatalf("second Flush = %+v, want none", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.FreeFallThreshold = 0 },
		func(c *Config) { c.ImpactThreshold = c.FreeFallThreshold },
		func(c *Config) { c.ImpactThreshold = math.NaN() },
		func(c *Config) { c.ImpactWindow = 0 },
		func(c *Config) { c.PeakWindow = 3 * time.Second },
		func(c *Config) { c.ReferenceWindow = -1 },
		func(c *Config) { c.PostureWindow = 0 },
		func(c *Config) { c.OrientationChangeDeg = 181 },
		func(c *Config) { c.MinWindowSamples = 0 },
		func(c *Config) { c.Refractory = -time.Second },
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

func BenchmarkPush(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const n = 1 << 16
	samples := make([]Sample, n)
	ts := time.Duration(0)
	for i := range samples {
		ts += time.Duration(1+rng.Intn(40)) * time.Millisecond // ~48 Hz, bursty
		x, y, z := rng.NormFloat64()*2, rng.NormFloat64()*2, g+rng.NormFloat64()*2
		if i%3000 == 1500 { // an occasional spike
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
}
