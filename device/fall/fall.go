// Package fall is the wrist fall detector of the product: a streaming
// detector for a wrist-worn tri-axial accelerometer that a wristband's
// firmware or the edge gateway (device/gateway's accel source) runs on the
// raw acceleration stream, and that the simulator (firmware-sim) replays
// recordings through. It imports only the standard library.
//
// # Method
//
// The design follows the wrist studies on WEDA-FALL (J. Marques, P. Moreno,
// "Online Fall Detection Using Wrist Devices", Sensors 23(3):1146, 2023) and
// the cross-dataset study of wrist fall detectors (Sensors 24(5):1679, 2024),
// which found that thresholds tuned on one data set give over-optimistic
// rates and many false alarms elsewhere. So instead of a chain of
// hand-set thresholds (start of fall, impact, posture: Kangas et al., Gait
// & Posture 28(2), 2008, which this package used before) it uses:
//
//  1. Regular grids: every input (20 to 50 Hz, regular or in bursts
//     stamped on arrival) is linearly interpolated in time onto a 50 Hz
//     grid, then reduced to the mean acceleration vector of each 50 ms bin
//     (a 20 Hz grid). Features are thus the same at 20 and 50 Hz, and the
//     work per second is bounded.
//  2. Impact candidates: a grid magnitude |a| >= CandidateThreshold
//     (1.6 g) that is the largest within 1 s.
//  3. Features of a window from 3 s before to 3.7 s after the peak (see
//     [Features]): peak magnitude, pre-impact dip (the free-fall phase,
//     used but not required), activity before the impact, stillness after
//     it, the change of the gravity direction seen by the wrist (over 3 s
//     and across the impact), the rotation and vertical velocity of the
//     descent, the impact's width, jerk and energy, and how many other
//     peaks surround it (periodic peaks are jogging, not a fall).
//  4. A logistic regression over the standardised features with boosted
//     decision trees of depth 2 added to its log-odds, learned from WEDA-FALL at 50
//     and 20 Hz (model_trained.go, rebuilt by TestTrainModel; feature set,
//     number of trees and threshold chosen with participants held out); a
//     fall is reported when its probability reaches the threshold, 3.7 s
//     after the impact.
//
// docs/fall-detection.md gives the leave-one-subject-out figures.
package fall

import (
	"fmt"
	"math"
	"time"
)

// StandardGravity is 1 g in m/s² (ISO 80000-3).
const StandardGravity = 9.80665

// GridPeriod is the period of the detector's internal grid (20 Hz).
const GridPeriod = 50 * time.Millisecond

// InputPeriod is the regular 50 Hz grid the input is first interpolated
// onto: wristbands often deliver samples in bursts stamped on arrival
// (WEDA-FALL's Fitbit: a few samples 1-3 ms apart, then 80-170 ms of
// nothing), and linear interpolation in time spreads them back out.
const InputPeriod = 20 * time.Millisecond

// Windows around an impact peak, in grid bins (50 ms). They are fixed by
// design (the post-impact phase of Kangas et al. 2008 starts 2 s after the
// impact; WEDA-FALL falls settle within 1-2 s), not learned.
const (
	clusterBins = 20 // a candidate is the largest peak within 1 s
	preFrom     = 60 // pre-impact reference: [p-3 s, p-1 s)
	preTo       = 20
	dipBins     = 20 // pre-impact dip: [p-1 s, p)
	impactBins  = 10 // impact: [p-0.5 s, p+0.5 s]
	postFrom    = 20 // post-impact: [p+1 s, p+3 s]
	postTo      = 60
	// shortFrom: the short attitude windows [p-1.5 s, p-0.5 s) and
	// (p+0.5 s, p+1.5 s]; the descent's rotation path ends rotEndBins
	// before the peak (the impact itself shakes the direction).
	shortFrom  = 30
	rotEndBins = 5
	// lateFrom, decideBins: the late post-impact window [p+2 s, p+3.7 s]
	// (lying still); the candidate is decided when it is complete, 3.7 s
	// after the impact. 3.7 s: the hand-marked windows of WEDA-FALL end at
	// least 0.93 s after their strongest impact, so a decision at 3.7 s
	// stays within 3 s of the window's end (LateLimit).
	lateFrom   = 40
	decideBins = 74
	ringSize   = 256 // > preFrom + decideBins + clusterBins
	// minPostBins: Flush decides a candidate cut by the end of a stream
	// only with at least 0.5 s of its post-impact window.
	minPostBins = 10
)

// Sample is one accelerometer reading.
type Sample struct {
	// T is the time since the start of the recording or stream.
	T time.Duration
	// X, Y, Z are the acceleration along the device axes in m/s²,
	// including gravity (a device at rest reads a vector of length ~9.81).
	X, Y, Z float64
}

// SVM returns the signal vector magnitude sqrt(X²+Y²+Z²) in m/s².
func (s Sample) SVM() float64 { return math.Sqrt(s.X*s.X + s.Y*s.Y + s.Z*s.Z) }

// Detection describes one candidate impact that the model scored.
type Detection struct {
	// At is the impact time: the centre of the grid bin with the peak
	// magnitude.
	At time.Duration
	// PeakSVM is the peak grid magnitude in m/s² (a 50 ms mean, so lower
	// than the largest raw sample).
	PeakSVM float64
	// RawPeakSVM is the largest magnitude of a single input sample within
	// 0.5 s of the peak, m/s² (what a device reports as the impact).
	RawPeakSVM float64
	// Score is the model's fall probability in [0, 1].
	Score float64
	// Features are the model's inputs.
	Features Features
	// DecidedAt is the time of the sample at which the candidate was
	// decided (about At + 3 s); for decisions made by Flush, the time of
	// the last sample pushed.
	DecidedAt time.Duration
}

// Candidate is an impact that the detector evaluated, accepted or not; it
// is passed to the function given to SetTrace.
type Candidate struct {
	Detection
	// Accepted reports whether the candidate became a reported fall.
	Accepted bool
	// Reason says why a candidate was rejected.
	Reason string
}

// Config configures a Detector. Use DefaultConfig and change single fields.
type Config struct {
	// CandidateThreshold: a grid magnitude at or above it (m/s²) is an
	// impact candidate. 1.6 g: below the grid peak of every WEDA-FALL fall
	// at 20 and 50 Hz, so the model, not this gate, decides.
	CandidateThreshold float64
	// Refractory: candidates within this time after a reported fall belong
	// to it and are not reported again.
	Refractory time.Duration
	// MaxGap: a gap in the stream longer than this starts a new segment
	// (pending candidates are decided with what was received, the history
	// is dropped); shorter gaps are interpolated.
	MaxGap time.Duration
	// Model scores candidates; nil means Trained.
	Model *Model
}

// DefaultConfig returns the configuration evaluated in docs/fall-detection.md.
func DefaultConfig() Config {
	return Config{
		CandidateThreshold: 1.6 * StandardGravity,
		Refractory:         10 * time.Second,
		MaxGap:             time.Second,
	}
}

// Validate reports the first field of c that is out of range.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.CandidateThreshold) || c.CandidateThreshold <= StandardGravity || c.CandidateThreshold > 20*StandardGravity:
		return fmt.Errorf("fall: CandidateThreshold %v m/s^2 must be in (1 g, 20 g]", c.CandidateThreshold)
	case c.Refractory < 0:
		return fmt.Errorf("fall: Refractory %v must be >= 0", c.Refractory)
	case c.MaxGap < 2*GridPeriod:
		return fmt.Errorf("fall: MaxGap %v must be >= %v", c.MaxGap, 2*GridPeriod)
	}
	if c.Model != nil {
		return c.Model.Validate()
	}
	return nil
}

type bin struct{ x, y, z, svm float64 }

// rawPeak is the largest raw magnitude seen in grid bin k.
type rawPeak struct {
	k int64
	v float64
}

// Detector is a streaming fall detector. Feed it samples in time order with
// Push. Its memory is fixed (rings of 256 grid bins and their raw peaks: 13.4 KiB in all, plus the
// pending candidates); it allocates nothing per sample. It is not safe for
// concurrent use.
type Detector struct {
	cfg   Config
	model *Model

	ring [ringSize]bin

	started    bool
	lastT      time.Duration
	prev       Sample        // last raw sample, for interpolation
	next       time.Duration // next InputPeriod grid time to emit
	raw        [ringSize]rawPeak
	curK       int64 // bin being accumulated
	sx, sy, sz float64
	n          int
	haveLast   bool
	lastK      int64 // last closed bin
	firstK     int64 // first bin of the current segment

	clusterOpen bool
	clusterK    int64
	pending     []int64

	haveFall bool
	lastFall time.Duration
	dropped  int

	units unitCheck

	trace func(Candidate)
	out   []Detection
}

// NewDetector returns a Detector using cfg. It panics if cfg.Validate
// reports an error: a bad configuration is a programming error.
func NewDetector(cfg Config) *Detector {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	m := cfg.Model
	if m == nil {
		m = &Trained
	}
	return &Detector{cfg: cfg, model: m, pending: make([]int64, 0, 8), out: make([]Detection, 0, 2)}
}

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// SetTrace makes the detector call fn with every decided candidate,
// accepted or rejected (nil disables tracing). For diagnostics, the
// evaluation and training.
func (d *Detector) SetTrace(fn func(Candidate)) { d.trace = fn }

// Dropped returns how many samples Push ignored: non-finite values or a
// time earlier than the previous sample.
func (d *Detector) Dropped() int { return d.dropped }

// UnitError reports, once 5 s of signal have been seen, a stream whose
// median magnitude over a 5 s block is not about 1 g in m/s² (outside
// [6.5, 13.5] m/s²): a device sending g (≈1.0) or mg (≈1000) instead of
// m/s². It is nil again after a block in range. While it is set the
// detector reports no fall (with wrong units its thresholds are
// meaningless).
func (d *Detector) UnitError() error { return d.units.err }

// Push feeds one sample and returns a fall when one is confirmed (about
// 3.7 s after the impact, when the post-impact window is complete). At most
// one fall is returned per call; a second confirmed in the same call (only
// possible after a long gap) is returned by the next Push or Flush.
func (d *Detector) Push(s Sample) (Detection, bool) {
	if !finite3(s.X, s.Y, s.Z) || (d.started && s.T < d.prev.T) || s.T < 0 {
		d.dropped++
		return Detection{}, false
	}
	d.lastT = s.T
	kr := int64(s.T / GridPeriod)
	if r := &d.raw[kr&(ringSize-1)]; r.k != kr {
		*r = rawPeak{k: kr, v: s.SVM()}
	} else {
		r.v = max(r.v, s.SVM())
	}
	switch {
	case !d.started:
		d.started = true
		d.next = ceilTo(s.T, InputPeriod)
	case s.T-d.prev.T > d.cfg.MaxGap:
		d.next = ceilTo(s.T, InputPeriod) // a gap: no interpolation across it
	default:
		span := float64(s.T - d.prev.T)
		for ; d.next <= s.T && span > 0; d.next += InputPeriod {
			f := float64(d.next-d.prev.T) / span
			d.feed(d.next, d.prev.X+f*(s.X-d.prev.X), d.prev.Y+f*(s.Y-d.prev.Y), d.prev.Z+f*(s.Z-d.prev.Z))
		}
	}
	if d.next == s.T {
		d.feed(s.T, s.X, s.Y, s.Z)
		d.next += InputPeriod
	}
	d.prev = s
	return d.pop()
}

// ceilTo rounds t up to a multiple of p.
func ceilTo(t, p time.Duration) time.Duration {
	if r := t % p; r != 0 {
		return t + p - r
	}
	return t
}

// feed adds one point of the regular input grid to the 20 Hz bins.
func (d *Detector) feed(t time.Duration, x, y, z float64) {
	k := int64(t / GridPeriod)
	switch {
	case d.n == 0 && !d.haveLast:
		d.curK = k
	case k != d.curK:
		d.closeBin(d.lastT)
		if gap := time.Duration(k-d.lastK) * GridPeriod; gap > d.cfg.MaxGap {
			d.flushPending(d.lastT)
			d.haveLast, d.clusterOpen = false, false
		}
		d.curK = k
	}
	d.sx += x
	d.sy += y
	d.sz += z
	d.n++
}

func (d *Detector) pop() (Detection, bool) {
	if len(d.out) == 0 {
		return Detection{}, false
	}
	det := d.out[0]
	copy(d.out, d.out[1:])
	d.out = d.out[:len(d.out)-1]
	return det, true
}

// Flush decides every pending candidate with the samples seen so far (at
// the end of a recording, when a post-impact window is cut short) and
// returns the falls not yet returned, in time order. The Detector stays
// usable.
func (d *Detector) Flush() []Detection {
	if d.n > 0 {
		d.closeBin(d.lastT)
	}
	d.flushPending(d.lastT)
	out := append([]Detection(nil), d.out...)
	d.out = d.out[:0]
	return out
}

func (d *Detector) flushPending(now time.Duration) {
	if d.clusterOpen {
		d.pending = append(d.pending, d.clusterK)
		d.clusterOpen = false
	}
	for _, p := range d.pending {
		d.decide(p, now)
	}
	d.pending = d.pending[:0]
}

// closeBin closes the bin being accumulated, interpolates bins missing
// since the last closed one (within MaxGap) and processes them in order.
func (d *Detector) closeBin(now time.Duration) {
	if d.n == 0 {
		return
	}
	inv := 1 / float64(d.n)
	b := bin{x: d.sx * inv, y: d.sy * inv, z: d.sz * inv}
	b.svm = math.Sqrt(b.x*b.x + b.y*b.y + b.z*b.z)
	d.sx, d.sy, d.sz, d.n = 0, 0, 0, 0
	k := d.curK
	if d.haveLast && time.Duration(k-d.lastK)*GridPeriod <= d.cfg.MaxGap {
		prev := d.ring[d.lastK&(ringSize-1)]
		span := float64(k - d.lastK)
		for j := d.lastK + 1; j < k; j++ {
			f := float64(j-d.lastK) / span
			m := bin{x: prev.x + f*(b.x-prev.x), y: prev.y + f*(b.y-prev.y), z: prev.z + f*(b.z-prev.z)}
			m.svm = math.Sqrt(m.x*m.x + m.y*m.y + m.z*m.z)
			d.ring[j&(ringSize-1)] = m
			d.lastK = j
			d.process(j, now)
		}
	} else {
		d.firstK = k
	}
	d.ring[k&(ringSize-1)] = b
	d.haveLast, d.lastK = true, k
	d.process(k, now)
}

// process runs the candidate logic on the newly closed bin j.
func (d *Detector) process(j int64, now time.Duration) {
	v := d.ring[j&(ringSize-1)].svm
	d.units.add(v)
	if d.clusterOpen && j-d.clusterK > clusterBins {
		d.pending = append(d.pending, d.clusterK)
		d.clusterOpen = false
	}
	if v >= d.cfg.CandidateThreshold {
		if !d.clusterOpen {
			d.clusterOpen, d.clusterK = true, j
		} else if v > d.ring[d.clusterK&(ringSize-1)].svm {
			d.clusterK = j
		}
	}
	if len(d.pending) > 0 && j >= d.pending[0]+decideBins {
		keep := d.pending[:0]
		for _, p := range d.pending {
			if j >= p+decideBins {
				d.decide(p, now)
			} else {
				keep = append(keep, p)
			}
		}
		d.pending = keep
	}
}

// decide computes the features of the candidate peaking at bin p with the
// bins received so far and scores it.
func (d *Detector) decide(p int64, now time.Duration) {
	at := time.Duration(p)*GridPeriod + GridPeriod/2
	c := Candidate{Detection: Detection{At: at, PeakSVM: d.ring[p&(ringSize-1)].svm, DecidedAt: now}}
	if d.lastK-p < minPostBins {
		c.Reason = fmt.Sprintf("stream ends %v after the impact: too little post-impact signal", time.Duration(d.lastK-p)*GridPeriod)
		d.emit(c)
		return
	}
	c.Features = d.features(p)
	for j := max(p-impactBins, d.firstK); j <= min(p+impactBins, d.lastK); j++ {
		if r := d.raw[j&(ringSize-1)]; r.k == j {
			c.RawPeakSVM = max(c.RawPeakSVM, r.v)
		}
	}
	c.Score = d.model.Score(c.Features)
	switch {
	case d.units.err != nil:
		c.Reason = "units: " + d.units.err.Error()
	case d.haveFall && at < d.lastFall+d.cfg.Refractory:
		c.Reason = "inside the refractory period of a reported fall"
	case c.Score < d.model.Threshold:
		c.Reason = fmt.Sprintf("score %.3f < threshold %.3f", c.Score, d.model.Threshold)
	default:
		c.Accepted = true
		d.haveFall, d.lastFall = true, at
		d.out = append(d.out, c.Detection)
	}
	d.emit(c)
}

func (d *Detector) emit(c Candidate) {
	if d.trace != nil {
		d.trace(c)
	}
}

// features computes the Features of the peak at bin p from the ring,
// using only bins of the current segment that have been received.
func (d *Detector) features(p int64) Features {
	lo, hi := d.firstK, d.lastK
	get := func(j int64) bin { return d.ring[j&(ringSize-1)] }
	var f Features
	f.PeakSVM = get(p).svm

	// Pre-impact dip.
	f.DipSVM = f.PeakSVM
	for j := max(p-dipBins, lo); j < p; j++ {
		f.DipSVM = min(f.DipSVM, get(j).svm)
	}
	// Pre-impact reference and post-impact windows.
	pre := stats(get, max(p-preFrom, lo), p-preTo-1)
	post := stats(get, p+postFrom, min(p+postTo, hi))
	f.PreStdSVM, f.PostStdSVM = pre.std, post.std
	f.PostMeanSVM = post.mean
	if post.n == 0 {
		f.PostMeanSVM = StandardGravity
	}
	if pre.n > 0 && post.n > 0 {
		f.OrientationChangeDeg = angleDeg(pre.vec, post.vec)
	}
	f.PreAxis, f.PostAxis = absUnit(pre.vec), absUnit(post.vec)
	// Late post-impact window: stillness and attitude 2-3.7 s after.
	late := stats(get, p+lateFrom, min(p+decideBins, hi))
	f.LateStdSVM = late.std
	if pre.n > 0 && late.n > 0 {
		f.LateOrientationChangeDeg = angleDeg(pre.vec, late.vec)
	}
	var nStill, totStill int
	for j := p + postFrom; j <= min(p+decideBins, hi); j++ {
		totStill++
		if j > lo && math.Abs(get(j).svm-StandardGravity) < 0.1*StandardGravity &&
			math.Abs(get(j).svm-get(j-1).svm) < 0.05*StandardGravity {
			nStill++
		}
	}
	if totStill > 0 {
		f.StillFrac = float64(nStill) / float64(totStill)
	}
	// Vertical velocity before the impact: the acceleration along the
	// pre-impact gravity direction minus 1 g, integrated over [p-1 s, p).
	if g := unit(pre.vec); pre.n > 0 {
		f.PreMinVertical = StandardGravity
		for j := max(p-dipBins, lo); j < p; j++ {
			b := get(j)
			av := b.x*g[0] + b.y*g[1] + b.z*g[2]
			f.PreVerticalVel += (av - StandardGravity) * GridPeriod.Seconds()
			f.PreMinVertical = min(f.PreMinVertical, av)
		}
		for j := max(p-2*dipBins, lo); j < p; j++ {
			b := get(j)
			f.PreVerticalVel2s += (b.x*g[0] + b.y*g[1] + b.z*g[2] - StandardGravity) * GridPeriod.Seconds()
		}
	}
	// Attitude change across the impact on a short scale, and the path of
	// the acceleration direction during the descent.
	sPre := stats(get, max(p-shortFrom, lo), p-impactBins-1)
	sPost := stats(get, p+impactBins+1, min(p+shortFrom, hi))
	if sPre.n > 0 && sPost.n > 0 {
		f.ShortOrientationChangeDeg = angleDeg(sPre.vec, sPost.vec)
	}
	for j := max(p-shortFrom, lo+1); j <= p-rotEndBins; j++ {
		a, b := get(j-1), get(j)
		f.RotationPathDeg += angleDeg([3]float64{a.x, a.y, a.z}, [3]float64{b.x, b.y, b.z})
	}
	// Other peaks before and after (periodic peaks: jogging).
	var nPre, nPost, totPre, totPost int
	half := d.cfg.CandidateThreshold * 0.75
	for j := max(p-preFrom, lo); j < p-impactBins; j++ {
		totPre++
		if get(j).svm >= half {
			nPre++
		}
	}
	for j := p + impactBins + 1; j <= min(p+postTo, hi); j++ {
		totPost++
		if get(j).svm >= half {
			nPost++
		}
	}
	if totPre > 0 {
		f.PrePeakFrac = float64(nPre) / float64(totPre)
	}
	if totPost > 0 {
		f.PostPeakFrac = float64(nPost) / float64(totPost)
	}
	// Impact shape.
	dt := GridPeriod.Seconds()
	for j := max(p-impactBins, lo); j <= min(p+impactBins, hi); j++ {
		v := get(j).svm
		if v >= half {
			f.ImpactWidthS += dt
		}
		f.ImpactEnergy += math.Abs(v-StandardGravity) * dt
		if j > lo {
			f.JerkMax = max(f.JerkMax, math.Abs(v-get(j-1).svm)/dt)
		}
	}
	return f
}

type winStats struct {
	n         int
	mean, std float64
	vec       [3]float64
}

func stats(get func(int64) bin, from, to int64) winStats {
	var w winStats
	var s, ss float64
	for j := from; j <= to; j++ {
		b := get(j)
		w.n++
		s += b.svm
		ss += b.svm * b.svm
		w.vec[0] += b.x
		w.vec[1] += b.y
		w.vec[2] += b.z
	}
	if w.n == 0 {
		return w
	}
	n := float64(w.n)
	w.mean = s / n
	w.std = math.Sqrt(max(0, ss/n-w.mean*w.mean))
	return w
}

// unitCheck watches the median grid magnitude of 5 s blocks.
type unitCheck struct {
	block [100]float64
	n     int
	err   error
}

func (u *unitCheck) add(v float64) {
	u.block[u.n] = v
	u.n++
	if u.n < len(u.block) {
		return
	}
	u.n = 0
	med := median(u.block[:])
	if med < 6.5 || med > 13.5 {
		u.err = unitError(med)
	} else {
		u.err = nil
	}
}

// median sorts a small slice in place (insertion sort: no allocation) and
// returns its median.
func median(a []float64) float64 {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	return a[len(a)/2]
}

func unitError(med float64) error {
	hint := ""
	switch {
	case med > 0.65 && med < 1.4:
		hint = " (it looks like g: multiply by 9.80665)"
	case med > 650 && med < 1400:
		hint = " (it looks like mg: multiply by 0.00980665)"
	}
	return fmt.Errorf("acceleration magnitude at rest is %.3g, want about 9.8 m/s^2%s", med, hint)
}

func finite3(a, b, c float64) bool {
	s := a + b + c // NaN or ±Inf propagate (Inf-Inf is NaN)
	return !math.IsNaN(s) && !math.IsInf(s, 0)
}

// angleDeg returns the angle between a and b in degrees, 0 if either is
// (numerically) zero.
func angleDeg(a, b [3]float64) float64 {
	na := math.Sqrt(a[0]*a[0] + a[1]*a[1] + a[2]*a[2])
	nb := math.Sqrt(b[0]*b[0] + b[1]*b[1] + b[2]*b[2])
	if na < 1e-9 || nb < 1e-9 {
		return 0
	}
	cos := (a[0]*b[0] + a[1]*b[1] + a[2]*b[2]) / (na * nb)
	cos = math.Max(-1, math.Min(1, cos))
	return math.Acos(cos) * 180 / math.Pi
}

// unit returns v / |v| (zeros for a zero v).
func unit(v [3]float64) [3]float64 {
	n := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2])
	if n < 1e-9 {
		return [3]float64{}
	}
	return [3]float64{v[0] / n, v[1] / n, v[2] / n}
}

// absUnit returns the absolute components of v / |v| (zeros for a zero v).
func absUnit(v [3]float64) [3]float64 {
	n := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2])
	if n < 1e-9 {
		return [3]float64{}
	}
	return [3]float64{math.Abs(v[0]) / n, math.Abs(v[1]) / n, math.Abs(v[2]) / n}
}
