// Stage 3, store: on-duty rosters (shifts per site, by weekday, with dated exceptions and swaps)
// that escalation targets resolve through.

package alerting

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Roster is a site's on-duty schedule: shifts in the site's
// IANA time zone, each with the staff accounts on duty, e.g. day 07:00-19:00
// and night 19:00-07:00 (crossing midnight) in Asia/Shanghai. Shifts are
// matched on the local wall clock (see [QuietHours] for DST), in order: the
// first shift whose weekdays hold the shift's start date and whose
// [Start, End) window holds the time is on duty. Exceptions and swaps
// change who is on duty on one dated shift. Stored as setting kind
// "roster" with the site as id.
type Roster struct {
	Site string `json:"site" yaml:"site"`
	// Ward, if set, makes this the roster of one ward of the site (the
	// registry's room ward, e.g. "East wing"): alerts of residents whose
	// bed's room is in that ward page its on-duty staff; other alerts use
	// the site's roster (Ward ""). Stored with id "<site>/<ward>".
	Ward string `json:"ward,omitempty" yaml:"ward,omitempty"`
	// Zone is the site's IANA time zone, e.g. Europe/Berlin.
	Zone   string  `json:"zone" yaml:"zone"`
	Shifts []Shift `json:"shifts" yaml:"shifts"`
	// Exceptions replace the staff of one shift on one local date, e.g.
	// Christmas Eve's night shift.
	Exceptions []RosterException `json:"exceptions,omitempty" yaml:"exceptions,omitempty"`
	// Swaps exchange one person for another on one dated shift.
	Swaps []Swap `json:"swaps,omitempty" yaml:"swaps,omitempty"`
}

// Key is the roster's setting id: the site, or "<site>/<ward>" for a
// ward's roster (site ids have no "/").
func (r Roster) Key() string {
	if r.Ward == "" {
		return r.Site
	}
	return r.Site + "/" + r.Ward
}

// MaxWardLen is the longest ward name, in characters (registry.MaxWardLen).
const MaxWardLen = 40

// Shift is one daily shift of a roster. End at or before Start crosses
// midnight; Start == End covers the whole day.
type Shift struct {
	// Name is e.g. "day" or "night"; response times are reported per shift.
	Name  string    `json:"name" yaml:"name"`
	Start ClockTime `json:"start" yaml:"start"`
	End   ClockTime `json:"end" yaml:"end"`
	// Weekdays the shift starts on: "mon" ... "sun"; empty: every day. A
	// night shift that starts on Friday 19:00 is Friday's shift until
	// Saturday 07:00.
	Weekdays []string `json:"weekdays,omitempty" yaml:"weekdays,omitempty"`
	// OnDuty are staff account (recipient) ids.
	OnDuty []string `json:"on_duty" yaml:"on_duty"`
}

// RosterException replaces the staff of shift Shift that starts on the
// local date Date ("2006-01-02").
type RosterException struct {
	Date   string   `json:"date" yaml:"date"`
	Shift  string   `json:"shift" yaml:"shift"`
	OnDuty []string `json:"on_duty" yaml:"on_duty"`
}

// Swap puts In on duty instead of Out on shift Shift starting on Date.
type Swap struct {
	Date  string `json:"date" yaml:"date"`
	Shift string `json:"shift" yaml:"shift"`
	Out   string `json:"out" yaml:"out"`
	In    string `json:"in" yaml:"in"`
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// Validate reports every problem of r.
func (r Roster) Validate() error {
	var errs []error
	if r.Site == "" {
		errs = append(errs, errors.New("roster: site is required"))
	}
	if utf8.RuneCountInString(r.Ward) > MaxWardLen || strings.TrimSpace(r.Ward) != r.Ward || strings.ContainsFunc(r.Ward, unicode.IsControl) {
		errs = append(errs, fmt.Errorf("roster %s: ward %q: at most %d characters, no control characters or surrounding spaces", r.Key(), r.Ward, MaxWardLen))
	}
	if _, err := loadZone(r.Zone); err != nil {
		errs = append(errs, fmt.Errorf("roster %s: %w", r.Key(), err))
	}
	if len(r.Shifts) == 0 {
		errs = append(errs, fmt.Errorf("roster %s: no shifts", r.Key()))
	}
	seen := map[string]bool{}
	for i, s := range r.Shifts {
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("roster %s: shift %d has no name", r.Key(), i))
		}
		for _, d := range s.Weekdays {
			if _, ok := weekdays[strings.ToLower(d)]; !ok {
				errs = append(errs, fmt.Errorf("roster %s: shift %s: weekday %q: want mon, tue, wed, thu, fri, sat or sun", r.Key(), s.Name, d))
			}
		}
		seen[s.Name] = true
	}
	for _, e := range r.Exceptions {
		if _, err := time.Parse(time.DateOnly, e.Date); err != nil {
			errs = append(errs, fmt.Errorf("roster %s: exception date %q: want YYYY-MM-DD", r.Key(), e.Date))
		}
		if !seen[e.Shift] {
			errs = append(errs, fmt.Errorf("roster %s: exception on %s: unknown shift %q", r.Key(), e.Date, e.Shift))
		}
	}
	for _, s := range r.Swaps {
		if _, err := time.Parse(time.DateOnly, s.Date); err != nil {
			errs = append(errs, fmt.Errorf("roster %s: swap date %q: want YYYY-MM-DD", r.Key(), s.Date))
		}
		if !seen[s.Shift] {
			errs = append(errs, fmt.Errorf("roster %s: swap on %s: unknown shift %q", r.Key(), s.Date, s.Shift))
		}
		if s.Out == "" || s.In == "" {
			errs = append(errs, fmt.Errorf("roster %s: swap on %s: out and in are required", r.Key(), s.Date))
		}
	}
	return errors.Join(errs...)
}

// people returns every id the roster names (shifts, exceptions, swaps).
func (r Roster) people() []string {
	var ids []string
	for _, s := range r.Shifts {
		ids = append(ids, s.OnDuty...)
	}
	for _, e := range r.Exceptions {
		ids = append(ids, e.OnDuty...)
	}
	for _, s := range r.Swaps {
		ids = append(ids, s.Out, s.In)
	}
	return ids
}

// ShiftAt returns the shift on duty at t, with OnDuty as changed by that
// date's exceptions and swaps, or false when no shift covers t (or the
// zone is invalid). The date of a shift is the local date it started.
func (r Roster) ShiftAt(t time.Time) (Shift, bool) {
	loc, err := loadZone(r.Zone)
	if err != nil {
		return Shift{}, false
	}
	l := t.In(loc)
	m := minuteOfDay(t, loc)
	for _, s := range r.Shifts {
		if !inWindow(m, s.Start, s.End) {
			continue
		}
		start := l
		if s.Start.min > s.End.min && m < s.End.min { // after midnight: started yesterday
			start = l.AddDate(0, 0, -1)
		}
		if len(s.Weekdays) > 0 && !slices.ContainsFunc(s.Weekdays, func(d string) bool { return weekdays[strings.ToLower(d)] == start.Weekday() }) {
			continue
		}
		date := start.Format(time.DateOnly)
		s.OnDuty = slices.Clone(s.OnDuty)
		for _, e := range r.Exceptions {
			if e.Date == date && e.Shift == s.Name {
				s.OnDuty = slices.Clone(e.OnDuty)
			}
		}
		for _, sw := range r.Swaps {
			if sw.Date == date && sw.Shift == s.Name {
				for i, id := range s.OnDuty {
					if id == sw.Out {
						s.OnDuty[i] = sw.In
					}
				}
			}
		}
		return s, true
	}
	return Shift{}, false
}
