// Stage 3 entry, the rules' decisions into the store: raise opens or
// repeats an alert, autoResolve clears one, commentOpen notes on one. Each
// call returns only when the decision is stored (or ctx ends); see durably.
// The lifecycle itself (transactions, history, outbox rows, escalation) is
// the Manager's, in store.go and escalation.go.

package alerting

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// durably runs one store operation of a decision. what names it in logs.
func (s *Service) durably(ctx context.Context, what string, op func(ctx context.Context) error) error {
	err := op(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error("alerting: could not store "+what, "err", err)
	}
	return err
}

// raise opens an alert (or notes a repeat). The resident is the one bound
// to the device at spec.At (device time for readings and events, wall time
// for offline and malformed events); device_offline alerts still
// deduplicate per device (see dedupKey), the resident only tells staff whose
// device went silent.
func (s *Service) raise(ctx context.Context, spec openSpec) error {
	if s.residents != nil {
		if r, ok := s.residents.ResidentAt(spec.Device, spec.At); ok {
			id := r.ID
			spec.Resident = &id
		}
	}
	return s.raiseFor(ctx, spec)
}

// raiseFor raises spec for the resident it names (nil: unassigned); the
// absence rules know the resident already.
func (s *Service) raiseFor(ctx context.Context, spec openSpec) error {
	spec.Key = alertKey(spec.Resident, spec.Device, spec.Type)
	var a Alert
	var created, dup bool
	err := s.durably(ctx, "alert "+spec.Type+" of "+spec.Device, func(ctx context.Context) error {
		var err error
		a, created, err = s.m.open(ctx, spec)
		if errors.Is(err, errDuplicateEvent) {
			dup = true
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if dup {
		// Raised already, by this or another replica (see openSpec.EventKey).
		s.log.Info("alerting: duplicate event ignored", "event", spec.EventKey, "type", spec.Type)
		return nil
	}
	s.mu.Lock()
	s.open[spec.Key] = a.ID
	s.mu.Unlock()
	if created {
		s.opened.WithLabelValues(spec.Type).Inc()
		resident := "unassigned"
		if spec.Resident != nil {
			resident = *spec.Resident
		}
		s.log.Info("alert opened", "id", a.ID, "type", a.Type, "site", a.Site, "device", a.Device, "resident", resident, "detail", a.Detail)
	} else {
		level := slog.LevelDebug // a continuing vitals breach repeats every sustain period
		if spec.NotifyRepeat {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "alert repeated", "id", a.ID, "type", a.Type, "device", a.Device, "notified", spec.NotifyRepeat)
	}
	if spec.Type == TypeDeviceOffline {
		return s.deviceDown(ctx, spec.Site, spec.Device, spec.At)
	}
	return nil
}

// autoResolve resolves the open alert with key as the system, if this
// process knows it open (s.open is reloaded from the store on start).
func (s *Service) autoResolve(ctx context.Context, key, note string) error {
	s.mu.Lock()
	_, known := s.open[key]
	s.mu.Unlock()
	if !known {
		return nil
	}
	var a Alert
	var ok bool
	err := s.durably(ctx, "resolve of "+key, func(ctx context.Context) error {
		var err error
		a, ok, err = s.m.resolveByKey(ctx, key, note)
		return err
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.open, key)
	s.mu.Unlock()
	if ok {
		s.log.Info("alert cleared", "id", a.ID, "type", a.Type, "note", note)
	}
	return nil
}

// commentOpen adds a system comment to the open alert with key, if any.
func (s *Service) commentOpen(ctx context.Context, key, channel, text string) error {
	return s.durably(ctx, "comment on "+key, func(ctx context.Context) error {
		_, err := s.m.commentByKey(ctx, key, channel, text)
		return err
	})
}

// lastOpened returns when the newest alert with key was opened (zero if
// none).
func (s *Service) lastOpened(ctx context.Context, key string) (time.Time, error) {
	var t time.Time
	err := s.durably(ctx, "read of "+key, func(ctx context.Context) error {
		var err error
		t, err = s.m.lastOpened(ctx, key)
		return err
	})
	return t, err
}
