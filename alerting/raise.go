// Stage 3 entry, the rules' decisions into the store: raise opens or
// repeats an alert, autoResolve clears one, commentOpen notes on one. Each
// call returns only when the decision is stored (or ctx ends); see durably.
// The lifecycle itself (transactions, history, outbox rows, escalation) is
// the Manager's, in store.go and escalation.go.

package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store retry backoff: the first retry after retryFirst, doubling up to
// retryMax (a fall's decision) or retryMaxNormal (the rest).
const (
	retryFirst     = 50 * time.Millisecond
	retryMax       = 500 * time.Millisecond
	retryMaxNormal = 2 * time.Second
)

// storeHealth is the state of the alert store as the decisions see it.
type storeHealth struct {
	failing prometheus.Gauge
	retries prometheus.Counter

	mu      sync.Mutex
	stuck   int       // decisions currently being retried
	since   time.Time // when the oldest of them first failed
	lastErr error
	lastLog time.Time
}

// Ready reports whether the engine can do its job: nil once Run has
// reloaded the open alerts and both MQTT sessions are subscribed, and while
// every decision reaches the alert store;
// otherwise an error that says since when and why (served as /readyz).
func (s *Service) Ready() error {
	if !s.started.Load() {
		return errors.New("alerting: starting (open alerts not reloaded or not subscribed yet)")
	}
	h := &s.store
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stuck > 0 {
		return fmt.Errorf("alerting: %d decision(s) cannot be stored since %s: %w", h.stuck, h.since.UTC().Format(time.RFC3339), h.lastErr)
	}
	return nil
}

// durably runs one store operation of a decision (what names it in logs)
// until it succeeds or ctx ends; only the latter returns an error, so the
// message that led to the decision stays unacknowledged. A store error
// (SQLITE_BUSY after busy_timeout, a PostgreSQL connection terminated by a
// restart or failover: database/sql then takes a fresh connection, ...) is
// retried with backoff, never dropped. While any decision waits, Ready
// fails, eldercare_alerting_store_failing is 1, each failed attempt counts
// in eldercare_alerting_store_retries_total, and one line a minute is
// logged. A decision of the normal lane (telemetry, status) does not retry
// while a fall or SOS event is queued or being handled: the falls are
// retried first.
func (s *Service) durably(ctx context.Context, what string, op func(ctx context.Context) error) error {
	wait := retryFirst
	maxWait := retryMaxNormal
	urgent := urgentLane(ctx)
	if urgent {
		maxWait = retryMax
	}
	stuck := false
	defer func() {
		if stuck {
			s.unstuck(what)
		}
	}()
	for {
		// A decision of the normal lane lets a pending fall go first.
		if urgent || !stuck || !s.lanes.urgentActive() {
			err := op(ctx)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
			if !stuck {
				stuck = true
				s.stuck(err)
			}
			s.failed(what, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

func (s *Service) stuck(err error) {
	h := &s.store
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stuck == 0 {
		h.since = s.cfg.Now()
		h.failing.Set(1)
	}
	h.stuck++
	h.lastErr = err
}

// failed counts a failed attempt and logs at most one line a minute.
func (s *Service) failed(what string, err error) {
	h := &s.store
	h.retries.Inc()
	now := s.cfg.Now()
	h.mu.Lock()
	h.lastErr = err
	logNow := now.Sub(h.lastLog) >= time.Minute
	if logNow {
		h.lastLog = now
	}
	n, since := h.stuck, h.since
	h.mu.Unlock()
	if logNow {
		s.log.Error("alerting: alert store failing; holding the messages and retrying", "decision", what,
			"waiting", n, "since", since, "err", err)
	}
}

func (s *Service) unstuck(what string) {
	h := &s.store
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stuck--
	if h.stuck == 0 {
		h.failing.Set(0)
		s.log.Info("alerting: alert store back; held decisions stored", "last", what, "after", s.cfg.Now().Sub(h.since).Round(time.Millisecond))
		h.lastLog = time.Time{}
	}
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
