package fall

import (
	"fmt"
	"github.com/eldercare-iot/eldercare/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// realDataDir returns the shared real-data directory (testenv.RealData:
// $ELDERCARE_REALDATA, else ../shared/data next to the module); it skips
// the test when absent, and fails it under CI=true.
func realDataDir(t testing.TB) string {
	t.Helper()
	return testenv.RealData(t)
}

// missing skips, or fails under CI, when a data folder is absent.
func missing(t testing.TB, msg string) {
	t.Helper()
	if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
		t.Fatalf("%s (CI is set, so this is fatal); set ELDERCARE_REALDATA to the shared real-data directory", msg)
	}
	t.Skipf("%s; set ELDERCARE_REALDATA to the shared real-data directory", msg)
}

// TestWEDA replays the six trials of the older share falls-weda/ (falls
// F01-F03 of young volunteers; an elder's walking D01, sit-to-stand D04 and
// hand hitting a table D09) through the shipped detector. These six are part
// of the 491 trials the model was learned from, so this is a check of the
// earlier cases, not an evaluation (that is TestLOSO). The earlier
// threshold detector was tuned on these six and scored 6/6; so does the
// learned model (the first learned model missed F01/U01_R01, whose impact
// scored 0.74 under its 0.89 threshold; the current one scores it 0.95, threshold 0.808).
//
//	go test -run TestWEDA -v ./device/fall/
func TestWEDA(t *testing.T) {
	root := filepath.Join(realDataDir(t), "falls-weda")
	if _, err := os.Stat(root); err != nil {
		missing(t, fmt.Sprintf("%s missing (%v)", root, err))
	}
	trials, err := ListTrials(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(trials) != 6 {
		t.Fatalf("%d trials in %s, want 6", len(trials), root)
	}
	var table []string
	table = append(table, "| trial | samples | candidates (score) | detections | detection At (s) | window (s) | verdict |", "|---|---|---|---|---|---|---|")
	for _, tr := range trials {
		samples, unit, err := ReadTrial(tr.Path)
		if err != nil {
			t.Fatal(err)
		}
		if unit != MS2 {
			t.Errorf("%s: unit %s, want m/s^2", tr.Key, unit)
		}
		dets, cands := Run(DefaultConfig(), samples)
		var cs []string
		for _, c := range cands {
			cs = append(cs, fmt.Sprintf("%.2f s %.2f", c.At.Seconds(), c.Score))
		}
		at, win, verdict := "-", "-", "true negative"
		if len(dets) > 0 {
			at = fmt.Sprintf("%.2f", dets[0].At.Seconds())
		}
		if tr.Fall {
			if tr.Window == nil {
				t.Fatalf("%s: no window", tr.Key)
			}
			win = fmt.Sprintf("%.1f-%.1f", tr.Window[0], tr.Window[1])
			if _, ok := Detected(dets, *tr.Window); !ok || len(dets) != 1 {
				verdict = "FAIL"
				t.Errorf("%s: detections %+v, want exactly one in time for window %v", tr.Key, dets, *tr.Window)
			} else {
				verdict = "true positive (" + string(Classify(dets[0], *tr.Window)) + ")"
			}
		} else if len(dets) != 0 {
			verdict = "FAIL: false fall"
			t.Errorf("%s: %d detections, want 0: %+v", tr.Key, len(dets), dets)
		}
		if tr.Kind == "D09" {
			// The table hit must reach the model and be rejected by it,
			// not slip through by an accident of the recording.
			ok := false
			for _, c := range cands {
				if !c.Accepted && c.PeakSVM > 2*StandardGravity && strings.HasPrefix(c.Reason, "score") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: want the table hit scored and rejected by the model; candidates: %+v", tr.Key, cands)
			}
		}
		table = append(table, fmt.Sprintf("| %s | %d | %s | %d | %s | %s | %s |", tr.Key, len(samples), strings.Join(cs, "; "), len(dets), at, win, verdict))
	}
	t.Logf("falls-weda with DefaultConfig():\n%s", strings.Join(table, "\n"))
}
