package fall

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Unit names the unit a recording was found in.
type Unit string

// Units NormalizeUnits recognises.
const (
	MS2 Unit = "m/s^2"
	G   Unit = "g"
)

// NormalizeUnits checks the unit of a recording by its median magnitude
// (at rest and on average a wrist reads 1 g): about 9.8 ([6.5, 13.5]) is
// m/s² and returned as is; about 1 ([0.65, 1.4]) is g and returned
// converted to m/s² (× StandardGravity, in a new slice). Anything else is
// refused with an error that gives the median found. An empty recording is
// an error.
func NormalizeUnits(samples []Sample) ([]Sample, Unit, error) {
	if len(samples) == 0 {
		return nil, "", errors.New("fall: no samples")
	}
	m := make([]float64, len(samples))
	for i, s := range samples {
		m[i] = s.SVM()
	}
	slices.Sort(m)
	med := m[len(m)/2]
	switch {
	case med >= 6.5 && med <= 13.5:
		return samples, MS2, nil
	case med >= 0.65 && med <= 1.4:
		out := make([]Sample, len(samples))
		for i, s := range samples {
			out[i] = Sample{T: s.T, X: s.X * StandardGravity, Y: s.Y * StandardGravity, Z: s.Z * StandardGravity}
		}
		return out, G, nil
	}
	return nil, "", fmt.Errorf("fall: median acceleration magnitude %.4g is neither about 9.8 (m/s^2) nor about 1 (g); refusing a recording in unknown units", med)
}

// Resample returns samples linearly interpolated onto a regular grid of hz
// (a sensor sampling at hz), starting at the first sample's time. It
// models a slower sensor: peaks between grid points are lost, as on a real
// 20 Hz device. hz must be in [1, 1000].
func Resample(samples []Sample, hz float64) ([]Sample, error) {
	if !(hz >= 1 && hz <= 1000) || math.IsNaN(hz) {
		return nil, fmt.Errorf("fall: resample rate %v Hz must be in [1, 1000]", hz)
	}
	if len(samples) < 2 {
		return slices.Clone(samples), nil
	}
	step := 1 / hz
	t0, t1 := samples[0].T.Seconds(), samples[len(samples)-1].T.Seconds()
	out := make([]Sample, 0, int((t1-t0)*hz)+1)
	i := 0
	for k := 0; ; k++ {
		t := t0 + float64(k)*step
		if t > t1+1e-9 {
			break
		}
		for i+1 < len(samples)-1 && samples[i+1].T.Seconds() <= t {
			i++
		}
		a, b := samples[i], samples[i+1]
		ta, tb := a.T.Seconds(), b.T.Seconds()
		f := 0.0
		if tb > ta {
			f = math.Max(0, math.Min(1, (t-ta)/(tb-ta)))
		}
		out = append(out, Sample{
			T: secondsDur(t),
			X: a.X + f*(b.X-a.X), Y: a.Y + f*(b.Y-a.Y), Z: a.Z + f*(b.Z-a.Z),
		})
	}
	return out, nil
}

func secondsDur(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }
