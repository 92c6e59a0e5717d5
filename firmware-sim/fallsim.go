package firmwaresim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/fall"
)

// FallConfig configures a simulated wrist fall detector.
type FallConfig struct {
	DeviceConfig
	// File is a WEDA-FALL accelerometer recording (*_accel.csv, see
	// fall.ReadAccelCSV), in m/s² or in g (converted; see
	// fall.NormalizeUnits).
	File string
	// Samples are replayed when File is empty.
	Samples []fall.Sample
	// Speed is the replay speed, a factor of real time in (0, MaxSpeed];
	// 0 means 1.
	Speed float64
	// Loop replays the recording again and again until ctx is cancelled.
	Loop bool
	// BatteryEvery is the device time between battery_pct readings,
	// the first at the first sample; 0 means 60 s, negative disables them.
	BatteryEvery time.Duration
}

// Validate reports every problem of c.
func (c FallConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if c.File == "" && len(c.Samples) == 0 {
		errs = append(errs, errors.New("fall: an accelerometer recording (file) is required"))
	}
	if c.Speed != 0 {
		errs = append(errs, CheckSpeed(c.Speed))
	}
	return errors.Join(errs...)
}

// ReadAccelFile reads a WEDA-FALL accelerometer file with
// fall.ReadAccelCSV and checks its unit with fall.NormalizeUnits: a
// recording in g is converted to m/s², one in neither unit is refused.
// Errors name the file.
func ReadAccelFile(path string) ([]fall.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("accelerometer recording: %w", err)
	}
	defer f.Close()
	s, err := fall.ReadAccelCSV(f)
	if err != nil {
		return nil, fmt.Errorf("accelerometer recording %s: %w", path, err)
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("accelerometer recording %s: no samples", path)
	}
	s, _, err = fall.NormalizeUnits(s)
	if err != nil {
		return nil, fmt.Errorf("accelerometer recording %s: %w", path, err)
	}
	return s, nil
}

// RunFall runs a simulated wrist fall detector (kind fall_detector): it
// connects, feeds the accelerometer recording sample by sample, paced in
// real time times cfg.Speed, through fall.NewDetector(fall.DefaultConfig()),
// and publishes one fall event per detection with attrs
// {"peak_accel_ms2": largest raw acceleration magnitude near the impact,
// m/s^2, "confidence": the detector's fall probability, 0-1}, stamped at the
// impact by the Anchor rule. It also publishes battery_pct (%) readings
// every cfg.BatteryEvery of device time. It ends as cfg.OnEnd says and
// returns nil when ctx is cancelled.
func RunFall(ctx context.Context, cfg FallConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	samples := cfg.Samples
	if cfg.File != "" {
		var err error
		if samples, err = ReadAccelFile(cfg.File); err != nil {
			return err
		}
	}
	speed := cfg.Speed
	if speed == 0 {
		speed = 1
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	return runDevice(ctx, cfg.DeviceConfig, device.FallDetector, func(ctx context.Context, c *Conn) error {
		b := newBattery(cfg.BatteryEvery)
		start := cfg.Now()
		for {
			a, n, err := replayFall(ctx, c, samples, start, speed, cfg.Now, b)
			c.log.Info("fall replay done", "file", cfg.File, "falls", n, "speed", speed)
			if err != nil || !cfg.Loop {
				return err
			}
			start = a.End().Add(scale(time.Second, speed))
		}
	})
}

// battery simulates a slowly draining battery reported every period of
// device time.
type battery struct {
	every time.Duration
	pct   float64
	next  time.Duration
}

func newBattery(every time.Duration) *battery {
	if every == 0 {
		every = time.Minute
	}
	return &battery{every: every, pct: 96}
}

// replayFall replays one pass of samples starting at wall time start and
// returns the pass's Anchor and the number of falls published.
func replayFall(ctx context.Context, pub publisher, samples []fall.Sample, start time.Time, speed float64, now func() time.Time, b *battery) (Anchor, int, error) {
	a := Anchor{Start: start, First: samples[0].T, Last: samples[len(samples)-1].T, Speed: speed}
	det := fall.NewDetector(fall.DefaultConfig())
	falls := 0
	publishFall := func(d fall.Detection) error {
		at := min(max(d.At, a.First), a.Last)
		attrs := map[string]any{"peak_accel_ms2": math.Round(d.RawPeakSVM*100) / 100, "confidence": math.Round(d.Score*1000) / 1000}
		if err := pub.PublishEvent(ctx, a.Stamp(at), device.EventFall, attrs); err != nil {
			return fmt.Errorf("fall event at %s of the recording: %w", d.At, err)
		}
		falls++
		return nil
	}
	if b != nil && b.every > 0 {
		b.next = a.First
	}
	for _, s := range samples {
		if b != nil && b.every > 0 && s.T >= b.next {
			if err := sleepUntil(ctx, now, a.SendAt(s.T)); err != nil {
				return a, falls, err
			}
			if err := pub.PublishReading(ctx, a.Stamp(s.T), map[string]float64{"battery_pct": math.Round(b.pct*10) / 10}); err != nil {
				return a, falls, fmt.Errorf("battery reading: %w", err)
			}
			b.pct = max(5, b.pct-0.1)
			b.next = s.T + b.every
		}
		d, ok := det.Push(s)
		if !ok {
			continue
		}
		// The firmware decides at this sample; it cannot send earlier.
		if err := sleepUntil(ctx, now, a.SendAt(s.T)); err != nil {
			return a, falls, err
		}
		if err := publishFall(d); err != nil {
			return a, falls, err
		}
	}
	if err := sleepUntil(ctx, now, a.End()); err != nil {
		return a, falls, err
	}
	for _, d := range det.Flush() {
		if err := publishFall(d); err != nil {
			return a, falls, err
		}
	}
	return a, falls, nil
}

// FallEvalResult is one line of EvalFalls' output: one trial.
type FallEvalResult struct {
	// File is the trial's path relative to the evaluated directory.
	File string `json:"file"`
	// Fall: the trial is a fall (folder F*, or "_Fall_" in the name).
	Fall bool `json:"fall"`
	// Detections counts the falls the detector reported.
	Detections int `json:"detections"`
	// FirstS is the impact time of the first detection, s from the start
	// of the recording; null when none.
	FirstS *float64 `json:"first_s"`
	// DecidedS is when the first detection was decided (about 3 s after
	// the impact); null when none.
	DecidedS *float64 `json:"decided_s"`
	// Score is the model's fall probability of the first detection, or
	// the highest candidate score when there was none.
	Score float64 `json:"score"`
	// Reason explains the outcome: which candidate was accepted, or why
	// the strongest one was rejected, or why the trial could not be read.
	Reason string `json:"reason"`
	// Window is the hand-marked fall window [start, end] s when
	// fall_timestamps.csv gives one.
	Window *[2]float64 `json:"window,omitempty"`
	// Timing of the first detection against Window: "before", "in",
	// "after" (decided within 3 s of the window's end) or "late".
	Timing string `json:"timing,omitempty"`
	// Detected: a detection falls in or after the window in time (see
	// fall.Detected); only with a Window.
	Detected *bool `json:"detected,omitempty"`
	// Unit the recording was found in ("m/s^2", or "g" converted).
	Unit string `json:"unit,omitempty"`
	// Error is set when the trial could not be read (bad CSV, unknown
	// unit); such a trial counts in neither total.
	Error string `json:"error,omitempty"`
}

// FallEvalSummary totals EvalFalls.
type FallEvalSummary struct {
	Falls, FallsDetected int
	Activities, False    int
	Unreadable           int
}

// String is the summary line "falls D/N detected, activities with a false
// fall F/M".
func (s FallEvalSummary) String() string {
	out := fmt.Sprintf("falls %d/%d detected, activities with a false fall %d/%d", s.FallsDetected, s.Falls, s.False, s.Activities)
	if s.Unreadable > 0 {
		out += fmt.Sprintf(" (%d unreadable trials skipped)", s.Unreadable)
	}
	return out
}

// EvalFalls replays every *_accel.csv under dir (fall.ListTrials) offline,
// without a broker, through the detector the product ships
// (fall.NewDetector(fall.DefaultConfig()), the same as RunFall and the
// gateway's accel source), resampled to resampleHz first when it is > 0.
// It writes one JSON object (FallEvalResult) per trial to w. A fall counts
// as detected when it has a detection and, where fall_timestamps.csv gives
// its window, when that detection is in time (fall.Detected). An activity
// counts as a false fall when it has any detection. It fails only when dir
// cannot be read or w cannot be written; an unreadable trial is reported
// in its line and counted apart.
func EvalFalls(dir string, resampleHz float64, w io.Writer) (FallEvalSummary, error) {
	var sum FallEvalSummary
	trials, err := fall.ListTrials(dir)
	if err != nil {
		return sum, err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, tr := range trials {
		r := evalTrial(tr, resampleHz)
		switch {
		case r.Error != "":
			sum.Unreadable++
		case tr.Fall:
			sum.Falls++
			if (r.Detected != nil && *r.Detected) || (r.Detected == nil && r.Detections > 0) {
				sum.FallsDetected++
			}
		default:
			sum.Activities++
			if r.Detections > 0 {
				sum.False++
			}
		}
		if err := enc.Encode(r); err != nil {
			return sum, fmt.Errorf("write result: %w", err)
		}
	}
	return sum, nil
}

func evalTrial(tr fall.Trial, hz float64) FallEvalResult {
	r := FallEvalResult{File: tr.Key + "_accel.csv", Fall: tr.Fall, Window: tr.Window}
	samples, unit, err := fall.ReadTrial(tr.Path)
	if err != nil {
		r.Error, r.Reason = err.Error(), "unreadable: "+err.Error()
		return r
	}
	r.Unit = string(unit)
	if hz > 0 {
		if samples, err = fall.Resample(samples, hz); err != nil {
			r.Error, r.Reason = err.Error(), err.Error()
			return r
		}
	}
	dets, cands := fall.Run(fall.DefaultConfig(), samples)
	r.Detections = len(dets)
	if len(dets) > 0 {
		d := dets[0]
		at, dec := d.At.Seconds(), d.DecidedAt.Seconds()
		r.FirstS, r.DecidedS, r.Score = &at, &dec, d.Score
		r.Reason = fmt.Sprintf("impact %.1f m/s^2 at %.2f s, fall score %.3f >= %.3f", d.RawPeakSVM, at, d.Score, fall.Trained.Threshold)
	} else {
		var best *fall.Candidate
		for i := range cands {
			if best == nil || cands[i].Score > best.Score {
				best = &cands[i]
			}
		}
		if best == nil {
			r.Reason = fmt.Sprintf("no impact candidate (no 50 ms mean magnitude >= %.1f m/s^2)", fall.DefaultConfig().CandidateThreshold)
		} else {
			r.Score = best.Score
			r.Reason = fmt.Sprintf("strongest candidate at %.2f s rejected: %s", best.At.Seconds(), best.Reason)
		}
	}
	if tr.Window != nil {
		ok := false
		if len(dets) > 0 {
			r.Timing = string(fall.Classify(dets[0], *tr.Window))
			_, ok = fall.Detected(dets, *tr.Window)
		}
		r.Detected = &ok
	}
	return r
}
