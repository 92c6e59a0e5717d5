package firmwaresim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/firmware-sim/fall"
)

// FallConfig configures a simulated wrist fall detector.
type FallConfig struct {
	DeviceConfig
	// File is a WEDA-FALL accelerometer recording (*_accel.csv, see
	// fall.ReadAccelCSV).
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
// fall.ReadAccelCSV. Errors name the file.
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
	return s, nil
}

// RunFall runs a simulated wrist fall detector (kind fall_detector): it
// connects, feeds the accelerometer recording sample by sample, paced in
// real time times cfg.Speed, through fall.NewDetector(fall.DefaultConfig()),
// and publishes one fall event per detection with attrs
// {"peak_accel_ms2": peak signal vector magnitude in m/s^2}, stamped at the
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
		attrs := map[string]any{"peak_accel_ms2": math.Round(d.PeakSVM*100) / 100}
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
