package fall

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite model_trained.go from the shared WEDA-FALL set")

// Achieved leave-one-subject-out floors (issue 12's targets are >= 95 % of
// falls and <= 2 % of activities; see docs/fall-detection.md for the gap).
// The evaluation is deterministic, so these are the exact figures: a change
// that lowers them fails here.
const (
	floorFallsDetected     = 163 // of 175 at 50 Hz (93.1 %)
	floorFallsDetected20Hz = 160 // of 175 at 20 Hz (91.4 %)
	ceilActsFalse          = 5   // of 316 at 50 Hz (1.6 %)
	// ceilActsFalse20Hz was 4 with the earlier plain regression; the
	// chosen models trade one more false fall at 20 Hz (an activity of a
	// young participant) for 10 more falls, within the 2 % target.
	ceilActsFalse20Hz = 5 // of 316 at 20 Hz (1.6 %)
)

// skipTrainingUnderShort skips a test that trains models (the nested
// leave-one-subject-out: minutes of CPU on 2 cores under -race, well over
// make test-short's 30 s for the whole suite) under go test -short. make
// test runs it.
func skipTrainingUnderShort(t *testing.T) {
	t.Helper()
	if testing.Short() && !*update {
		t.Skip("-short: trains the fall models (minutes of CPU); make test runs it")
	}
}

// TestLOSO evaluates the method with each of the 13 participants held out
// in turn: the model and its threshold are learned from the other 12
// (the threshold by an inner leave-one-subject-out), and only the held-out
// participant's trials are scored. Models learn from the other
// participants' trials as recorded and resampled to 20 Hz. It prints the
// table of
// docs/fall-detection.md:
//
//	go test -run 'TestLOSO' -v ./device/fall/
func TestLOSO(t *testing.T) {
	skipTrainingUnderShort(t)
	tf := trialFeatures(t, 0)
	if len(tf) != 491 {
		t.Fatalf("%d trials, want 491 (175 falls, 316 activities)", len(tf))
	}
	s := summarize(loso(trainingFeatures(t), tf))
	t.Logf("leave-one-subject-out, 50 Hz:\n%s", s.table())
	t.Logf("variant chosen by each outer fold's inner leave-one-subject-out: %s", foldChoices(trainingFeatures(t)))
	if s.falls != 175 || s.acts != 316 || s.elderActs != 85 {
		t.Fatalf("counted %d falls, %d activities (%d elders'), want 175, 316, 85", s.falls, s.acts, s.elderActs)
	}
	if s.fallsDetected < floorFallsDetected {
		t.Errorf("falls detected %d/175, below the achieved floor %d", s.fallsDetected, floorFallsDetected)
	}
	if s.actsFalse > ceilActsFalse {
		t.Errorf("activities with a false fall %d/316, above the achieved ceiling %d", s.actsFalse, ceilActsFalse)
	}
	if s.elderFals != 0 {
		t.Errorf("%d of the elders' activities with a false fall, want 0", s.elderFals)
	}
	if pct(s.actsFalse, s.acts) > 2 {
		t.Errorf("activities with a false fall %.1f %%, issue 12's target is <= 2 %%", pct(s.actsFalse, s.acts))
	}
	t.Logf("diagnostic, not an evaluation: %s", oracleCurve(t, 0))
	if pct(s.fallsDetected, s.falls) < 95 || pct(s.actsFalse, s.acts) > 2 {
		t.Logf("GAP: issue 12 targets >= 95 %% of falls and <= 2 %% of activities; achieved %.1f %% and %.1f %%",
			pct(s.fallsDetected, s.falls), pct(s.actsFalse, s.acts))
	}
}

// TestLOSO20Hz repeats TestLOSO on a 20 Hz resampling of every trial
// (Resample: a slower sensor, peaks between samples are lost), with the
// same models (trained on the other participants): the sensitivity
// must stay within 5 points of the 50 Hz figure.
func TestLOSO20Hz(t *testing.T) {
	skipTrainingUnderShort(t)
	train := trainingFeatures(t)
	s50 := summarize(loso(train, trialFeatures(t, 0)))
	s20 := summarize(loso(train, trialFeatures(t, 20)))
	t.Logf("leave-one-subject-out, trials resampled to 20 Hz:\n%s", s20.table())
	t.Logf("diagnostic, not an evaluation: %s", oracleCurve(t, 20))
	d50, d20 := pct(s50.fallsDetected, s50.falls), pct(s20.fallsDetected, s20.falls)
	if d20 < d50-5 {
		t.Errorf("20 Hz sensitivity %.1f %% more than 5 points below 50 Hz %.1f %%", d20, d50)
	}
	if s20.fallsDetected < floorFallsDetected20Hz {
		t.Errorf("20 Hz: falls detected %d/175, below the achieved floor %d", s20.fallsDetected, floorFallsDetected20Hz)
	}
	if s20.actsFalse > ceilActsFalse20Hz {
		t.Errorf("20 Hz: activities with a false fall %d/316, above the achieved ceiling %d", s20.actsFalse, ceilActsFalse20Hz)
	}
	if s20.elderFals != 0 {
		t.Errorf("20 Hz: %d of the elders' activities with a false fall, want 0", s20.elderFals)
	}
	if pct(s20.actsFalse, s20.acts) > 2 {
		t.Errorf("20 Hz: activities with a false fall %.1f %%, issue 12's target is <= 2 %%", pct(s20.actsFalse, s20.acts))
	}
}

// TestTrainModel retrains the shipped model on all 13 participants (its
// threshold by leave-one-subject-out over them) and checks that
// model_trained.go is what that training gives. Rebuild it with
//
//	go test -run TestTrainModel ./device/fall/ -update
func TestTrainModel(t *testing.T) {
	skipTrainingUnderShort(t)
	m, name := trainModelNamed(trainingFeatures(t))
	src := modelSource(m, name)
	if *update {
		if err := os.WriteFile("model_trained.go", src, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote model_trained.go: variant %s, %d stumps, %d trees, threshold %.4f", name, len(m.Stumps), len(m.Trees), m.Threshold)
		return
	}
	cur, err := os.ReadFile("model_trained.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cur, src) {
		t.Fatalf("model_trained.go is not what training gives; rerun: go test -run TestTrainModel ./device/fall/ -update")
	}
}

// modelSource renders m as the Go source of model_trained.go.
func modelSource(m Model, variant string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `// Code generated by TestTrainModel (go test -run TestTrainModel ./device/fall/ -update); DO NOT EDIT.

package fall

// Trained is the shipped model: a logistic regression over the
// standardised Features plus, when the training chose them, boosted
// decision stumps or trees of depth 2 on top of its log-odds, learned from
// all 491 trials (13
// participants) of the shared WEDA-FALL 50 Hz set
// (../shared/data/falls-weda-50hz; Marques and Moreno, Sensors 2023,
// 23(3):1146), each as recorded and resampled to 20 Hz. A positive weight
// pushes towards a fall; a feature with weight 0, mean 0 and scale 1 is
// not used. The feature set, the number of stumps or trees (variant %s) and the
// threshold were chosen by leave-one-subject-out over the 13 participants
// (the threshold so that at most 1.5 %% of the activities would give a
// false fall). Its figures on participants it never saw are in
// docs/fall-detection.md.
var Trained = Model{
`, variant)
	row := func(name string, v [NumFeatures]float64) {
		fmt.Fprintf(&b, "\t%s: [NumFeatures]float64{\n", name)
		for i := range NumFeatures {
			fmt.Fprintf(&b, "\t\t%.6g, // %s\n", v[i], FeatureNames[i])
		}
		b.WriteString("\t},\n")
	}
	row("Mean", m.Mean)
	row("Scale", m.Scale)
	row("Weights", m.Weights)
	fmt.Fprintf(&b, "\tBias:      %.6g,\n\tThreshold: %.6g,\n", m.Bias, m.Threshold)
	if len(m.Stumps) > 0 {
		b.WriteString("\tStumps: []Stump{\n")
		for _, st := range m.Stumps {
			fmt.Fprintf(&b, "\t\t{F: %d, Split: %.6g, Left: %.6g, Right: %.6g}, // %s\n", st.F, st.Split, st.Left, st.Right, FeatureNames[st.F])
		}
		b.WriteString("\t},\n")
	}
	if len(m.Trees) > 0 {
		b.WriteString("\tTrees: []Tree{ // x[F] < Split ? Lo : Hi, each a stump: x[F] < Split ? Left : Right\n")
		for _, t := range m.Trees {
			st := func(s Stump) string {
				return fmt.Sprintf("Stump{F: %d, Split: %.6g, Left: %.6g, Right: %.6g}", s.F, s.Split, s.Left, s.Right)
			}
			fmt.Fprintf(&b, "\t\t{F: %d, Split: %.6g, Lo: %s, Hi: %s}, // %s; %s | %s\n", t.F, t.Split, st(t.Lo), st(t.Hi),
				FeatureNames[t.F], FeatureNames[t.Lo.F], FeatureNames[t.Hi.F])
		}
		b.WriteString("\t},\n")
	}
	b.WriteString("}\n")
	out, err := format.Source([]byte(b.String()))
	if err != nil {
		panic(err)
	}
	return out
}

// TestCandidateGate: the fixed candidate gate (CandidateThreshold) lets
// through an impact in time for every fall, at 50 and at 20 Hz, so what
// is missed is missed by the model (the doc comment of Config says so).
func TestCandidateGate(t *testing.T) {
	for _, hz := range []float64{0, 20} {
		for _, tr := range trialFeatures(t, hz) {
			if !tr.Fall {
				continue
			}
			ok := false
			for _, c := range tr.cands {
				if k := Classify(Detection{At: c.at, DecidedAt: c.decided}, *tr.Window); k == InWindow || k == After {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%v Hz (0: as recorded): %s has no impact candidate in time", hz, tr.Key)
			}
		}
	}
}

// oracleCurve tells how well the held-out scores separate falls from
// activities, apart from the threshold policy: every held-out trial gets
// its fold model's score minus its fold's threshold (for a fall, of its
// in-window candidates; for an activity, of all), and one common shift of
// all folds' thresholds is set on these held-out margins themselves so that
// k activities are above it. That uses the held-out trials to set the
// threshold, so it is not an evaluation: it bounds what a better threshold
// policy could give (docs/fall-detection.md, "why 95 % is not reached").
func oracleCurve(t *testing.T, hz float64) string {
	train := trainingFeatures(t)
	var falls, acts, elderActs []float64
	for _, s := range subjectsOf(train) {
		var tr []trialFeat
		for _, x := range train {
			if x.Subject != s {
				tr = append(tr, x)
			}
		}
		m := cachedModel(train, s, tr)
		for _, x := range trialFeatures(t, hz) {
			if x.Subject != s {
				continue
			}
			margin := trialScore(&m, x) - m.Threshold
			switch {
			case x.Fall:
				falls = append(falls, margin)
			case elders[x.Subject]:
				elderActs = append(elderActs, margin)
				acts = append(acts, margin)
			default:
				acts = append(acts, margin)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(acts)))
	elderMax := slices.Max(elderActs)
	var b strings.Builder
	fmt.Fprintf(&b, "at %v Hz (0: as recorded), a threshold shift set on the held-out scores would find, with k activities above it:", hz)
	for k := 4; k <= 8 && k < len(acts); k++ {
		n := 0
		for _, f := range falls {
			if f > acts[k] {
				n++
			}
		}
		note := ""
		if acts[k] < elderMax {
			note = " (an elder's activity among them)"
		}
		fmt.Fprintf(&b, " k=%d (shift %+.3f): %d/%d falls%s;", k, acts[k], n, len(falls), note)
	}
	return b.String()
}
