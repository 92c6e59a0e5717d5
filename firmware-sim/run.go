package firmwaresim

import (
	"context"
	"errors"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// readingPublisher publishes readings; *Conn implements it.
type readingPublisher interface {
	PublishReading(ctx context.Context, ts time.Time, values map[string]float64) error
}

// eventPublisher publishes events; *Conn implements it.
type eventPublisher interface {
	PublishEvent(ctx context.Context, ts time.Time, typ device.EventType, attrs map[string]any) error
}

// publisher publishes readings and events.
type publisher interface {
	readingPublisher
	eventPublisher
}

// runDevice connects one simulated device, runs body and ends the device
// as cfg.OnEnd says. A body stopped by the cancellation of ctx is a normal
// end and returns nil. When body fails, a silent end becomes a drop (there
// is nothing left to wait for).
func runDevice(ctx context.Context, cfg DeviceConfig, kind device.Kind, body func(context.Context, *Conn) error) error {
	conn, err := Connect(ctx, cfg, kind)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	err = body(ctx, conn)
	if err != nil && ctx.Err() != nil {
		err = nil
	}
	mode, _ := ParseOnEnd(string(cfg.OnEnd))
	if err != nil && mode == EndSilent {
		mode = EndDrop
	}
	return errors.Join(err, conn.End(ctx, mode))
}
