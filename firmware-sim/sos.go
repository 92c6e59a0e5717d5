package firmwaresim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// SOSConfig configures a simulated SOS button.
type SOSConfig struct {
	DeviceConfig
	// Presses is the number of presses; 0 means 1.
	Presses int
	// Interval is the time between presses; 0 means 30 s.
	Interval time.Duration
}

// Validate reports every problem of c.
func (c SOSConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if c.Presses < 0 {
		errs = append(errs, fmt.Errorf("sos: presses %d must be >= 1", c.Presses))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("sos: interval %s must not be negative", c.Interval))
	}
	return errors.Join(errs...)
}

// RunSOS runs a simulated SOS button (kind sos_button): it publishes one
// sos event per press, stamped with the wall clock, the first at once and
// the next ones cfg.Interval apart, then ends as cfg.OnEnd says. It
// returns nil when ctx is cancelled.
func RunSOS(ctx context.Context, cfg SOSConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	presses, interval := cfg.Presses, cfg.Interval
	if presses == 0 {
		presses = 1
	}
	if interval == 0 {
		interval = 30 * time.Second
	}
	return runDevice(ctx, cfg.DeviceConfig, device.SOSButton, func(ctx context.Context, c *Conn) error {
		for i := range presses {
			if i > 0 {
				if err := sleep(ctx, interval); err != nil {
					return err
				}
			}
			if err := c.PublishEvent(ctx, cfg.Now(), device.EventSOS, nil); err != nil {
				return fmt.Errorf("sos press %d: %w", i+1, err)
			}
		}
		return nil
	})
}
