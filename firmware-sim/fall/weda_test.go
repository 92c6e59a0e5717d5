package fall

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// realDataDir returns the shared real-data directory: $ELDERCARE_REALDATA
// if set, else ../shared/data next to the directory holding go.mod. It
// skips the test when the directory does not exist.
func realDataDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("ELDERCARE_REALDATA"); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("ELDERCARE_REALDATA=%q is not readable (%v); set ELDERCARE_REALDATA to the shared real-data directory", dir, err)
		}
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Skipf("cannot find the working directory (%v); set ELDERCARE_REALDATA to the shared real-data directory", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			data := filepath.Join(dir, "..", "shared", "data")
			if _, err := os.Stat(data); err != nil {
				t.Skipf("real data not found at %s; set ELDERCARE_REALDATA to the shared real-data directory", data)
			}
			return data
		}
		if filepath.Dir(dir) == dir {
			t.Skip("no go.mod above the working directory; set ELDERCARE_REALDATA to the shared real-data directory")
		}
	}
}

type wedaTrial struct {
	key  string // e.g. "F01/U01_R01"
	path string
	fall bool
}

func wedaTrials(t *testing.T) (string, []wedaTrial) {
	t.Helper()
	root := filepath.Join(realDataDir(t), "falls-weda")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("%s missing (%v); set ELDERCARE_REALDATA to the shared real-data directory", root, err)
	}
	var trials []wedaTrial
	for _, folder := range []string{"F01", "F02", "F03", "D01", "D04", "D09"} {
		files, err := filepath.Glob(filepath.Join(root, folder, "*_accel.csv"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no *_accel.csv in %s", filepath.Join(root, folder))
		}
		sort.Strings(files)
		for _, f := range files {
			if strings.HasSuffix(f, "_vertical_accel.csv") {
				continue // a derived, gravity-aligned copy, not raw device axes
			}
			key := folder + "/" + strings.TrimSuffix(filepath.Base(f), "_accel.csv")
			trials = append(trials, wedaTrial{key: key, path: f, fall: folder[0] == 'F'})
		}
	}
	return root, trials
}

func secs(d time.Duration) float64 { return d.Seconds() }

// TestWEDA runs the detector over every shared WEDA-FALL trial and logs the
// results table of docs/fall-detection.md:
//
//	go test -run TestWEDA -v ./firmware-sim/fall/
func TestWEDA(t *testing.T) {
	root, trials := wedaTrials(t)
	wf, err := os.Open(filepath.Join(root, "fall_timestamps.csv"))
	if err != nil {
		t.Fatal(err)
	}
	windows, err := ReadFallWindows(wf)
	wf.Close()
	if err != nil {
		t.Fatal(err)
	}

	var table []string
	table = append(table,
		"| trial | activity | samples | peak SVM (m/s²) | candidates (rejected: reason) | detections | detection At (s) | Δorientation (°) | hand-marked window (s) | verdict |",
		"|---|---|---|---|---|---|---|---|---|---|")
	for _, tr := range trials {
		f, err := os.Open(tr.path)
		if err != nil {
			t.Fatal(err)
		}
		samples, err := ReadAccelCSV(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tr.key, err)
		}
		peak, peakAt := 0.0, time.Duration(0)
		for _, s := range samples {
			if v := s.SVM(); v > peak {
				peak, peakAt = v, s.T
			}
		}
		d := NewDetector(DefaultConfig())
		var cands []Candidate
		d.SetTrace(func(c Candidate) { cands = append(cands, c) })
		var dets []Detection
		for _, s := range samples {
			if det, ok := d.Push(s); ok {
				dets = append(dets, det)
			}
		}
		dets = append(dets, d.Flush()...)

		var rej []string
		for _, c := range cands {
			if !c.Accepted {
				rej = append(rej, fmt.Sprintf("%.2f s, %.1f m/s²: %s", secs(c.At), c.PeakSVM, c.Reason))
			}
		}
		rejCol := fmt.Sprintf("%d (%d rejected)", len(cands), len(rej))
		for _, r := range rej {
			t.Logf("%s rejected candidate at %s", tr.key, r)
		}

		activity := map[byte]string{'F': "fall (young, onto mattress)", 'D': "daily activity (elderly)"}[tr.key[0]]
		at, dOri, win, verdict := "-", "-", "-", ""
		if len(dets) > 0 {
			at = fmt.Sprintf("%.3f", secs(dets[0].At))
			dOri = fmt.Sprintf("%.1f", dets[0].OrientationChangeDeg)
		}
		if tr.fall {
			w, ok := windows[tr.key]
			if !ok {
				t.Errorf("%s: no hand-marked window in fall_timestamps.csv", tr.key)
				continue
			}
			win = fmt.Sprintf("%.1f–%.1f", w[0], w[1])
			switch {
			case len(dets) != 1:
				verdict = fmt.Sprintf("FAIL: %d detections", len(dets))
				t.Errorf("%s: %d detections, want exactly 1: %+v", tr.key, len(dets), dets)
			case secs(dets[0].At) < w[0]-1 || secs(dets[0].At) > w[1]+1:
				verdict = "FAIL: outside window ±1 s"
				t.Errorf("%s: detection at %.3f s outside window %v ±1 s", tr.key, secs(dets[0].At), w)
			case secs(dets[0].At) < w[0] || secs(dets[0].At) > w[1]:
				verdict = "true positive (within 1 s of window)"
			default:
				verdict = "true positive (inside window)"
			}
		} else {
			if len(dets) != 0 {
				verdict = fmt.Sprintf("FAIL: %d false positive(s)", len(dets))
				t.Errorf("%s: %d detections, want 0: %+v", tr.key, len(dets), dets)
			} else {
				verdict = "true negative"
			}
		}
		if tr.key[:3] == "D09" {
			// The table hit must reach the posture phase and fail there,
			// not slip through by an accident of the recording.
			ok := false
			for _, c := range cands {
				if !c.Accepted && strings.HasPrefix(c.Reason, "no posture change") && c.PeakSVM > 5*StandardGravity {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: want the >5 g table hit rejected by the posture (orientation) phase; candidates: %+v", tr.key, cands)
			}
		}
		table = append(table, fmt.Sprintf("| %s | %s | %d | %.1f at %.2f s | %s | %d | %s | %s | %s | %s |",
			tr.key, activity, len(samples), peak, secs(peakAt), rejCol, len(dets), at, dOri, win, verdict))
	}
	t.Logf("results with DefaultConfig():\n%s", strings.Join(table, "\n"))
}

func runAll(cfg Config, samples []Sample) ([]Detection, []Candidate) {
	d := NewDetector(cfg)
	var cands []Candidate
	d.SetTrace(func(c Candidate) { cands = append(cands, c) })
	var dets []Detection
	for _, s := range samples {
		if det, ok := d.Push(s); ok {
			dets = append(dets, det)
		}
	}
	return append(dets, d.Flush()...), cands
}

// TestWEDAAblation logs how the detections change when a phase is altered,
// to show which phase does the work (docs/fall-detection.md, "Ablation").
// It asserts only that removing the posture phase makes D09 a false
// positive, i.e. that the posture phase, not an accident, rejects it.
func TestWEDAAblation(t *testing.T) {
	_, trials := wedaTrials(t)
	variants := []struct {
		name string
		mod  func(*Config)
	}{
		{"default", func(*Config) {}},
		{"impact 2 g (Kangas waist value)", func(c *Config) { c.ImpactThreshold = 2 * StandardGravity }},
		{"no start-of-fall phase (low-g threshold 3 g)", func(c *Config) { c.FreeFallThreshold = 2.99 * StandardGravity }},
		{"no posture phase (orientation ≥ 0.001°)", func(c *Config) { c.OrientationChangeDeg = 0.001 }},
		{"posture 60° (Kangas trunk tilt)", func(c *Config) { c.OrientationChangeDeg = 60 }},
	}
	rows := []string{"| variant | " + func() string {
		var k []string
		for _, tr := range trials {
			k = append(k, tr.key)
		}
		return strings.Join(k, " | ")
	}() + " |"}
	for _, v := range variants {
		cfg := DefaultConfig()
		v.mod(&cfg)
		row := "| " + v.name + " |"
		for _, tr := range trials {
			f, err := os.Open(tr.path)
			if err != nil {
				t.Fatal(err)
			}
			samples, err := ReadAccelCSV(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			dets, _ := runAll(cfg, samples)
			var at []string
			for _, d := range dets {
				at = append(at, fmt.Sprintf("%.2f", secs(d.At)))
			}
			row += fmt.Sprintf(" %d [%s] |", len(dets), strings.Join(at, " "))
			if strings.HasPrefix(v.name, "no posture") && tr.key[:3] == "D09" && len(dets) == 0 {
				t.Errorf("without the posture phase D09 should be a false positive; the posture phase is not what rejects it")
			}
		}
		rows = append(rows, row)
	}
	t.Logf("detections (count [impact times in s]) per variant:\n%s", strings.Join(rows, "\n"))
}
