package fall

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Trial is one accelerometer recording of an evaluation directory.
type Trial struct {
	// Key is the path relative to the directory without the "_accel.csv"
	// suffix, with forward slashes: "F01/U01_R01", the key of
	// fall_timestamps.csv.
	Key string
	// Path is the file's path.
	Path string
	// Kind is the name of the folder holding the file ("F01", "D09").
	Kind string
	// Subject is the participant, the file name up to the first "_"
	// ("U01").
	Subject string
	// Fall: the folder name starts with "F" or the file name contains
	// "_Fall_"; every other trial is a daily activity.
	Fall bool
	// Window is the hand-marked fall window [start, end] in s from
	// fall_timestamps.csv, nil when there is none.
	Window *[2]float64
}

// ListTrials finds every *_accel.csv under dir (recursively, sorted by
// key), skipping WEDA-FALL's derived *_vertical_accel.csv copies (gravity
// aligned, not the device axes), and attaches the windows of
// dir/fall_timestamps.csv when that file exists. It fails when dir cannot
// be read or fall_timestamps.csv is malformed.
func ListTrials(dir string) ([]Trial, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("fall: trials: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("fall: trials: %s is not a directory", dir)
	}
	var windows map[string][2]float64
	if f, err := os.Open(filepath.Join(dir, "fall_timestamps.csv")); err == nil {
		windows, err = ReadFallWindows(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fall: %s: %w", filepath.Join(dir, "fall_timestamps.csv"), err)
		}
	}
	var out []Trial
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := de.Name()
		if de.IsDir() || !strings.HasSuffix(name, "_accel.csv") || strings.HasSuffix(name, "_vertical_accel.csv") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		t := Trial{
			Key:  strings.TrimSuffix(filepath.ToSlash(rel), "_accel.csv"),
			Path: p,
			Kind: filepath.Base(filepath.Dir(p)),
		}
		if t.Kind == "." || filepath.Dir(rel) == "." {
			t.Kind = ""
		}
		t.Subject, _, _ = strings.Cut(name, "_")
		t.Fall = strings.HasPrefix(t.Kind, "F") || strings.Contains(name, "_Fall_")
		if w, ok := windows[t.Key]; ok {
			t.Window = &w
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fall: trials in %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// ReadTrial reads a trial's recording and normalises its units (see
// NormalizeUnits). Errors name the file.
func ReadTrial(path string) ([]Sample, Unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("fall: %w", err)
	}
	defer f.Close()
	s, err := ReadAccelCSV(f)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	s, u, err := NormalizeUnits(s)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return s, u, nil
}

// Run feeds samples through a new Detector with cfg and returns the falls
// it reports (Flush included) and every candidate it decided.
func Run(cfg Config, samples []Sample) ([]Detection, []Candidate) {
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

// Timeliness classifies a detection against a hand-marked fall window
// [start, end] s.
type Timeliness string

// Timeliness values. A fall counts as detected when a detection is InWindow
// or After.
const (
	// Before: the impact is more than Tolerance before the window starts.
	Before Timeliness = "before"
	// InWindow: the impact is within the window (± Tolerance).
	InWindow Timeliness = "in"
	// After: the impact is after the window, but the alert is decided
	// within LateLimit of the window's end.
	After Timeliness = "after"
	// Late: decided more than LateLimit after the window's end.
	Late Timeliness = "late"
)

// Tolerance on the hand-marked windows (the WEDA-FALL authors note they
// may contain mistakes), and the latest acceptable alert after a window's
// end (issue 12: "detected within 3 s of the end of the marked window").
const (
	Tolerance = 500 * time.Millisecond
	LateLimit = 3 * time.Second
)

// Classify returns the Timeliness of det against window w (s).
func Classify(det Detection, w [2]float64) Timeliness {
	start := time.Duration(w[0] * float64(time.Second))
	end := time.Duration(w[1] * float64(time.Second))
	switch {
	case det.At < start-Tolerance:
		return Before
	case det.DecidedAt > end+LateLimit:
		return Late
	case det.At <= end+Tolerance:
		return InWindow
	default:
		return After
	}
}

// Detected reports whether any of dets detects the fall of window w in
// time (InWindow or After), and the first that does.
func Detected(dets []Detection, w [2]float64) (Detection, bool) {
	for _, d := range dets {
		if c := Classify(d, w); c == InWindow || c == After {
			return d, true
		}
	}
	return Detection{}, false
}
