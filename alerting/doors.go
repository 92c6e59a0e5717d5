// Door contacts (issue 13 item 1): a door (a contact whose `location`
// attribute names a door, e.g. front_door) opened during the night window
// (the absence rules' Night, in the site's zone) for a resident at risk of
// wandering (one with safe zones in the registry) raises door_open_night;
// a door left open longer than ProgrammeConfig.DoorOpenTooLong (default
// 10 min, wall time) raises door_open_long, resolved when it closes. The
// `open` reading (1 open, 0 closed) counts like the events.

package alerting

import (
	"context"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Alert types of door contacts.
const (
	// TypeDoorOpenNight: a door opened at night for a resident at risk of
	// wandering. High.
	TypeDoorOpenNight = "door_open_night"
	// TypeDoorOpenLong: a door open longer than DoorOpenTooLong. Warning.
	TypeDoorOpenLong = "door_open_long"
)

// DefaultDoorOpenTooLong is how long a door may stay open before
// door_open_long (a programme default, not a published standard).
const DefaultDoorOpenTooLong = 10 * time.Minute

type doorState struct {
	site     string
	location string
	openAt   time.Time // wall time it opened; zero: closed
	raised   bool
}

func isDoor(location string) bool { return strings.Contains(strings.ToLower(location), "door") }

// doorEvent applies contact_open / contact_close (and the open reading:
// ev "" with open set).
func (s *Service) doorChange(ctx context.Context, t device.Topic, open bool, location string, at time.Time) error {
	now := s.cfg.Now()
	s.cmds.mu.Lock()
	d := s.cmds.doors[t.Device]
	if d == nil {
		d = &doorState{site: t.Site}
		s.cmds.doors[t.Device] = d
	}
	if location != "" {
		d.location = location
	}
	loc := d.location
	wasOpen := !d.openAt.IsZero()
	wasRaised := d.raised
	if open && !wasOpen {
		d.openAt = now
	}
	if !open {
		d.openAt, d.raised = time.Time{}, false
	}
	s.cmds.mu.Unlock()
	if !isDoor(loc) {
		return nil
	}
	if !open {
		if wasRaised {
			return s.autoResolve(ctx, alertKey(nil, t.Device, TypeDoorOpenLong), "cleared: the "+loc+" is closed")
		}
		return nil
	}
	if wasOpen {
		return nil
	}
	resident, ok := s.residentOf(t.Device, at)
	if !ok || !s.rules.cfg.Absence.Night.Contains(at, s.location(t.Site)) || !s.atRiskOfWandering(resident, t.Device, at) {
		return nil
	}
	return s.raiseFor(ctx, openSpec{Site: t.Site, Resident: &resident, Device: t.Device, Type: TypeDoorOpenNight, Severity: SeverityHigh, At: at,
		Detail: "the " + loc + " opened at " + at.In(s.location(t.Site)).Format("15:04") + " (night; resident at risk of wandering)"})
}

// atRiskOfWandering: the resident has safe zones.
func (s *Service) atRiskOfWandering(resident, dev string, at time.Time) bool {
	if s.residents != nil {
		if r, ok := s.residents.ResidentAt(dev, at); ok && len(r.SafeZones) > 0 {
			return true
		}
	}
	if d, ok := s.directory().(residentByID); ok {
		if r, found := d.Resident(resident); found {
			return len(r.SafeZones) > 0
		}
	}
	return false
}

// doorTimeouts raises door_open_long for doors open too long (from the
// command tick).
func (s *Service) doorTimeouts(ctx context.Context) error {
	limit := s.cfg.Programme.DoorOpenTooLong
	if limit <= 0 {
		limit = DefaultDoorOpenTooLong
	}
	now := s.cfg.Now()
	type hit struct{ dev, site, loc string }
	var out []hit
	s.cmds.mu.Lock()
	for dev, d := range s.cmds.doors {
		if d.openAt.IsZero() || d.raised || !isDoor(d.location) || now.Sub(d.openAt) < limit {
			continue
		}
		d.raised = true
		out = append(out, hit{dev, d.site, d.location})
	}
	s.cmds.mu.Unlock()
	for _, h := range out {
		if err := s.raiseFor(ctx, openSpec{Site: h.site, Device: h.dev, Type: TypeDoorOpenLong, Severity: SeverityWarning, At: now,
			Detail: "the " + h.loc + " has been open for more than " + limit.String()}); err != nil {
			return err
		}
	}
	return nil
}
