package firmwaresim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/fall"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// writeAccel writes samples as a WEDA-FALL accel CSV, each value multiplied
// by scale.
func writeAccel(t *testing.T, path string, samples []fall.Sample, scale float64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("accel_time_list,accel_x_list,accel_y_list,accel_z_list\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.3f,%g,%g,%g\n", s.T.Seconds(), s.X*scale, s.Y*scale, s.Z*scale)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func evalLines(t *testing.T, dir string, hz float64) ([]FallEvalResult, FallEvalSummary) {
	t.Helper()
	var out bytes.Buffer
	sum, err := EvalFalls(dir, hz, &out)
	if err != nil {
		t.Fatal(err)
	}
	var rs []FallEvalResult
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r FallEvalResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs, sum
}

// TestEvalFallsUnits: the same real fall in m/s^2 and in g gives the same
// detection (the g copy is converted); a recording in mg is refused with a
// clear error on its line, and the evaluation still succeeds.
func TestEvalFallsUnits(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	samples, err := ReadAccelFile(filepath.Join(data, "falls-weda", "F02", "U02_R01_accel.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeAccel(t, filepath.Join(dir, "F01", "A_R01_accel.csv"), samples, 1)
	writeAccel(t, filepath.Join(dir, "F01", "B_R01_accel.csv"), samples, 1/fall.StandardGravity)
	writeAccel(t, filepath.Join(dir, "D01", "C_R01_accel.csv"), samples, 1000/fall.StandardGravity)
	writeAccel(t, filepath.Join(dir, "misc", "D_Fall_R01_accel.csv"), samples, 1)
	rs, sum := evalLines(t, dir, 0)
	if len(rs) != 4 {
		t.Fatalf("%d lines, want 4: %+v", len(rs), rs)
	}
	byFile := map[string]FallEvalResult{}
	for _, r := range rs {
		byFile[r.File] = r
	}
	a, b, c, d := byFile["F01/A_R01_accel.csv"], byFile["F01/B_R01_accel.csv"], byFile["D01/C_R01_accel.csv"], byFile["misc/D_Fall_R01_accel.csv"]
	if a.Unit != "m/s^2" || b.Unit != "g" || a.Detections != 1 || b.Detections != 1 || *a.FirstS != *b.FirstS {
		t.Errorf("m/s^2 %+v and g %+v: want the same single detection", a, b)
	}
	if c.Error == "" || !strings.Contains(c.Error, "unknown units") || c.Detections != 0 {
		t.Errorf("mg recording: %+v, want a refusal naming the unit", c)
	}
	if !d.Fall || d.Detections != 1 {
		t.Errorf("a _Fall_ file outside an F folder: %+v, want a detected fall", d)
	}
	want := FallEvalSummary{Falls: 3, FallsDetected: 3, Activities: 0, Unreadable: 1}
	if sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	if s := sum.String(); !strings.HasPrefix(s, "falls 3/3 detected, activities with a false fall 0/0") {
		t.Errorf("summary line %q", s)
	}
	if _, err := EvalFalls(filepath.Join(dir, "missing"), 0, &bytes.Buffer{}); err == nil {
		t.Error("a missing directory gave no error")
	}
}

// TestEvalFallsShared runs the evaluation over the shared WEDA-FALL set
// with the shipped model. That model was trained on these very trials, so
// this is an in-sample figure that guards the product wiring (same
// detector, labels, windows); the held-out figures are device/fall's
// TestLOSO.
func TestEvalFallsShared(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testenv.RealData(t), "falls-weda-50hz")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("%s: %v (CI must have the shared data)", dir, err)
	}
	rs, sum := evalLines(t, dir, 0)
	t.Logf("%s", sum)
	if len(rs) != 491 || sum.Falls != 175 || sum.Activities != 316 || sum.Unreadable != 0 {
		t.Fatalf("%d lines, summary %+v: want 491 trials, 175 falls, 316 activities", len(rs), sum)
	}
	for _, r := range rs {
		if r.Fall && r.Window == nil {
			t.Errorf("%s: no window from fall_timestamps.csv", r.File)
		}
		if r.Detections > 0 && (r.FirstS == nil || r.DecidedS == nil || *r.DecidedS < *r.FirstS) {
			t.Errorf("%s: detection times %v %v", r.File, r.FirstS, r.DecidedS)
		}
	}
	if sum.FallsDetected < 163 || sum.False > 2 {
		t.Errorf("in-sample %s, want >= 163/175 and <= 2/316 (the shipped model's figures)", sum)
	}
}
