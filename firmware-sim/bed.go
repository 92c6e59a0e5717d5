package firmwaresim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// BedPhase is one stretch of a bed pattern: the occupant is in bed or out
// of it for For. For == 0 holds the state until the run is stopped.
type BedPhase struct {
	InBed bool
	For   time.Duration
}

// ParseBedPattern parses a bed pattern such as "in:30s,out:10s,in:5m":
// comma-separated phases "in:<duration>" or "out:<duration>" (Go duration
// syntax); a duration of 0 holds that state until stopped and may only be
// last.
func ParseBedPattern(s string) ([]BedPhase, error) {
	var out []BedPhase
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		state, dur, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("bed pattern %q: phase %d %q is not in:<duration> or out:<duration>", s, i+1, part)
		}
		var p BedPhase
		switch strings.TrimSpace(state) {
		case "in":
			p.InBed = true
		case "out":
		default:
			return nil, fmt.Errorf("bed pattern %q: phase %d state %q is not in or out", s, i+1, state)
		}
		d, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bed pattern %q: phase %d duration %q is not a duration >= 0 such as 30s or 5m", s, i+1, dur)
		}
		p.For = d
		out = append(out, p)
	}
	for i, p := range out[:len(out)-1] {
		if p.For == 0 {
			return nil, fmt.Errorf("bed pattern %q: phase %d holds forever (0) but is not the last", s, i+1)
		}
	}
	return out, nil
}

// BedConfig configures a simulated bed sensor.
type BedConfig struct {
	DeviceConfig
	// Pattern is the sequence of in-bed and out-of-bed phases.
	Pattern []BedPhase
	// Loop repeats the pattern until ctx is cancelled.
	Loop bool
	// Interval is the time between in_bed readings; 0 means 30 s.
	Interval time.Duration
	// Speed divides every duration (pattern and interval); 0 means 1.
	Speed float64
}

// Validate reports every problem of c.
func (c BedConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if len(c.Pattern) == 0 {
		errs = append(errs, errors.New("bed: the pattern has no phase"))
	}
	if c.Loop && len(c.Pattern) > 0 && c.Pattern[len(c.Pattern)-1].For == 0 {
		errs = append(errs, errors.New("bed: a looping pattern cannot end with a phase held forever (duration 0)"))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("bed: interval %s must not be negative", c.Interval))
	}
	if c.Speed != 0 {
		errs = append(errs, CheckSpeed(c.Speed))
	}
	return errors.Join(errs...)
}

// RunBed runs a simulated bed sensor (kind bed_sensor): it walks through
// cfg.Pattern, publishing a bed_exit event when the occupant leaves the
// bed and a bed_entry event when they return, and an in_bed reading (1 in
// bed, 0 out) at the start of every phase and every cfg.Interval. Times are
// stamped with the wall clock. It ends as cfg.OnEnd says after the pattern
// (never, with Loop or a held last phase) and returns nil when ctx is
// cancelled.
func RunBed(ctx context.Context, cfg BedConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	return runDevice(ctx, cfg.DeviceConfig, device.BedSensor, func(ctx context.Context, c *Conn) error {
		return runBedPattern(ctx, c, &bedState{}, cfg.Pattern, cfg.Loop, cfg.Interval, cfg.Speed, cfg.Now)
	})
}

// bedState is the occupancy last reported by a bed sensor.
type bedState struct {
	known, inBed bool
}

// runBedPattern walks through pattern (repeatedly with loop), publishing
// an event on each change from the state in st and in_bed readings.
func runBedPattern(ctx context.Context, pub publisher, st *bedState, pattern []BedPhase, loop bool, interval time.Duration, speed float64, now func() time.Time) error {
	if interval == 0 {
		interval = 30 * time.Second
	}
	if speed == 0 {
		speed = 1
	}
	for {
		for _, p := range pattern {
			if st.known && p.InBed != st.inBed {
				typ := device.EventBedExit
				if p.InBed {
					typ = device.EventBedEntry
				}
				if err := pub.PublishEvent(ctx, now(), typ, nil); err != nil {
					return fmt.Errorf("bed: %w", err)
				}
			}
			st.known, st.inBed = true, p.InBed
			v := 0.0
			if p.InBed {
				v = 1
			}
			end := now().Add(scale(p.For, speed))
			for {
				if err := pub.PublishReading(ctx, now(), map[string]float64{"in_bed": v}); err != nil {
					return fmt.Errorf("bed: %w", err)
				}
				next := now().Add(scale(interval, speed))
				if p.For > 0 && !next.Before(end) {
					break
				}
				if err := sleepUntil(ctx, now, next); err != nil {
					return err
				}
			}
			if err := sleepUntil(ctx, now, end); err != nil {
				return err
			}
		}
		if !loop {
			return nil
		}
	}
}
