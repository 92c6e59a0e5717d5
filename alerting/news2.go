// Stage 2, rules: NEWS2 scoring (Royal College of Physicians 2017) and its tracker per monitor.

package alerting

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// TypeNEWS2 is the alert raised on a NEWS2 score that calls for an urgent
// response (see [NEWS2Score.Urgent]).
const TypeNEWS2 = "news2"

// NEWS2 parameters, in the order of the RCP chart.
const (
	NEWS2Resp          = "RR"
	NEWS2SpO2          = "SpO2"
	NEWS2Air           = "air/oxygen"
	NEWS2SBP           = "BP"
	NEWS2Pulse         = "HR"
	NEWS2Consciousness = "consciousness"
	NEWS2Temp          = "temperature"
)

// news2Params lists the NEWS2 parameters in chart order.
var news2Params = []string{NEWS2Resp, NEWS2SpO2, NEWS2Air, NEWS2SBP, NEWS2Pulse, NEWS2Consciousness, NEWS2Temp}

// Reading fields the NEWS2 rule reads. hr_bpm (ECG) is preferred to
// pulse_bpm (oximeter) for the pulse parameter. on_oxygen (0 air, 1
// supplemental oxygen) and acvpu (0 alert, 1 new confusion, 2 voice, 3 pain,
// 4 unresponsive) are this platform's names for the two observations a
// monitor rarely reports; they are scored when present.
const (
	FieldOnOxygen = "on_oxygen"
	FieldACVPU    = "acvpu"
)

// NEWS2Part is the score of one parameter.
type NEWS2Part struct {
	// Param is RR, SpO2, air/oxygen, BP, HR, consciousness or temperature.
	Param string
	// Value is the observation in the parameter's unit (breaths/min, %,
	// 0|1, mmHg, bpm, ACVPU 0-4, °C), rounded as charted (integers; °C to
	// 0.1).
	Value float64
	Score int
}

// NEWS2Score is an aggregate NEWS2 score over the parameters measured.
type NEWS2Score struct {
	Total int
	// Parts are the measured parameters, in chart order.
	Parts []NEWS2Part
	// Missing are the parameters not measured, in chart order; their score
	// is not in Total, so a partial score can only underestimate.
	Missing []string
}

// Urgent reports whether the score calls for an urgent response: an
// aggregate of 5 or more, or 3 in any single parameter ("a score of 3 in
// any individual parameter", RCP 2017, chart 3 clinical response).
func (s NEWS2Score) Urgent() bool {
	if s.Total >= 5 {
		return true
	}
	for _, p := range s.Parts {
		if p.Score == 3 {
			return true
		}
	}
	return false
}

// String renders the score and its parts, e.g.
// "NEWS2 7 (RR 25/min: 3, SpO2 88 %: 3, HR 118 bpm: 1; BP, temperature,
// consciousness not measured)". Air/oxygen, when not reported, is listed as
// not measured too.
func (s NEWS2Score) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "NEWS2 %d (", s.Total)
	for i, p := range s.Parts {
		if i > 0 {
			b.WriteString(", ")
		}
		switch p.Param {
		case NEWS2Resp:
			fmt.Fprintf(&b, "RR %g/min: %d", p.Value, p.Score)
		case NEWS2SpO2:
			fmt.Fprintf(&b, "SpO2 %g %%: %d", p.Value, p.Score)
		case NEWS2Air:
			what := "air"
			if p.Value >= 1 {
				what = "oxygen"
			}
			fmt.Fprintf(&b, "on %s: %d", what, p.Score)
		case NEWS2SBP:
			fmt.Fprintf(&b, "BP %g mmHg: %d", p.Value, p.Score)
		case NEWS2Pulse:
			fmt.Fprintf(&b, "HR %g bpm: %d", p.Value, p.Score)
		case NEWS2Consciousness:
			fmt.Fprintf(&b, "%s: %d", acvpuNames[int(p.Value)], p.Score)
		case NEWS2Temp:
			fmt.Fprintf(&b, "temperature %g °C: %d", p.Value, p.Score)
		}
	}
	if len(s.Missing) > 0 {
		if len(s.Parts) > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.Join(s.Missing, ", "))
		b.WriteString(" not measured")
	}
	b.WriteString(")")
	return b.String()
}

var acvpuNames = []string{"alert", "new confusion", "responds to voice", "responds to pain", "unresponsive"}

// ScoreNEWS2 scores the observations by reading field: resp_per_min
// (breaths/min), spo2_pct (%, SpO2 scale 1), on_oxygen (0|1), sbp_mmhg
// (mmHg), hr_bpm or else pulse_bpm (bpm), acvpu (0-4) and temp_c (°C). A
// field that is absent or not finite is a missing parameter.
//
// Source: Royal College of Physicians. National Early Warning Score (NEWS)
// 2: Standardising the assessment of acute-illness severity in the NHS.
// Updated report of a working party. London: RCP, 2017; chart 1, with SpO2
// scale 1 (scale 2, for hypercapnic respiratory failure, needs a clinical
// decision and is not used). Values are rounded as charted (integers, °C to
// 0.1) before banding:
//
//	parameter          3        2         1          0          1          2         3
//	RR /min            <=8               9-11       12-20                 21-24     >=25
//	SpO2 scale 1 %     <=91     92-93    94-95      >=96
//	air or oxygen               oxygen              air
//	systolic BP mmHg   <=90     91-100   101-110    111-219                         >=220
//	pulse /min         <=40              41-50      51-90      91-110     111-130   >=131
//	consciousness                                   alert                           CVPU
//	temperature °C     <=35.0            35.1-36.0  36.1-38.0  38.1-39.0  >=39.1
func ScoreNEWS2(values map[string]float64) NEWS2Score {
	var s NEWS2Score
	get := func(fields ...string) (float64, bool) {
		for _, f := range fields {
			if v, ok := values[f]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
				return v, true
			}
		}
		return 0, false
	}
	for _, p := range news2Params {
		var (
			v  float64
			ok bool
		)
		switch p {
		case NEWS2Resp:
			v, ok = get("resp_per_min")
		case NEWS2SpO2:
			v, ok = get("spo2_pct")
		case NEWS2Air:
			v, ok = get(FieldOnOxygen)
		case NEWS2SBP:
			v, ok = get("sbp_mmhg")
		case NEWS2Pulse:
			v, ok = get("hr_bpm", "pulse_bpm")
		case NEWS2Consciousness:
			v, ok = get(FieldACVPU)
		case NEWS2Temp:
			v, ok = get("temp_c")
		}
		if !ok {
			s.Missing = append(s.Missing, p)
			continue
		}
		v, score := news2Band(p, v)
		s.Parts = append(s.Parts, NEWS2Part{Param: p, Value: v, Score: score})
		s.Total += score
	}
	return s
}

// news2Band rounds v as charted and returns it with its score (RCP 2017
// chart 1; see [ScoreNEWS2]).
func news2Band(param string, v float64) (float64, int) {
	switch param {
	case NEWS2Temp:
		v = math.Round(v*10) / 10
		switch {
		case v <= 35.0:
			return v, 3
		case v <= 36.0:
			return v, 1
		case v <= 38.0:
			return v, 0
		case v <= 39.0:
			return v, 1
		default:
			return v, 2
		}
	case NEWS2Air:
		if v >= 0.5 {
			return 1, 2
		}
		return 0, 0
	case NEWS2Consciousness:
		v = min(max(math.Round(v), 0), 4)
		if v >= 1 {
			return v, 3
		}
		return 0, 0
	}
	v = math.Round(v)
	switch param {
	case NEWS2Resp:
		switch {
		case v <= 8:
			return v, 3
		case v <= 11:
			return v, 1
		case v <= 20:
			return v, 0
		case v <= 24:
			return v, 2
		default:
			return v, 3
		}
	case NEWS2SpO2:
		switch {
		case v <= 91:
			return v, 3
		case v <= 93:
			return v, 2
		case v <= 95:
			return v, 1
		default:
			return v, 0
		}
	case NEWS2SBP:
		switch {
		case v <= 90:
			return v, 3
		case v <= 100:
			return v, 2
		case v <= 110:
			return v, 1
		case v <= 219:
			return v, 0
		default:
			return v, 3
		}
	case NEWS2Pulse:
		switch {
		case v <= 40:
			return v, 3
		case v <= 50:
			return v, 1
		case v <= 90:
			return v, 0
		case v <= 110:
			return v, 1
		case v <= 130:
			return v, 2
		default:
			return v, 3
		}
	}
	return v, 0
}

// NEWS2Rule configures the continuous NEWS2 score of a monitor's readings.
// Each parameter's observation is the median of its samples in the last
// Window of device time (a monitor's 1 Hz values are noisy; a nurse charts
// one observation), or, with no sample in Window, its newest sample if no
// older than Stale (blood pressure and temperature are taken rarely). The
// rule fires when the score has been urgent ([NEWS2Score.Urgent]) on every
// reading for Sustain (device time), after the device has reported for at
// least Window, and clears after the score has not been urgent for Clear.
// Samples a suspected sensor fault kept out (artefact.go) are not scored.
type NEWS2Rule struct {
	Window, Stale, Clear time.Duration
	// Sustain is how long the score must stay urgent before the rule
	// fires; 0 fires on the first urgent score.
	Sustain time.Duration
}

// DefaultNEWS2 is the NEWS2 rule of this release: 60 s median, observations
// valid for 15 min, urgent for 2 min before it opens, cleared after 5 min
// below the urgent threshold.
//
// Sources of the choice: RCP 2017 defines NEWS2 for observations a nurse
// charts, and a nurse who finds an abnormal value repeats it before calling
// (the score is of a confirmed observation, not of one monitor sample).
// For continuous monitors the alarm-fatigue literature recommends an alarm
// delay: Welch J, "An evidence-based approach to reduce nuisance alarms and
// alarm fatigue", Biomed Instrum Technol 2011 (Suppl):46-52 (a 15 s SpO2
// delay removed most nuisance alarms), and the AACN Practice Alert
// "Managing alarms in acute care across the life span" (Crit Care Nurse
// 2018;38(2):e16-e20), which recommends validated delays. A 60 s median
// already absorbs short artefacts; the 2 min sustain asks the score to stay
// urgent for two further medians, so a single median at a band edge (RR 25,
// SpO2 91 %) that resolves within minutes is not paged. The 2 min, like
// the other durations, is ours, not from these sources.
var DefaultNEWS2 = NEWS2Rule{Window: time.Minute, Stale: 15 * time.Minute, Clear: 5 * time.Minute, Sustain: 2 * time.Minute}

// news2Fields are the reading fields the NEWS2 rule keeps.
var news2Fields = []string{"resp_per_min", "spo2_pct", FieldOnOxygen, "sbp_mmhg", "hr_bpm", "pulse_bpm", FieldACVPU, "temp_c"}

type timedValue struct {
	t time.Time
	v float64
}

// news2Tracker scores one device's readings. Not safe for concurrent use.
type news2Tracker struct {
	rule    NEWS2Rule
	samples map[string][]timedValue
	first   time.Time // device time of the first reading of this run
	last    time.Time
	urgent  bool // an alert fired and has not cleared
	// urgentSince is the start of the current run of urgent scores.
	urgentSince time.Time
	calmAt      time.Time // start of the current non-urgent run
	// clearedRun: Cleared was reported for the current calm run.
	clearedRun bool
}

func newNEWS2Tracker(rule NEWS2Rule) *news2Tracker {
	return &news2Tracker{rule: rule, samples: map[string][]timedValue{}}
}

// news2Result is what one reading did to the NEWS2 rule.
type news2Result struct {
	Fired   bool // the score turned urgent: raise
	Cleared bool // not urgent for Clear: resolve
	Score   NEWS2Score
	At      time.Time
	Calm    time.Duration // how long it was not urgent, with Cleared
}

// observe adds one reading at device time t. A reading older than the
// newest one (a device clock jump back), or after a gap longer than Stale,
// starts over.
func (n *news2Tracker) observe(t time.Time, values map[string]float64) news2Result {
	if !n.last.IsZero() && (t.Before(n.last) || t.Sub(n.last) > n.rule.Stale) {
		urgent := n.urgent
		*n = *newNEWS2Tracker(n.rule)
		n.urgent = urgent // the alert stays until a calm run clears it
	}
	if n.first.IsZero() {
		n.first = t
	}
	n.last = t
	any := false
	for _, f := range news2Fields {
		v, ok := values[f]
		if !ok {
			continue
		}
		any = true
		xs := append(n.samples[f], timedValue{t, v})
		// Keep the samples in Window, and at least the newest one.
		i := 0
		for i < len(xs)-1 && t.Sub(xs[i].t) > n.rule.Window {
			i++
		}
		n.samples[f] = xs[i:]
	}
	if !any {
		return news2Result{}
	}
	obs := map[string]float64{}
	for f, xs := range n.samples {
		if len(xs) == 0 || t.Sub(xs[len(xs)-1].t) > n.rule.Stale {
			continue
		}
		var in []float64
		for _, x := range xs {
			if t.Sub(x.t) <= n.rule.Window {
				in = append(in, x.v)
			}
		}
		if len(in) == 0 {
			obs[f] = xs[len(xs)-1].v
			continue
		}
		slices.Sort(in)
		if len(in)%2 == 1 {
			obs[f] = in[len(in)/2]
		} else {
			obs[f] = (in[len(in)/2-1] + in[len(in)/2]) / 2
		}
	}
	score := ScoreNEWS2(obs)
	res := news2Result{Score: score, At: t}
	if t.Sub(n.first) < n.rule.Window {
		return res // warming up: too few samples for a median
	}
	if score.Urgent() {
		if n.urgentSince.IsZero() {
			n.urgentSince = t
		}
		n.calmAt, n.clearedRun = time.Time{}, false
		if !n.urgent && t.Sub(n.urgentSince) >= n.rule.Sustain {
			res.Fired = true
			n.urgent = true
		}
		return res
	}
	n.urgentSince = time.Time{}
	// Not urgent. A calm run of Clear reports Cleared once, also when this
	// tracker never fired (after a restart the alert may still be open).
	if n.calmAt.IsZero() {
		n.calmAt = t
	}
	if !n.clearedRun && t.Sub(n.calmAt) >= n.rule.Clear {
		res.Cleared, res.Calm = true, t.Sub(n.calmAt)
		n.urgent, n.clearedRun = false, true
	}
	return res
}
