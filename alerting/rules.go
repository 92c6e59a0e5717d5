// Stage 2, rules: vitals thresholds with sustain windows and hysteresis, in device time.

package alerting

import (
	"fmt"
	"math"
	"time"
)

// Threshold is a vitals rule: a reading field breaches when its value is
// below Low or above High (a NaN bound is no bound), and the rule fires
// when breaching samples span at least Sustain in device time.
//
// Hysteresis: with Clear > 0, the alert clears (is resolved by the system,
// outcome other) only after samples inside [ClearLow, ClearHigh] (a NaN
// bound is no bound) have spanned Clear in device time; a sample between
// the breach and the clear bounds (e.g. SpO2 91 % with Low 90 and ClearLow
// 92) neither breaches nor clears. Clear = 0 means the alert stays open
// until staff resolve it.
type Threshold struct {
	// Type is the alert type raised.
	Type     string
	Severity string
	// Field is the reading field, e.g. "spo2_pct".
	Field string
	// Label and Unit render the alert detail: "<Label> <value> <Unit> for <n> s".
	Label, Unit string
	Low, High   float64
	Sustain     time.Duration
	// ClearLow and ClearHigh bound the range a value must stay in for
	// Clear before the alert clears (same unit as Low and High).
	ClearLow, ClearHigh float64
	Clear               time.Duration
}

func (th Threshold) breaches(v float64) bool {
	return (!math.IsNaN(th.Low) && v < th.Low) || (!math.IsNaN(th.High) && v > th.High)
}

// clears reports whether v is back in the clear range.
func (th Threshold) clears(v float64) bool {
	return (math.IsNaN(th.ClearLow) || v >= th.ClearLow) && (math.IsNaN(th.ClearHigh) || v <= th.ClearHigh)
}

// SpO2Low fires on SpO2 below 90 % sustained 30 s (field spo2_pct, %).
//
// Source: 90 % is the threshold of hypoxaemia in the BTS guideline for oxygen
// use in adults (O'Driscoll et al., Thorax 2017) and WHO guidance. NEWS2
// (Royal College of Physicians 2017) SpO2 scale 1 gives 3 points already at
// <= 91 %; our 90 % is a little less sensitive than that NEWS2 band, chosen
// to page staff for frank hypoxaemia only. The 30 s sustain is ours, to ride
// out probe-movement artefacts; it is not from either source.
//
// It clears at SpO2 >= 92 % held 60 s: 92 % is the lowest value that NEWS2
// scale 1 scores below 3 (92-93 %: 2 points); the 60 s is ours.
var SpO2Low = Threshold{Type: TypeSpO2Low, Severity: SeverityHigh, Field: "spo2_pct", Label: "SpO2", Unit: "%",
	Low: 90, High: math.NaN(), Sustain: 30 * time.Second,
	ClearLow: 92, ClearHigh: math.NaN(), Clear: 60 * time.Second}

// HeartRate fires on heart rate above 120 or below 50 beats/min sustained
// 60 s (field hr_bpm, from the ECG; pulse_bpm is deliberately not used).
//
// Source: NEWS2 (Royal College of Physicians 2017) scores HR >= 131 as 3,
// 111-130 as 2, <= 40 as 3 and 41-50 as 1. Our > 120 sits inside the NEWS2
// 2-point band (more sensitive than its 3-point band), and our < 50 matches
// the upper edge of its 1-point band (41-50, where 50 itself scores 1 in
// NEWS2 but does not breach here). The 60 s sustain is ours.
//
// It clears at 55-110 bpm held 60 s (110 is the top of the NEWS2 1-point
// band 91-110; 55 is ours, 5 bpm inside the breach bound).
var HeartRate = Threshold{Type: TypeHeartRate, Severity: SeverityHigh, Field: "hr_bpm", Label: "Heart rate", Unit: "bpm",
	Low: 50, High: 120, Sustain: 60 * time.Second,
	ClearLow: 55, ClearHigh: 110, Clear: 60 * time.Second}

// Respiration fires on respiration below 8 or above 25 breaths/min sustained
// 60 s (field resp_per_min).
//
// Source: NEWS2 (Royal College of Physicians 2017) scores RR <= 8 as 3 and
// >= 25 as 3. Our bounds are strict (8 and 25 themselves do not breach), so
// each is one breath/min less sensitive than the NEWS2 3-point bands. The
// 60 s sustain is ours.
//
// It clears at 10-22 /min held 60 s (inside the NEWS2 1- and 2-point bands
// 9-11 and 21-24; the bounds and the 60 s are ours).
var Respiration = Threshold{Type: TypeRespiration, Severity: SeverityHigh, Field: "resp_per_min", Label: "Respiration", Unit: "/min",
	Low: 8, High: 25, Sustain: 60 * time.Second,
	ClearLow: 10, ClearHigh: 22, Clear: 60 * time.Second}

// DefaultThresholds are the vitals rules of this release.
var DefaultThresholds = []Threshold{SpO2Low, HeartRate, Respiration}

// DefaultMaxGap is the longest gap in device time between two samples of a
// field that keeps a sustain window going.
const DefaultMaxGap = 10 * time.Second

// window tracks one threshold for one device.
type window struct {
	active bool
	high   bool // direction of the breach: above High
	start  time.Time
	last   time.Time // device time of the last sample of the field
	seen   bool
	worst  float64
}

// firing is a threshold that fired on a sample.
type firing struct {
	Threshold Threshold
	At        time.Time // device time of the sample that completed the window
	Worst     float64
	Span      time.Duration
}

// Detail renders the human text of the alert, e.g. "SpO2 84 % for 30 s".
func (f firing) Detail() string {
	return fmt.Sprintf("%s %g %s for %d s", f.Threshold.Label, f.Worst, f.Threshold.Unit, int(f.Span/time.Second))
}

// vitals evaluates thresholds on the readings of one device. It is not safe
// for concurrent use.
type vitals struct {
	thresholds []Threshold
	maxGap     time.Duration
	windows    []window
	calm       []calmWindow
	// cleared collects the clear events of observe; see takeCleared.
	cleared []clearing

	// The (boot, seq) of the newest reading seen: readings are
	// deduplicated by sequence number, never by timestamp.
	seqSeen bool
	boot    uint32
	seq     uint64
}

func newVitals(ths []Threshold, maxGap time.Duration) *vitals {
	return &vitals{thresholds: ths, maxGap: maxGap, windows: make([]window, len(ths)), calm: make([]calmWindow, len(ths))}
}

// observe feeds one reading (boot and sequence number of the reading, device
// time t, values by field) and returns the thresholds that fired on it. See
// docs/alerting.md for the window rules:
//   - a reading whose seq is not greater than the newest seen for the same
//     boot (a QoS 1 redelivery or an out-of-order delivery) is ignored;
//     a reading of another boot resets every window and starts over;
//   - a window starts at the first breaching sample and fires once breaching
//     samples span >= Sustain;
//   - a sample in the normal range resets it;
//   - a reading without the field neither breaks nor extends it;
//   - a gap > maxGap between two samples of the field resets it (the later
//     sample may start a new window);
//   - a newer sample (greater seq) with a device time earlier than the
//     previous sample of the field is a device clock jump: the window is
//     reset as after a gap and continues from that sample;
//   - a breach that flips direction (above High to below Low) restarts it.
//
// After firing, a window re-arms at the firing sample: a breach that goes on
// for another full Sustain fires again.
func (v *vitals) observe(boot uint32, seq uint64, t time.Time, values map[string]float64) []firing {
	switch {
	case !v.seqSeen:
	case boot != v.boot:
		for i := range v.windows {
			v.windows[i] = window{}
			v.calm[i] = calmWindow{}
		}
	case seq <= v.seq:
		return nil // already seen
	}
	v.seqSeen, v.boot, v.seq = true, boot, seq
	var out []firing
	for i, th := range v.thresholds {
		x, ok := values[th.Field]
		if !ok {
			continue
		}
		w := &v.windows[i]
		// A gap, or a clock that jumped back: start over from this sample.
		gap := w.seen && (t.Before(w.last) || t.Sub(w.last) > v.maxGap)
		w.seen, w.last = true, t
		v.observeCalm(i, th, t, x, gap)
		if !th.breaches(x) {
			*w = window{seen: true, last: t}
			continue
		}
		high := !math.IsNaN(th.High) && x > th.High
		if !w.active || gap || high != w.high {
			*w = window{active: true, high: high, start: t, last: t, seen: true, worst: x}
		}
		if (high && x > w.worst) || (!high && x < w.worst) {
			w.worst = x
		}
		if t.Sub(w.start) >= th.Sustain {
			out = append(out, firing{Threshold: th, At: t, Worst: w.worst, Span: t.Sub(w.start)})
			// Re-arm: the next firing needs another full Sustain of breach.
			w.start, w.worst = t, x
		}
	}
	return out
}
