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
	// AwaitHelp, if positive, keeps the button running after its presses
	// until the platform's call_acknowledged command arrives ("help is
	// coming") or AwaitHelp has passed, whichever is first. 0: end after
	// the presses. Commands are answered from the start either way.
	AwaitHelp time.Duration
	// Help, if set, is where the button shows "help is coming" (see
	// HelpState); a new press clears it.
	Help *HelpState
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
	if c.AwaitHelp < 0 {
		errs = append(errs, fmt.Errorf("sos: await help %s must not be negative", c.AwaitHelp))
	}
	return errors.Join(errs...)
}

// RunSOS runs a simulated SOS button (kind sos_button): it publishes one
// sos event per press, stamped with the wall clock, the first at once and
// the next ones cfg.Interval apart, then ends as cfg.OnEnd says (after
// cfg.AwaitHelp: see SOSConfig). It answers commands on its cmd topic
// meanwhile: call_acknowledged shows "help is coming" (logged at info,
// cfg.Help set) and is accepted, ping is accepted, the rest refused
// unsupported. It returns nil when ctx is cancelled, and an error wrapping
// ErrNoHelp when cfg.AwaitHelp passed without "help is coming" for the
// last press (an acknowledgement of an earlier press does not count).
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
	noHelp := false
	err := runDevice(ctx, cfg.DeviceConfig, device.SOSButton, func(ctx context.Context, c *Conn) error {
		help := make(chan struct{}, 1)
		handle := helpHandler(c.log, cfg.Device, device.SOSButton, cfg.Help, func(device.Command) {
			select {
			case help <- struct{}{}:
			default:
			}
		})
		if err := c.Commands(ctx, handle); err != nil {
			return err
		}
		for i := range presses {
			if i > 0 {
				if err := sleep(ctx, interval); err != nil {
					return err
				}
			}
			cfg.Help.reset()
			select { // a new press is a new call: an earlier acknowledgement does not answer it
			case <-help:
			default:
			}
			if err := c.PublishEvent(ctx, cfg.Now(), device.EventSOS, nil); err != nil {
				return fmt.Errorf("sos press %d: %w", i+1, err)
			}
		}
		if cfg.AwaitHelp <= 0 {
			return nil
		}
		select {
		case <-help:
		case <-time.After(cfg.AwaitHelp):
			c.log.Warn("sim: no call_acknowledged within the wait: nobody acknowledged the call", "device", cfg.Device, "waited", cfg.AwaitHelp)
			noHelp = true
		case <-ctx.Done():
		}
		return nil
	})
	if err == nil && noHelp {
		return fmt.Errorf("sos %s: %w within %s of the last press", cfg.Device, ErrNoHelp, cfg.AwaitHelp)
	}
	return err
}

// ErrNoHelp is what RunSOS returns (wrapped) when SOSConfig.AwaitHelp
// passed without a call_acknowledged for the last press: the call was not
// acknowledged, so `eldercare sim sos --await-help` fails.
var ErrNoHelp = errors.New("no call_acknowledged (nobody acknowledged the call)")
