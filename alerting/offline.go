// Device supervision: what the engine knows of each device's liveness (wall
// time). Traffic arms a device's offline timer, a status message says a
// device is online, shut down, offline or unknown (its gateway's last will),
// and a silence past the timeout raises device_offline. A safety device that
// goes down leaves its resident unprotected. The decisions are written to
// the store through raise.go like any rule's.

package alerting

import (
	"context"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// deviceState is what the offline rule knows of a device (wall time).
type deviceState struct {
	site     string
	lastSeen time.Time
	armed    bool // a silence longer than the timeout raises an alert
	alerted  bool // an offline alert was raised and the device is silent
	// unknown: the device's gateway was lost, so nothing is known of it
	// until it is heard from again.
	unknown bool
}

// offlineLoop checks the silence of every device on the wall clock.
func (s *Service) offlineLoop(ctx context.Context) {
	every := min(time.Second, s.cfg.OfflineTimeout/4)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.checkOffline(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: offline check", "err", err)
			}
		}
	}
}

// checkOffline raises device_offline for every armed device silent for
// longer than OfflineTimeout (wall time).
func (s *Service) checkOffline(ctx context.Context) error {
	now := s.cfg.Now()
	type due struct{ id, site string }
	var list []due
	s.mu.Lock()
	for id, st := range s.devices {
		if st.armed && !st.alerted && now.Sub(st.lastSeen) > s.cfg.OfflineTimeout {
			st.alerted = true
			list = append(list, due{id, st.site})
		}
	}
	s.mu.Unlock()
	for _, d := range list {
		if err := s.raise(ctx, openSpec{Site: d.site, Device: d.id, Type: TypeDeviceOffline, Severity: SeverityWarning, At: now,
			Detail: fmt.Sprintf("no message for %s", s.cfg.OfflineTimeout)}); err != nil {
			return err
		}
	}
	return nil
}

// seen records traffic from a device: it arms the offline timer and notes
// "device back online" on an offline alert raised earlier.
func (s *Service) seen(ctx context.Context, t device.Topic, now time.Time) error {
	s.mu.Lock()
	st := s.devices[t.Device]
	if st == nil {
		st = &deviceState{}
		s.devices[t.Device] = st
	}
	st.site, st.lastSeen, st.armed, st.unknown = t.Site, now, true, false
	wasAlerted := st.alerted
	st.alerted = false
	key := dedupKey(nil, t.Device, TypeDeviceOffline)
	_, known := s.open[key]
	if known {
		delete(s.open, key) // one note per comeback
	}
	s.mu.Unlock()
	if !wasAlerted && !known {
		return nil
	}
	if err := s.deviceUp(ctx, t.Device); err != nil {
		return err
	}
	return s.commentOpen(ctx, key, ChannelRule, "device back online")
}

// status applies a status message of a device (or of a gateway about its
// devices).
func (s *Service) status(ctx context.Context, t device.Topic, st *device.Status, retained bool, now time.Time) error {
	s.noteKind(t.Device, st.Kind)
	switch {
	case st.State == device.Online:
		return s.seen(ctx, t, now)
	case st.Reason == device.ReasonShutdown:
		// A clean disconnect: disarm, no alert.
		s.mu.Lock()
		d := s.devices[t.Device]
		if d == nil {
			d = &deviceState{site: t.Site}
			s.devices[t.Device] = d
		}
		d.armed = false
		s.mu.Unlock()
	case st.Reason == device.ReasonGatewayLost:
		// A gateway's last will, {"state":"unknown","reason":"gateway_lost",
		// "devices":[...]} (or state offline): the gateway and every device
		// behind it are unknown, each gets device_offline at once.
		if err := s.offline(ctx, t.Site, t.Device, st, retained, now, "device offline ("+st.Reason+")"); err != nil {
			return err
		}
		for _, dev := range st.Devices {
			if dev == t.Device {
				continue
			}
			site := t.Site
			s.mu.Lock()
			if d := s.devices[dev]; d != nil && d.site != "" {
				site = d.site
			}
			s.mu.Unlock()
			if err := s.offline(ctx, site, dev, st, retained, now, "gateway "+t.Device+" lost"); err != nil {
				return err
			}
		}
	case st.State == device.Offline && (st.Reason == device.ReasonLastWill || st.Reason == device.ReasonNoReadings):
		return s.offline(ctx, t.Site, t.Device, st, retained, now, "device offline ("+st.Reason+")")
	default:
		// unknown state of one device (published by its gateway), other
		// offline reasons: the gateway's own will covers a lost gateway.
	}
	return nil
}

// offline marks a device offline (unknown when its gateway was lost) and
// raises device_offline for it at once. A retained will seen again after a
// restart raises nothing if an offline alert for the device was opened since
// the will was composed (st.TS).
func (s *Service) offline(ctx context.Context, site, dev string, st *device.Status, retained bool, now time.Time, detail string) error {
	if retained {
		last, err := s.lastOpened(ctx, dedupKey(nil, dev, TypeDeviceOffline))
		if err != nil {
			return err
		}
		if !last.IsZero() && !last.Before(time.UnixMilli(st.TS)) {
			return nil
		}
	}
	s.mu.Lock()
	d := s.devices[dev]
	if d == nil {
		d = &deviceState{site: site}
		s.devices[dev] = d
	}
	d.armed, d.alerted = false, true
	d.unknown = st.Reason == device.ReasonGatewayLost
	s.mu.Unlock()
	return s.raise(ctx, openSpec{Site: site, Device: dev, Type: TypeDeviceOffline, Severity: SeverityWarning, At: now, Detail: detail})
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
