// Stage 2, rules: suspected sensor faults. A vitals reading that is
// physiologically impossible beside the others is flagged ("check sensor"),
// counted, and kept out of NEWS2 and the vitals thresholds until plausible
// readings return.

package alerting

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TypeSensorSuspect is the "check sensor" alert (severity warning): a
// monitor's readings are physiologically impossible beside each other, so
// the field is kept out of the vitals rules until plausible readings return.
const TypeSensorSuspect = "sensor_suspect"

// Reasons of a suspect field (label reason of
// eldercare_alerting_suspect_readings_total).
const (
	// SuspectRRZero: respiration 0 /min while SpO2 stays >= RRZeroSpO2 and
	// the heart rate is steady (a lead or belt off, not apnoea).
	SuspectRRZero = "rr_zero_spo2_normal"
	// SuspectSpO2Jump: SpO2 changed by more than SpO2Jump points between
	// two samples at most JumpWithin apart (a probe moved or off).
	SuspectSpO2Jump = "spo2_jump"
)

// ArtefactRule configures the suspected-sensor-fault checks of a vitals
// monitor's readings (device time). The physiology behind them: without
// breathing, SpO2 falls within a minute or so, so respiration 0 /min beside
// a normal, unchanged SpO2 and a steady pulse is a respiration lead that
// came off (BIDMC bidmc_13); a pulse oximeter averages over several seconds
// and a real desaturation or recovery moves by a few points a second, so a
// jump of more than 10 points in one second is the probe. The two
// conditions are those of issue 12; the durations are ours.
type ArtefactRule struct {
	// RRZeroSpO2 is the lowest SpO2 (%) at which respiration 0 /min is
	// impossible; default 94 % (the top of the NEWS2 1-point band 94-95:
	// below it a desaturation may be real and RR 0 is passed on).
	RRZeroSpO2 float64
	// HRSteady is the widest heart-rate range (bpm) over HRWindow that is
	// "steady"; default 10 bpm over 30 s (at least 5 samples).
	HRSteady float64
	HRWindow time.Duration
	// SpO2Jump is the largest plausible SpO2 change (points) between two
	// samples at most JumpWithin apart; default 10 within 1.5 s (1 s
	// sampling with jitter).
	SpO2Jump   float64
	JumpWithin time.Duration
	// SpO2Steady is the largest step (points) between two SpO2 samples
	// that counts as steady while SpO2 is suspect; default 3.
	SpO2Steady float64
	// Plausible is how long plausible samples of a suspect field must span
	// before the field is trusted again (respiration > 0 or SpO2 steady);
	// default 30 s. Respiration 0 that becomes plausible (SpO2 below
	// RRZeroSpO2, or the heart rate unsteady) is passed on at once.
	Plausible time.Duration
	// FlagAfter is how long impossible samples of a field must go on
	// (first to newest, recovery samples not counted) before the
	// sensor_suspect alert opens; default 15 s (a short glitch is counted
	// and kept out of the rules, but calls no one).
	FlagAfter time.Duration
}

// DefaultArtefacts are the suspected-sensor-fault checks of this release.
var DefaultArtefacts = ArtefactRule{RRZeroSpO2: 94, HRSteady: 10, HRWindow: 30 * time.Second,
	SpO2Jump: 10, JumpWithin: 1500 * time.Millisecond, SpO2Steady: 3, Plausible: 30 * time.Second, FlagAfter: 15 * time.Second}

// suspectField is the state of one field while it is suspect.
type suspectField struct {
	since     time.Time // device time of the first suspect sample
	lastBad   time.Time // device time of the newest impossible sample
	reason    string
	detail    string
	goodSince time.Time // start of the current run of plausible samples
}

// artefacts checks one monitor's readings. Not safe for concurrent use.
type artefacts struct {
	rule    ArtefactRule
	hr      []timedValue
	spo2    timedValue // newest SpO2 sample
	spo2Ok  bool
	last    time.Time
	suspect map[string]*suspectField
	flagged bool // a sensor_suspect alert was asked for and not cleared
	// calmSince starts the current run with no suspect field;
	// calmReported: Unflag was reported for it (restart safety: after a
	// restart an alert may be open that this tracker never flagged).
	calmSince    time.Time
	calmReported bool
}

func newArtefacts(r ArtefactRule) *artefacts {
	return &artefacts{rule: r, suspect: map[string]*suspectField{}}
}

// artefactResult is what one reading did.
type artefactResult struct {
	// Values are the reading's values without its suspect fields (the
	// reading's own map when nothing was removed).
	Values map[string]float64
	// Began are the fields that turned suspect on this reading: their
	// windows in the vitals and NEWS2 rules must be forgotten.
	Began []string
	// Kept counts the suspect samples kept out, by field and reason.
	Kept map[[2]string]int
	// Flag: open the sensor_suspect alert with Detail. Unflag: every
	// field is plausible again, resolve it if open (reported when a
	// flagged fault ends, and once per calm run of Plausible, so an alert
	// left open across a restart clears too).
	Flag, Unflag bool
	Detail       string
}

// check filters one reading at device time t (values by field).
func (a *artefacts) check(t time.Time, values map[string]float64) artefactResult {
	res := artefactResult{Values: values}
	if !a.last.IsZero() && t.Before(a.last) {
		// A device clock jump back: the history is not comparable.
		a.hr, a.spo2Ok = nil, false
	}
	a.last = t
	drop := map[string]bool{}
	keep := func(field, reason string) {
		drop[field] = true
		if res.Kept == nil {
			res.Kept = map[[2]string]int{}
		}
		res.Kept[[2]string{field, reason}]++
	}
	begin := func(field, reason, detail string) {
		if s := a.suspect[field]; s != nil {
			s.goodSince, s.lastBad = time.Time{}, t
			return
		}
		a.suspect[field] = &suspectField{since: t, lastBad: t, reason: reason, detail: detail}
		res.Began = append(res.Began, field)
	}

	// Heart rate history (ECG first, else pulse).
	hr, hasHR := finite(values, "hr_bpm")
	if !hasHR {
		hr, hasHR = finite(values, "pulse_bpm")
	}
	if hasHR {
		a.hr = append(a.hr, timedValue{t, hr})
	}
	i := 0
	for i < len(a.hr) && t.Sub(a.hr[i].t) > a.rule.HRWindow {
		i++
	}
	a.hr = a.hr[i:]

	// SpO2: a jump between two close samples.
	if v, ok := finite(values, "spo2_pct"); ok {
		prev, had := a.spo2, a.spo2Ok
		a.spo2, a.spo2Ok = timedValue{t, v}, true
		close := had && !t.Before(prev.t) && t.Sub(prev.t) <= a.rule.JumpWithin
		switch {
		case close && math.Abs(v-prev.v) > a.rule.SpO2Jump:
			begin("spo2_pct", SuspectSpO2Jump, fmt.Sprintf("SpO2 jumped from %g to %g %% in %s", prev.v, v, t.Sub(prev.t).Round(100*time.Millisecond)))
			keep("spo2_pct", SuspectSpO2Jump)
		case a.suspect["spo2_pct"] != nil:
			s := a.suspect["spo2_pct"]
			if close && math.Abs(v-prev.v) <= a.rule.SpO2Steady {
				if s.goodSince.IsZero() {
					s.goodSince = t
				}
				if t.Sub(s.goodSince) >= a.rule.Plausible {
					delete(a.suspect, "spo2_pct")
					break
				}
			} else {
				s.goodSince, s.lastBad = time.Time{}, t
			}
			keep("spo2_pct", s.reason)
		}
	}

	// Respiration 0 beside a normal SpO2 and a steady heart rate.
	if rr, ok := finite(values, "resp_per_min"); ok {
		spo2Normal := a.spo2Ok && a.suspect["spo2_pct"] == nil && t.Sub(a.spo2.t) <= 5*time.Second && a.spo2.v >= a.rule.RRZeroSpO2
		impossible := rr < 0.5 && spo2Normal && a.hrSteady()
		switch {
		case impossible:
			begin("resp_per_min", SuspectRRZero, fmt.Sprintf("respiration %g /min while SpO2 is %g %% and the heart rate steady at %g bpm", rr, a.spo2.v, hr))
			keep("resp_per_min", SuspectRRZero)
		case a.suspect["resp_per_min"] != nil:
			s := a.suspect["resp_per_min"]
			if rr < 0.5 {
				// RR 0 is no longer impossible (SpO2 falling, heart rate
				// changing): it may be apnoea; trust it at once.
				delete(a.suspect, "resp_per_min")
				break
			}
			if s.goodSince.IsZero() {
				s.goodSince = t
			}
			if t.Sub(s.goodSince) >= a.rule.Plausible {
				delete(a.suspect, "resp_per_min")
				break
			}
			keep("resp_per_min", s.reason)
		}
	}

	if len(drop) > 0 {
		res.Values = maps.Clone(values)
		for f := range drop {
			delete(res.Values, f)
		}
	}
	if len(a.suspect) > 0 {
		a.calmSince, a.calmReported = time.Time{}, false
	} else if a.calmSince.IsZero() {
		a.calmSince = t
	}
	switch {
	case len(a.suspect) == 0 && a.flagged:
		a.flagged, res.Unflag, a.calmReported = false, true, true
	case len(a.suspect) == 0 && !a.calmReported && t.Sub(a.calmSince) >= a.rule.Plausible:
		a.calmReported, res.Unflag = true, true
	case len(a.suspect) > 0 && !a.flagged:
		fields := slices.Sorted(maps.Keys(a.suspect))
		for _, f := range fields {
			s := a.suspect[f]
			if s.lastBad.Sub(s.since) >= a.rule.FlagAfter {
				a.flagged, res.Flag = true, true
				res.Detail = fmt.Sprintf("check sensor: %s, for %d s; %s kept out of NEWS2 and the vitals thresholds until plausible readings return",
					s.detail, int(s.lastBad.Sub(s.since)/time.Second), fieldNames[f])
				break
			}
		}
	}
	return res
}

var fieldNames = map[string]string{"resp_per_min": "respiration", "spo2_pct": "SpO2"}

// hrSteady reports whether the heart rate of the last HRWindow has at
// least 5 samples within HRSteady bpm of each other.
func (a *artefacts) hrSteady() bool {
	if len(a.hr) < 5 {
		return false
	}
	lo, hi := a.hr[0].v, a.hr[0].v
	for _, x := range a.hr {
		lo, hi = min(lo, x.v), max(hi, x.v)
	}
	return hi-lo <= a.rule.HRSteady
}

func finite(values map[string]float64, f string) (float64, bool) {
	v, ok := values[f]
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// forget drops the windows of fields (a field that turned suspect): its
// earlier samples are not trusted either, and a window must not fire on
// them.
func (v *vitals) forget(fields []string) {
	for i, th := range v.thresholds {
		if slices.Contains(fields, th.Field) {
			v.windows[i] = window{}
			v.calm[i] = calmWindow{}
		}
	}
}

// forget drops the samples of fields from the NEWS2 window (see
// [vitals.forget]); with no sample left, the parameter is not measured.
func (n *news2Tracker) forget(fields []string) {
	for _, f := range fields {
		delete(n.samples, f)
	}
}

// artefactMetrics are the counters of the suspected-sensor-fault checks
// and of inhibition.
type artefactMetrics struct {
	kept      *prometheus.CounterVec
	inhibited *prometheus.CounterVec
}

func newArtefactMetrics() artefactMetrics {
	return artefactMetrics{kept: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_suspect_readings_total",
		Help: "Vitals samples kept out of NEWS2 and the vitals thresholds as a suspected sensor fault, by field and reason (rr_zero_spo2_normal, spo2_jump); see the sensor_suspect alert."},
		[]string{"field", "reason"}),
		inhibited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_inhibited_total",
			Help: "Vitals rules that fired while another vitals alert of the same resident was open and recent: added to it as a finding, not paged (inhibit.go), by the inhibited alert type."},
			[]string{"type"})}
}

// collectors are the metrics of the rules of rulesvc.go.
func (r *ruleState) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.artefactMetrics.kept, r.artefactMetrics.inhibited}
}
