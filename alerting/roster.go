// Stage 3, store: on-duty rosters (shifts per site) that escalation targets resolve through.

package alerting

import (
	"errors"
	"fmt"
	"time"
)

// Roster is a site's on-duty schedule: shifts in the site's IANA time zone,
// each with the recipients on duty, e.g. day 07:00-19:00 and night
// 19:00-07:00 (crossing midnight) in Asia/Shanghai. Shifts are matched on
// the local wall clock (see [QuietHours] for DST), in order: the first shift
// whose [Start, End) window holds the time is on duty. Stored as setting
// kind "roster" with the site as id.
type Roster struct {
	Site string `json:"site" yaml:"site"`
	// Zone is the site's IANA time zone, e.g. Europe/Berlin.
	Zone   string  `json:"zone" yaml:"zone"`
	Shifts []Shift `json:"shifts" yaml:"shifts"`
}

// Shift is one daily shift of a roster. End at or before Start crosses
// midnight; Start == End covers the whole day.
type Shift struct {
	// Name is e.g. "day" or "night"; response times are reported per shift.
	Name  string    `json:"name" yaml:"name"`
	Start ClockTime `json:"start" yaml:"start"`
	End   ClockTime `json:"end" yaml:"end"`
	// OnDuty are recipient ids.
	OnDuty []string `json:"on_duty" yaml:"on_duty"`
}

// Validate reports every problem of r.
func (r Roster) Validate() error {
	var errs []error
	if r.Site == "" {
		errs = append(errs, errors.New("roster: site is required"))
	}
	if _, err := loadZone(r.Zone); err != nil {
		errs = append(errs, fmt.Errorf("roster %s: %w", r.Site, err))
	}
	if len(r.Shifts) == 0 {
		errs = append(errs, fmt.Errorf("roster %s: no shifts", r.Site))
	}
	seen := map[string]bool{}
	for i, s := range r.Shifts {
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("roster %s: shift %d has no name", r.Site, i))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("roster %s: shift %q twice", r.Site, s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// ShiftAt returns the shift on duty at t, or false when no shift covers t
// (or the zone is invalid).
func (r Roster) ShiftAt(t time.Time) (Shift, bool) {
	loc, err := loadZone(r.Zone)
	if err != nil {
		return Shift{}, false
	}
	m := minuteOfDay(t, loc)
	for _, s := range r.Shifts {
		if inWindow(m, s.Start, s.End) {
			return s, true
		}
	}
	return Shift{}, false
}
