package fall

import (
	"fmt"
	"math"
)

// Features describe the window around one impact candidate, computed on
// the detector's 20 Hz grid of 50 ms mean vectors. Magnitudes are in m/s²
// (gravity included), times in s. The kinds of feature are those of the
// wrist studies of WEDA-FALL (Marques and Moreno, Sensors 2023,
// 23(3):1146) and of the classic threshold phases (Kangas et al., Gait &
// Posture 28(2), 2008): impact, pre-impact free fall, post-impact posture
// and stillness.
type Features struct {
	// PeakSVM is the grid magnitude at the peak p.
	PeakSVM float64
	// DipSVM is the smallest magnitude within 1 s before the peak (the
	// free-fall phase; at 20 Hz it may not show).
	DipSVM float64
	// PreStdSVM is the standard deviation of the magnitude in [p-3 s,
	// p-1 s): how active the wrist was before.
	PreStdSVM float64
	// PostStdSVM is the standard deviation in [p+1 s, p+3 s]: how still
	// the wrist is after the impact.
	PostStdSVM float64
	// PostMeanSVM is the mean magnitude in [p+1 s, p+3 s] (≈1 g when
	// still).
	PostMeanSVM float64
	// OrientationChangeDeg is the angle between the mean acceleration
	// vectors (the gravity direction seen by the wrist) of [p-3 s, p-1 s)
	// and [p+1 s, p+3 s], degrees in [0, 180].
	OrientationChangeDeg float64
	// PrePeakFrac and PostPeakFrac are the shares of bins at or above
	// 0.75 x CandidateThreshold in [p-3 s, p-0.5 s) and (p+0.5 s,
	// p+3 s]: periodic peaks (jogging, clapping) around the impact.
	PrePeakFrac, PostPeakFrac float64
	// ImpactWidthS is the time, s, at or above 0.75 x CandidateThreshold
	// within p ± 0.5 s.
	ImpactWidthS float64
	// ImpactEnergy is the integral of |magnitude - 1 g| over p ± 0.5 s,
	// m/s.
	ImpactEnergy float64
	// JerkMax is the largest change of magnitude between bins within
	// p ± 0.5 s, m/s³.
	JerkMax float64
	// PreAxis and PostAxis are the absolute components |x|, |y|, |z| of
	// the unit mean acceleration vector (the gravity direction in device
	// axes) of the pre- and post-impact windows: how the forearm is held
	// (hanging, horizontal, watch face up or down), whichever way the band
	// is turned. They assume a wristband's axes: x along the forearm, z
	// out of the face (Android and Fitbit convention).
	PreAxis, PostAxis [3]float64
	// LateStdSVM is the standard deviation of the magnitude in
	// [p+2 s, p+3.7 s]: lying still after the fall.
	LateStdSVM float64
	// LateOrientationChangeDeg is the angle, degrees, between the mean
	// acceleration vectors of [p-3 s, p-1 s) and [p+2 s, p+3.7 s].
	LateOrientationChangeDeg float64
	// StillFrac is the share of bins in [p+1 s, p+3.7 s] whose magnitude
	// is within 0.1 g of 1 g and changed by less than 0.05 g since the bin
	// before.
	StillFrac float64
	// PreVerticalVel is the integral over [p-1 s, p) of the acceleration
	// along the pre-impact gravity direction minus 1 g, m/s (negative: a
	// descent, as in free fall).
	PreVerticalVel float64
	// PreMinVertical is the smallest acceleration along the pre-impact
	// gravity direction in [p-1 s, p), m/s².
	PreMinVertical float64
	// PreVerticalVel2s is PreVerticalVel integrated over [p-2 s, p), m/s:
	// a slower descent (fainting from a chair) spreads over more than 1 s.
	PreVerticalVel2s float64
	// ShortOrientationChangeDeg is the angle, degrees, between the mean
	// acceleration vectors of [p-1.5 s, p-0.5 s) and (p+0.5 s, p+1.5 s]:
	// the change of the wrist's attitude across the impact on a short
	// scale (the 3 s pre-impact reference of OrientationChangeDeg may
	// already be part of a slow fall).
	ShortOrientationChangeDeg float64
	// RotationPathDeg is the sum, degrees, of the angles between the
	// vectors of consecutive bins in [p-1.5 s, p-0.25 s]: how far the
	// acceleration direction turned during the descent.
	RotationPathDeg float64
}

// NumFeatures is the length of Features.Vector.
const NumFeatures = 25

// FeatureNames name the entries of Features.Vector, in order.
var FeatureNames = [NumFeatures]string{
	"peak_svm", "dip_svm", "pre_std_svm", "post_std_svm", "post_mean_svm", "orientation_change_deg",
	"pre_peak_frac", "post_peak_frac", "impact_width_s", "impact_energy", "log_jerk_max",
	"pre_abs_ux", "pre_abs_uy", "pre_abs_uz", "post_abs_ux", "post_abs_uy", "post_abs_uz",
	"late_std_svm", "late_orientation_change_deg", "still_frac", "pre_vertical_vel", "pre_min_vertical",
	"pre_vertical_vel_2s", "short_orientation_change_deg", "rotation_path_deg",
}

// Vector returns the model inputs in the order of FeatureNames (the jerk
// as log(1 + JerkMax), its range spans decades).
func (f Features) Vector() [NumFeatures]float64 {
	return [NumFeatures]float64{
		f.PeakSVM, f.DipSVM, f.PreStdSVM, f.PostStdSVM, f.PostMeanSVM, f.OrientationChangeDeg,
		f.PrePeakFrac, f.PostPeakFrac, f.ImpactWidthS, f.ImpactEnergy, math.Log1p(f.JerkMax),
		f.PreAxis[0], f.PreAxis[1], f.PreAxis[2], f.PostAxis[0], f.PostAxis[1], f.PostAxis[2],
		f.LateStdSVM, f.LateOrientationChangeDeg, f.StillFrac, f.PreVerticalVel, f.PreMinVertical,
		f.PreVerticalVel2s, f.ShortOrientationChangeDeg, f.RotationPathDeg,
	}
}

// Model is a logistic regression over standardised features:
//
//	P(fall) = 1 / (1 + exp(-(Bias + Σ Weights[i] · (x[i] - Mean[i]) / Scale[i])))
//
// where x = Features.Vector(). A candidate is a fall when P(fall) >=
// Threshold.
//
// Stumps, when present, add Σ (x[F] < Split ? Left : Right) to the sum
// (boosted decision stumps: each a one-threshold rule on one feature).
type Model struct {
	Mean, Scale, Weights [NumFeatures]float64
	Bias, Threshold      float64
	Stumps               []Stump
	// Trees, when present, add the value of their leaf to the sum.
	Trees []Tree
}

// Tree is a decision tree of depth 2: Lo (itself a one-split rule) when
// feature F < Split, else Hi.
type Tree struct {
	F      int
	Split  float64
	Lo, Hi Stump
}

func (t Tree) value(x [NumFeatures]float64) float64 {
	st := t.Hi
	if x[t.F] < t.Split {
		st = t.Lo
	}
	if x[st.F] < st.Split {
		return st.Left
	}
	return st.Right
}

// Stump is a one-split rule: Left when feature F < Split, else Right
// (log-odds added to the score).
type Stump struct {
	F                  int
	Split, Left, Right float64
}

// Validate reports a model with a non-finite value, a scale <= 0 or a
// threshold outside (0, 1).
func (m *Model) Validate() error {
	for i := range NumFeatures {
		for _, v := range []float64{m.Mean[i], m.Scale[i], m.Weights[i]} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("fall: model feature %s has a non-finite parameter", FeatureNames[i])
			}
		}
		if m.Scale[i] <= 0 {
			return fmt.Errorf("fall: model feature %s has scale %v, want > 0", FeatureNames[i], m.Scale[i])
		}
	}
	for i, st := range m.Stumps {
		if st.F < 0 || st.F >= NumFeatures || !finiteAll(st.Split, st.Left, st.Right) {
			return fmt.Errorf("fall: model stump %d is invalid: %+v", i, st)
		}
	}
	for i, t := range m.Trees {
		ok := t.F >= 0 && t.F < NumFeatures && finiteAll(t.Split)
		for _, st := range []Stump{t.Lo, t.Hi} {
			ok = ok && st.F >= 0 && st.F < NumFeatures && finiteAll(st.Split, st.Left, st.Right)
		}
		if !ok {
			return fmt.Errorf("fall: model tree %d is invalid: %+v", i, t)
		}
	}
	if math.IsNaN(m.Bias) || math.IsInf(m.Bias, 0) || !(m.Threshold > 0 && m.Threshold < 1) {
		return fmt.Errorf("fall: model bias %v must be finite and threshold %v in (0, 1)", m.Bias, m.Threshold)
	}
	return nil
}

// Score returns the model's fall probability for f, in [0, 1].
func (m *Model) Score(f Features) float64 {
	return m.scoreVec(f.Vector())
}

func (m *Model) scoreVec(x [NumFeatures]float64) float64 {
	z := m.Bias
	for i := range NumFeatures {
		z += m.Weights[i] * (x[i] - m.Mean[i]) / m.Scale[i]
	}
	for _, st := range m.Stumps {
		if x[st.F] < st.Split {
			z += st.Left
		} else {
			z += st.Right
		}
	}
	for _, t := range m.Trees {
		z += t.value(x)
	}
	return 1 / (1 + math.Exp(-z))
}

func finiteAll(v ...float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
