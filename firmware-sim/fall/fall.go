// Package fall implements a streaming, multi-phase threshold fall detector
// for a wrist-worn tri-axial accelerometer, and readers for the WEDA-FALL
// recordings used to evaluate it.
//
// # Algorithm
//
// The detector follows the phase structure of the low-complexity algorithms
// of
//
//	M. Kangas, A. Konttila, P. Lindgren, I. Winblad, T. Jämsä,
//	"Comparison of low-complexity fall detection algorithms for body
//	attached accelerometers", Gait & Posture 28(2):285–291, 2008,
//	doi:10.1016/j.gaitpost.2008.01.003
//
// specifically its algorithm with the phases "start of fall" + "impact" +
// "posture after the fall" (the variant without the velocity phase). All
// phases work on the signal vector magnitude
// SVM = sqrt(x² + y² + z²) of the raw acceleration including gravity
// (Kangas et al. call it SVMtot; no high-pass filtering, which they found
// the most sensitive choice):
//
//  1. Start of fall (pre-impact low-g): SVM < 0.6 g (5.88 m/s²) — Kangas 2008.
//  2. Impact: SVM ≥ 3 g (29.4 m/s²) no later than 1 s after a low-g sample —
//     the 1 s time frame is Kangas 2008's; the 3 g level is a wrist
//     adaptation of their 2 g waist threshold (see [DefaultConfig]).
//  3. Posture after the fall: Kangas 2008 average the trunk's vertical
//     acceleration over 0.4 s starting 2 s after the impact and require
//     ≤ 0.5 g (the trunk tilted ≥ 60° from upright, i.e. lying). A wrist's
//     orientation says nothing about lying, so this package keeps the
//     timing (0.4 s window, 2 s after impact) and replaces the test by the
//     change of the gravity direction seen by the wrist: the angle between
//     the mean acceleration vector of a 1 s reference window that ends 1 s
//     (the impact time frame) before the impact and the mean vector of the
//     posture window must be ≥ 45°. A hand striking a table (WEDA-FALL D09)
//     has a low-g swing and a > 5 g spike but the forearm returns to its
//     previous attitude, so this phase rejects it.
//
// A confirmed fall is reported once; further impacts within the refractory
// period (10 s) belong to the same fall and are not reported again.
//
// Kangas et al. concluded that the wrist was not a suitable site for these
// simple algorithms; this package exists because a watch is what an elderly
// person will actually wear. See docs/fall-detection.md for the measured
// results and the limits of that evaluation.
package fall

import (
	"fmt"
	"math"
	"time"
)

// StandardGravity is 1 g in m/s² (ISO 80000-3).
const StandardGravity = 9.80665

// Sample is one accelerometer reading.
type Sample struct {
	// T is the time since the start of the recording.
	T time.Duration
	// X, Y, Z are the acceleration along the device axes in m/s²,
	// including gravity (a device at rest reads a vector of length ~9.81).
	X, Y, Z float64
}

// SVM returns the signal vector magnitude sqrt(X²+Y²+Z²) in m/s².
func (s Sample) SVM() float64 { return math.Sqrt(s.X*s.X + s.Y*s.Y + s.Z*s.Z) }

// Detection describes one detected fall.
type Detection struct {
	// At is the impact time: the time of the largest SVM within
	// Config.PeakWindow after SVM first reached Config.ImpactThreshold.
	At time.Duration
	// PeakSVM is the SVM at At, in m/s².
	PeakSVM float64
	// LowGAt is the time of the last low-g (start of fall) sample before
	// the impact.
	LowGAt time.Duration
	// MinSVM is the smallest SVM, in m/s², within Config.ImpactWindow
	// before the impact (the depth of the low-g phase).
	MinSVM float64
	// OrientationChangeDeg is the angle, in degrees in [0, 180], between
	// the mean acceleration vector of the pre-fall reference window and
	// that of the posture window.
	OrientationChangeDeg float64
	// ReferenceSamples and PostureSamples count the samples averaged in
	// the two windows.
	ReferenceSamples, PostureSamples int
	// DecidedAt is the time of the sample at which the posture phase was
	// evaluated (about At + PostureDelay + PostureWindow); for decisions
	// made by Flush it is the time of the last sample pushed.
	DecidedAt time.Duration
}

// Candidate is an impact that the detector evaluated, accepted or not.
// It is passed to the function given to SetTrace, for diagnostics.
type Candidate struct {
	Detection
	// Accepted reports whether the candidate became a reported fall.
	Accepted bool
	// Reason says, for a rejected candidate, which phase failed.
	Reason string
}

// Config holds the thresholds of the detector. Accelerations are in m/s²,
// angles in degrees. Use DefaultConfig and change single fields.
type Config struct {
	// FreeFallThreshold: SVM below it marks the start of a fall
	// (pre-impact low-g phase), m/s².
	FreeFallThreshold float64
	// ImpactThreshold: SVM at or above it is an impact, m/s².
	ImpactThreshold float64
	// ImpactWindow: an impact counts only if a low-g sample occurred at
	// most this long before it.
	ImpactWindow time.Duration
	// PeakWindow: after SVM first reaches ImpactThreshold, the peak (and
	// the impact time) is searched for this long.
	PeakWindow time.Duration
	// ReferenceWindow: length of the pre-fall reference window, which
	// ends ImpactWindow before the first impact sample.
	ReferenceWindow time.Duration
	// PostureDelay: the posture window starts this long after the impact.
	PostureDelay time.Duration
	// PostureWindow: length of the posture window.
	PostureWindow time.Duration
	// OrientationChangeDeg: minimum angle between the reference and the
	// posture gravity vectors for a fall, degrees.
	OrientationChangeDeg float64
	// MinWindowSamples: minimum number of samples in the reference and in
	// the posture window; fewer (a sensor gap, or the start of a
	// recording) means the phase cannot be evaluated and the candidate is
	// rejected.
	MinWindowSamples int
	// Refractory: after a reported fall, impacts until At+Refractory are
	// part of the same fall and are not reported.
	Refractory time.Duration
}

// DefaultConfig returns the thresholds used and evaluated in this package.
//
//   - FreeFallThreshold 0.6 g = 5.884 m/s²: "start of fall", Kangas et al.
//     2008 (Gait & Posture 28(2)), unchanged.
//   - ImpactThreshold 3 g = 29.42 m/s²: Kangas et al. 2008 use 2 g for the
//     waist; the wrist adds arm swing to body motion, so wrist peaks in
//     daily activities are higher (the 85-year-old's sit-to-stand in
//     WEDA-FALL D04 reaches 2.1 g at the wrist). Adapted for the wrist.
//   - ImpactWindow 1 s: time frame for the impact after the start of the
//     fall, Kangas et al. 2008.
//   - PeakWindow 0.5 s: ours; only sets which sample is reported as the
//     impact, not whether a fall is detected.
//   - ReferenceWindow 1 s: ours; the pre-fall posture is averaged over the
//     second before the impact time frame.
//   - PostureDelay 2 s and PostureWindow 0.4 s: Kangas et al. 2008
//     (posture averaged over 0.4 s, 2 s after the impact).
//   - OrientationChangeDeg 45°: ours, replacing Kangas's trunk posture
//     test (vertical ≤ 0.5 g, i.e. tilt ≥ 60°) that has no meaning at the
//     wrist. 45° is below 60° because a forearm may stay partly in its
//     pre-fall attitude after a fall; it was chosen with knowledge of the
//     WEDA-FALL trials (falls 65°–113°, table hit 22°), so those trials
//     are not an independent validation of it.
//   - MinWindowSamples 3: ours (at ~40–50 Hz a 0.4 s window holds ~15).
//   - Refractory 10 s: ours; longer than the post-fall struggle seen in
//     the falls (secondary impacts up to ~1.2 s after the first).
func DefaultConfig() Config {
	return Config{
		FreeFallThreshold:    0.6 * StandardGravity,
		ImpactThreshold:      3 * StandardGravity,
		ImpactWindow:         time.Second,
		PeakWindow:           500 * time.Millisecond,
		ReferenceWindow:      time.Second,
		PostureDelay:         2 * time.Second,
		PostureWindow:        400 * time.Millisecond,
		OrientationChangeDeg: 45,
		MinWindowSamples:     3,
		Refractory:           10 * time.Second,
	}
}

// Validate reports the first field of c that is out of range: thresholds
// must be finite with 0 < FreeFallThreshold < ImpactThreshold, durations
// positive (PeakWindow ≤ PostureDelay), 0 < OrientationChangeDeg ≤ 180,
// MinWindowSamples ≥ 1, Refractory ≥ 0.
func (c Config) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(c.FreeFallThreshold) || c.FreeFallThreshold <= 0:
		return fmt.Errorf("fall: FreeFallThreshold %v m/s^2 must be finite and > 0", c.FreeFallThreshold)
	case !finite(c.ImpactThreshold) || c.ImpactThreshold <= c.FreeFallThreshold:
		return fmt.Errorf("fall: ImpactThreshold %v m/s^2 must be finite and > FreeFallThreshold %v", c.ImpactThreshold, c.FreeFallThreshold)
	case c.ImpactWindow <= 0:
		return fmt.Errorf("fall: ImpactWindow %v must be > 0", c.ImpactWindow)
	case c.PeakWindow <= 0 || c.PeakWindow > c.PostureDelay:
		return fmt.Errorf("fall: PeakWindow %v must be > 0 and <= PostureDelay %v", c.PeakWindow, c.PostureDelay)
	case c.ReferenceWindow <= 0:
		return fmt.Errorf("fall: ReferenceWindow %v must be > 0", c.ReferenceWindow)
	case c.PostureWindow <= 0:
		return fmt.Errorf("fall: PostureWindow %v must be > 0", c.PostureWindow)
	case !finite(c.OrientationChangeDeg) || c.OrientationChangeDeg <= 0 || c.OrientationChangeDeg > 180:
		return fmt.Errorf("fall: OrientationChangeDeg %v must be in (0, 180]", c.OrientationChangeDeg)
	case c.MinWindowSamples < 1:
		return fmt.Errorf("fall: MinWindowSamples %d must be >= 1", c.MinWindowSamples)
	case c.Refractory < 0:
		return fmt.Errorf("fall: Refractory %v must be >= 0", c.Refractory)
	}
	return nil
}

type entry struct {
	t       time.Duration
	x, y, z float64
	svm     float64
}

type candidate struct {
	first    time.Duration // first sample >= ImpactThreshold
	det      Detection
	ref      [3]float64 // mean of the reference window
	post     [3]float64 // running sum of the posture window
	postN    int
	rejected string // set when rejected at creation
}

// Detector is a streaming fall detector. Feed it samples in time order with
// Push. It keeps about ImpactWindow+ReferenceWindow of samples and a few
// pending candidates, so memory is bounded. A Detector is not safe for
// concurrent use.
type Detector struct {
	cfg Config

	buf  []entry // history, oldest first, from index head
	head int

	started   bool
	firstT    time.Duration
	lastT     time.Duration
	haveLowG  bool
	lowGAt    time.Duration
	pending   []candidate
	lastFall  time.Duration
	haveFall  bool
	lastSpike time.Duration // last impact-level sample, for tracing rejections once per cluster
	haveSpike bool
	dropped   int

	trace func(Candidate)
}

// NewDetector returns a Detector using cfg. It panics if cfg.Validate
// reports an error: a bad configuration is a programming error.
func NewDetector(cfg Config) *Detector {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Detector{cfg: cfg, buf: make([]entry, 0, 256)}
}

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// SetTrace makes the detector call fn with every evaluated candidate impact,
// accepted or rejected (nil disables tracing). For diagnostics and tests.
func (d *Detector) SetTrace(fn func(Candidate)) { d.trace = fn }

// Dropped returns how many samples Push ignored: non-finite values or a
// time earlier than the previous sample. Samples with equal times are
// accepted.
func (d *Detector) Dropped() int { return d.dropped }

// Push feeds one sample and returns a detection when a fall is confirmed,
// which happens at the first sample at or after At+PostureDelay+PostureWindow
// (about 2.4 s after the impact with the defaults). A fall is reported at
// most once: impacts within Config.Refractory after a reported one are
// ignored. Samples with a NaN or infinite value, or with T before the
// previous sample's T, are skipped (see Dropped).
func (d *Detector) Push(s Sample) (Detection, bool) {
	if !finite3(s.X, s.Y, s.Z) || (d.started && s.T < d.lastT) {
		d.dropped++
		return Detection{}, false
	}
	if !d.started {
		d.started, d.firstT = true, s.T
	}
	d.lastT = s.T
	e := entry{t: s.T, x: s.X, y: s.Y, z: s.Z, svm: s.SVM()}

	// Advance pending candidates; decide those whose posture window ended.
	var out Detection
	found := false
	keep := d.pending[:0]
	for i := range d.pending {
		c := &d.pending[i]
		if !found && e.t >= c.det.At+d.cfg.PostureDelay+d.cfg.PostureWindow {
			if det, ok := d.decide(c, e.t); ok {
				out, found = det, true
			}
			continue
		}
		if e.t <= c.first+d.cfg.PeakWindow && e.svm > c.det.PeakSVM {
			c.det.PeakSVM, c.det.At = e.svm, e.t
		}
		if e.t >= c.det.At+d.cfg.PostureDelay && e.t < c.det.At+d.cfg.PostureDelay+d.cfg.PostureWindow {
			c.post[0] += e.x
			c.post[1] += e.y
			c.post[2] += e.z
			c.postN++
		}
		keep = append(keep, *c)
	}
	d.pending = keep
	if found {
		// Pending impacts inside the refractory period belong to this fall.
		keep = d.pending[:0]
		for i := range d.pending {
			c := &d.pending[i]
			if c.first >= out.At+d.cfg.Refractory {
				keep = append(keep, *c)
				continue
			}
			d.emit(c, false, "inside the refractory period of a reported fall")
		}
		d.pending = keep
	}

	if e.svm >= d.cfg.ImpactThreshold {
		d.maybeStart(e)
	}
	if e.svm < d.cfg.FreeFallThreshold {
		d.haveLowG, d.lowGAt = true, e.t
	}
	d.appendHistory(e)
	return out, found
}

// Flush decides every pending candidate with the samples seen so far (for
// example at the end of a recording, when a posture window is cut short)
// and returns the falls found, in time order, honouring the refractory
// period. The Detector stays usable.
func (d *Detector) Flush() []Detection {
	var dets []Detection
	for i := range d.pending {
		c := &d.pending[i]
		if d.haveFall && c.first < d.lastFall+d.cfg.Refractory {
			d.emit(c, false, "inside the refractory period of a reported fall")
			continue
		}
		if det, ok := d.decide(c, d.lastT); ok {
			dets = append(dets, det)
		}
	}
	d.pending = d.pending[:0]
	return dets
}

// maybeStart opens a candidate for an impact-level sample e if the
// start-of-fall phase precedes it.
func (d *Detector) maybeStart(e entry) {
	spikeCont := d.haveSpike && e.t-d.lastSpike <= d.cfg.PeakWindow
	d.haveSpike, d.lastSpike = true, e.t
	for i := range d.pending {
		if e.t <= d.pending[i].first+d.cfg.PeakWindow {
			return // part of an impact already being evaluated
		}
	}
	if d.haveFall && e.t < d.lastFall+d.cfg.Refractory {
		return
	}
	c := candidate{first: e.t, det: Detection{At: e.t, PeakSVM: e.svm, MinSVM: math.Inf(1)}}
	if !d.haveLowG || e.t-d.lowGAt > d.cfg.ImpactWindow {
		if !spikeCont {
			c.det.MinSVM = d.minSVM(e.t)
			d.emit(&c, false, fmt.Sprintf("no start-of-fall phase: no SVM < %.2f m/s^2 within %v before the impact", d.cfg.FreeFallThreshold, d.cfg.ImpactWindow))
		}
		return
	}
	c.det.LowGAt = d.lowGAt
	c.det.MinSVM = d.minSVM(e.t)
	refStart := e.t - d.cfg.ImpactWindow - d.cfg.ReferenceWindow
	refEnd := e.t - d.cfg.ImpactWindow
	var n int
	for _, h := range d.buf[d.head:] {
		if h.t >= refStart && h.t < refEnd {
			c.ref[0] += h.x
			c.ref[1] += h.y
			c.ref[2] += h.z
			n++
		}
	}
	c.det.ReferenceSamples = n
	if d.firstT > refStart || n < d.cfg.MinWindowSamples {
		c.rejected = fmt.Sprintf("pre-fall reference window [%v, %v) not covered: %d samples, recording starts at %v", refStart, refEnd, n, d.firstT)
	} else {
		for k := range c.ref {
			c.ref[k] /= float64(n)
		}
	}
	d.pending = append(d.pending, c)
}

// minSVM is the smallest SVM in the history within ImpactWindow before t.
func (d *Detector) minSVM(t time.Duration) float64 {
	m := math.Inf(1)
	for _, h := range d.buf[d.head:] {
		if h.t >= t-d.cfg.ImpactWindow && h.svm < m {
			m = h.svm
		}
	}
	return m
}

// decide evaluates the posture phase of c at time now.
func (d *Detector) decide(c *candidate, now time.Duration) (Detection, bool) {
	c.det.DecidedAt = now
	c.det.PostureSamples = c.postN
	if c.rejected != "" {
		d.emit(c, false, c.rejected)
		return Detection{}, false
	}
	if c.postN < d.cfg.MinWindowSamples {
		d.emit(c, false, fmt.Sprintf("posture window has %d samples, need %d", c.postN, d.cfg.MinWindowSamples))
		return Detection{}, false
	}
	n := float64(c.postN)
	post := [3]float64{c.post[0] / n, c.post[1] / n, c.post[2] / n}
	c.det.OrientationChangeDeg = angleDeg(c.ref, post)
	if math.IsNaN(c.det.OrientationChangeDeg) {
		d.emit(c, false, "degenerate (zero) mean acceleration vector")
		return Detection{}, false
	}
	if c.det.OrientationChangeDeg < d.cfg.OrientationChangeDeg {
		d.emit(c, false, fmt.Sprintf("no posture change: %.1f° < %.1f°", c.det.OrientationChangeDeg, d.cfg.OrientationChangeDeg))
		return Detection{}, false
	}
	if d.haveFall && c.first < d.lastFall+d.cfg.Refractory {
		d.emit(c, false, "inside the refractory period of a reported fall")
		return Detection{}, false
	}
	d.haveFall, d.lastFall = true, c.det.At
	d.emit(c, true, "")
	return c.det, true
}

func (d *Detector) emit(c *candidate, ok bool, reason string) {
	if d.trace != nil {
		d.trace(Candidate{Detection: c.det, Accepted: ok, Reason: reason})
	}
}

// appendHistory stores e and forgets samples older than needed for the
// low-g and reference windows of a future impact.
func (d *Detector) appendHistory(e entry) {
	keep := d.cfg.ImpactWindow + d.cfg.ReferenceWindow
	for d.head < len(d.buf) && d.buf[d.head].t < e.t-keep {
		d.head++
	}
	if d.head > 0 && d.head >= len(d.buf)/2 && len(d.buf) == cap(d.buf) {
		n := copy(d.buf, d.buf[d.head:])
		d.buf = d.buf[:n]
		d.head = 0
	}
	d.buf = append(d.buf, e)
}

func finite3(a, b, c float64) bool {
	s := a + b + c // NaN or ±Inf propagate (Inf-Inf is NaN)
	return !math.IsNaN(s) && !math.IsInf(s, 0)
}

// angleDeg returns the angle between a and b in degrees, NaN if either is
// (numerically) zero.
func angleDeg(a, b [3]float64) float64 {
	na := math.Sqrt(a[0]*a[0] + a[1]*a[1] + a[2]*a[2])
	nb := math.Sqrt(b[0]*b[0] + b[1]*b[1] + b[2]*b[2])
	if na < 1e-9 || nb < 1e-9 {
		return math.NaN()
	}
	cos := (a[0]*b[0] + a[1]*b[1] + a[2]*b[2]) / (na * nb)
	cos = math.Max(-1, math.Min(1, cos))
	return math.Acos(cos) * 180 / math.Pi
}
