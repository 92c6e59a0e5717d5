package firmwaresim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// VitalsConfig configures a simulated vitals monitor.
type VitalsConfig struct {
	DeviceConfig
	// File is a BIDMC numerics file to replay (see ReadBIDMC).
	File string
	// Rows are replayed when File is empty.
	Rows []VitalsRow
	// Speed is the replay speed, a factor of real time in (0, MaxSpeed];
	// 0 means 1.
	Speed float64
	// Loop replays the recording again and again until ctx is cancelled.
	Loop bool
}

// Validate reports every problem of c.
func (c VitalsConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if c.File == "" && len(c.Rows) == 0 {
		errs = append(errs, errors.New("vitals: a recording (file) is required"))
	}
	if c.Speed != 0 {
		errs = append(errs, CheckSpeed(c.Speed))
	}
	return errors.Join(errs...)
}

// RunVitals runs a simulated vitals monitor (kind vitals_monitor): it
// connects, replays the BIDMC recording cfg.File (or cfg.Rows) as one
// reading per row with values hr_bpm, pulse_bpm (beats/min), resp_per_min
// (breaths/min) and spo2_pct (%), omitting missing values and skipping
// rows with none, paced and stamped as Anchor describes, and ends as
// cfg.OnEnd says. It returns when the replay ends (after the end action)
// or when ctx is cancelled (nil). Errors name the file and line of a bad
// recording, or the topic of a failed publish.
func RunVitals(ctx context.Context, cfg VitalsConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rows := cfg.Rows
	if cfg.File != "" {
		var err error
		if rows, err = ReadBIDMCFile(cfg.File); err != nil {
			return err
		}
	}
	speed := cfg.Speed
	if speed == 0 {
		speed = 1
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	return runDevice(ctx, cfg.DeviceConfig, device.VitalsMonitor, func(ctx context.Context, c *Conn) error {
		n, err := replayVitals(ctx, c, rows, speed, cfg.Loop, cfg.Now)
		c.log.Info("vitals replay done", "file", cfg.File, "readings", n, "speed", speed)
		return err
	})
}

// replayVitals publishes the rows with values, paced and stamped by an
// Anchor per pass, and returns how many readings it published.
func replayVitals(ctx context.Context, pub readingPublisher, rows []VitalsRow, speed float64, loop bool, now func() time.Time) (int, error) {
	type sample struct {
		t time.Duration
		v map[string]float64
	}
	var samples []sample
	for _, r := range rows {
		if v := r.Values(); v != nil {
			samples = append(samples, sample{r.T, v})
		}
	}
	if len(samples) == 0 {
		return 0, errors.New("vitals: the recording has no row with a value")
	}
	// Between passes leave one recorded sample interval, so that device
	// time keeps its spacing across a loop at 1x.
	gap := time.Second
	if len(samples) > 1 {
		gap = samples[1].t - samples[0].t
	}
	n := 0
	start := now()
	for {
		a := Anchor{Start: start, First: samples[0].t, Last: samples[len(samples)-1].t, Speed: speed}
		for _, s := range samples {
			if err := sleepUntil(ctx, now, a.SendAt(s.t)); err != nil {
				return n, err
			}
			if err := pub.PublishReading(ctx, a.Stamp(s.t), s.v); err != nil {
				return n, fmt.Errorf("vitals reading at %s of the recording: %w", s.t, err)
			}
			n++
		}
		if !loop {
			return n, nil
		}
		start = a.End().Add(scale(gap, speed))
	}
}
