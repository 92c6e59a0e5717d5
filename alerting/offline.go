// Stage 2, rules: device supervision. Every decoded message of a device
// goes to the Supervisor (supervision.go), which decides from the data: a
// device is offline only when it misses its own report interval (registry:
// device, kind, default), a gateway that goes away (last will, heartbeat
// missed) is ONE device_offline alert naming its devices, a sensor that
// keeps reporting without its vital field raises vital_missing, and a
// status naming devices not registered behind its gateway is refused
// (counted, logged once). This file turns the verdicts into alerts through
// raise.go; a safety device that goes down leaves its resident unprotected.

package alerting

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
)

// TypeVitalMissing: a device keeps sending readings without one of its
// vital fields (device.VitalFields: a vitals monitor without SpO2 or heart
// rate; the probe is off or broken). Resolved when the field is back.
const TypeVitalMissing = "vital_missing"

// superviseEvery is how often (wall time) the Supervisor's timers are
// checked.
const superviseEvery = 250 * time.Millisecond

// newSupervisor builds the Service's Supervisor over the registry of
// cfg.Rules.Directory (when it can tell report intervals, as a
// registry.Snapshot does). A device the registry does not know and that
// announces no kind gets cfg.OfflineTimeout as its interval.
func newSupervisor(cfg Config) *Supervisor {
	sc := SupervisorConfig{Fallback: cfg.OfflineTimeout}
	if sc.Fallback == 0 {
		sc.Fallback = DefaultOfflineTimeout
	}
	if dir := cfg.Rules.Directory; dir != nil {
		sc.Registry = func() SupervisedRegistry {
			if r, ok := dir().(SupervisedRegistry); ok {
				return r
			}
			return nil
		}
	}
	return NewSupervisor(sc)
}

// supervisionCollectors are the supervision metrics:
// eldercare_alerting_status_refused_total{reason} and
// eldercare_alerting_devices_offline.
func (s *Service) supervisionCollectors() []prometheus.Collector {
	reasons := []string{"site", "gateway", "unregistered"}
	refused := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eldercare_alerting_status_refused_total",
		Help: "Device ids in status messages refused because the device is not registered behind the publishing gateway (on another site, behind another gateway, or unregistered); all reasons."},
		func() float64 {
			n := 0
			r := s.devices.Refused()
			for _, k := range reasons {
				n += r[k]
			}
			return float64(n)
		})
	offline := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_alerting_devices_offline",
		Help: "Devices and gateways with an offline (or gateway lost) verdict standing."},
		func() float64 { return float64(len(s.devices.Offline())) })
	return []prometheus.Collector{refused, offline}
}

// offlineLoop checks the Supervisor's timers on the wall clock.
func (s *Service) offlineLoop(ctx context.Context) {
	t := time.NewTicker(superviseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.checkOffline(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: offline check", "err", err)
			}
			s.offlineChecks.Add(1)
		}
	}
}

// checkOffline applies the verdicts due now: devices past their interval,
// gateways past their heartbeat.
func (s *Service) checkOffline(ctx context.Context) error {
	return s.verdicts(ctx, s.devices.Tick(s.cfg.Now()))
}

// seen records an event (or any message) of a device.
func (s *Service) seen(ctx context.Context, t device.Topic, now time.Time) error {
	if err := s.verdicts(ctx, s.devices.Heard(t.Site, t.Device, now)); err != nil {
		return err
	}
	return s.backAfterRestart(ctx, t.Device)
}

// seenTelemetry records a telemetry message: the device is heard from and
// its vital fields are checked.
func (s *Service) seenTelemetry(ctx context.Context, t device.Topic, tel *device.Telemetry, now time.Time) error {
	if err := s.verdicts(ctx, s.devices.Telemetry(t.Site, t.Device, tel.Readings, now)); err != nil {
		return err
	}
	return s.backAfterRestart(ctx, t.Device)
}

// backAfterRestart notes "device back online" on a device_offline alert
// that is open from before this process started (the Supervisor does not
// know of it), once.
func (s *Service) backAfterRestart(ctx context.Context, dev string) error {
	key := dedupKey(nil, dev, TypeDeviceOffline)
	s.mu.Lock()
	_, known := s.open[key]
	if known {
		delete(s.open, key) // one note per comeback
	}
	s.mu.Unlock()
	if !known {
		return nil
	}
	if err := s.deviceUp(ctx, dev); err != nil {
		return err
	}
	return s.commentOpen(ctx, key, ChannelRule, "device back online")
}

// status applies a status message of a device, or of a gateway about itself
// and its devices.
func (s *Service) status(ctx context.Context, t device.Topic, st *device.Status, retained bool, now time.Time) error {
	vs := s.devices.Status(t.Site, t.Device, st, retained, now)
	refused := false
	for _, v := range vs {
		refused = refused || v.Kind == VerdictRefused && v.Whole
	}
	if !refused {
		s.noteKind(t.Device, st.Kind)
	}
	if err := s.verdicts(ctx, vs); err != nil {
		return err
	}
	if st.State == device.Online && !refused {
		if !retained { // a retained report may be old: the next heartbeat says
			if err := s.heldLocalAlarms(ctx, t, st, vs, now); err != nil { // localalarm.go
				return err
			}
		}
		return s.backAfterRestart(ctx, t.Device)
	}
	return nil
}

// verdicts turns the Supervisor's verdicts into alerts. It returns the
// first store error (the message is then not acknowledged).
func (s *Service) verdicts(ctx context.Context, vs []Verdict) error {
	for _, v := range vs {
		if err := s.verdict(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) verdict(ctx context.Context, v Verdict) error {
	switch v.Kind {
	case VerdictOffline, VerdictGatewayLost:
		if v.Retained {
			// A retained will seen again after a restart raises nothing if
			// an offline alert for the device was opened since the will
			// was composed.
			last, err := s.lastOpened(ctx, dedupKey(nil, v.Device, TypeDeviceOffline))
			if err != nil {
				return err
			}
			if !last.IsZero() && !last.Before(v.StatusTS) {
				return nil
			}
		}
		if v.Kind == VerdictGatewayLost {
			s.log.Warn("alerting: gateway lost", "gateway", v.Device, "site", v.Site, "devices", strings.Join(v.Devices, ","), "detail", v.Detail)
		}
		return s.raise(ctx, openSpec{Site: v.Site, Device: v.Device, Type: TypeDeviceOffline, Severity: SeverityWarning, At: v.At, Detail: v.Detail})
	case VerdictBack:
		key := dedupKey(nil, v.Device, TypeDeviceOffline)
		s.mu.Lock()
		delete(s.open, key) // noted here; backAfterRestart need not
		s.mu.Unlock()
		if err := s.deviceUp(ctx, v.Device); err != nil {
			return err
		}
		return s.commentOpen(ctx, key, ChannelRule, "device back online")
	case VerdictVitalMissing:
		return s.raise(ctx, openSpec{Site: v.Site, Device: v.Device, Type: TypeVitalMissing, Severity: SeverityHigh, At: v.At, Detail: v.Detail})
	case VerdictVitalBack:
		var resident *string
		if id, ok := s.residentOf(v.Device, v.At); ok {
			resident = &id
		}
		return s.autoResolve(ctx, alertKey(resident, v.Device, TypeVitalMissing), "cleared: "+v.Detail)
	case VerdictRefused:
		if len(v.Fresh) == 0 {
			return nil
		}
		s.log.Warn("alerting: status refused (logged once per gateway and device)", "site", v.Site, "publisher", v.Device,
			"refused", strings.Join(v.Fresh, ","), "reason", v.Reason, "detail", v.Detail)
	}
	return nil
}

// deviceDown is called when device_offline is raised for dev: a safety
// device bound to a resident leaves the resident unprotected.
func (s *Service) deviceDown(ctx context.Context, site, dev string, at time.Time) error {
	kind := s.kindOf(dev)
	if !isSafetyKind(kind) {
		return nil
	}
	resident, ok := s.residentOf(dev, at)
	if !ok {
		return nil
	}
	s.rules.mu.Lock()
	news := s.rules.unprot.down(resident, dev, kind)
	detail := s.rules.unprot.detail(resident)
	s.rules.mu.Unlock()
	if !news {
		return nil
	}
	return s.raiseFor(ctx, openSpec{Site: site, Resident: &resident, Device: dev, Type: TypeUnprotected, Severity: SeverityHigh,
		At: at, Detail: detail})
}

// deviceUp is called when dev is heard from: a resident whose last offline
// safety device it was is protected again.
func (s *Service) deviceUp(ctx context.Context, dev string) error {
	s.rules.mu.Lock()
	back := s.rules.unprot.up(dev)
	s.rules.mu.Unlock()
	for _, r := range back {
		resident := r
		if err := s.autoResolve(ctx, alertKey(&resident, dev, TypeUnprotected), "cleared: every safety device back online"); err != nil {
			return err
		}
	}
	return nil
}
