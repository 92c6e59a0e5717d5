// Stage 3, store: quiet hours of recipients, read when an escalation step picks whom to page.

package alerting

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ClockTime is a local wall-clock time of day, "HH:MM" (00:00 to 23:59),
// read in an IANA time zone. Its zero value is midnight.
type ClockTime struct{ min int }

// ParseClock parses "HH:MM" (24-hour clock). It returns an error for
// anything else, e.g. "7:00pm" or "24:00".
func ParseClock(s string) (ClockTime, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return ClockTime{}, fmt.Errorf("time of day %q: want HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return ClockTime{}, fmt.Errorf("time of day %q: want HH:MM from 00:00 to 23:59", s)
	}
	return ClockTime{hh*60 + mm}, nil
}

// String returns "HH:MM".
func (c ClockTime) String() string { return fmt.Sprintf("%02d:%02d", c.min/60, c.min%60) }

// MarshalText implements encoding.TextMarshaler ("HH:MM").
func (c ClockTime) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler ("HH:MM").
func (c *ClockTime) UnmarshalText(b []byte) error {
	v, err := ParseClock(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// minuteOfDay returns the local wall-clock minute of day of t in loc.
func minuteOfDay(t time.Time, loc *time.Location) int {
	l := t.In(loc)
	return l.Hour()*60 + l.Minute()
}

// inWindow reports whether minute-of-day m lies in [start, end). A window
// whose end is not after its start crosses midnight ([start, 24:00) and
// [00:00, end)); start == end is the whole day.
func inWindow(m int, start, end ClockTime) bool {
	if start.min < end.min {
		return m >= start.min && m < end.min
	}
	return m >= start.min || m < end.min
}

// loadZone loads an IANA zone; "" is an error (every site and recipient
// schedule names its zone explicitly, so a server's local zone never
// decides).
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return nil, errors.New("time zone is required (IANA name, e.g. Europe/Berlin)")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	return loc, nil
}

// QuietHours is a recipient's daily quiet window in local wall-clock time of
// an IANA zone, e.g. 22:00 to 07:00 Europe/Berlin. The window is [Start,
// End); End at or before Start crosses midnight. Wall-clock times are read
// in the zone at the moment of the check, so the window follows DST: on the
// night clocks spring forward (Europe/Berlin, last Sunday of March, 02:00 ->
// 03:00 CET -> CEST) a 22:00-07:00 window lasts 8 real hours, on the night
// they fall back 10. A wall time that does not exist that night (02:30 in
// Berlin in spring) is simply never seen; one that happens twice (02:30 in
// autumn) is inside the window both times. Non-critical notifications are
// held back from a recipient during quiet hours; critical alerts (fall, SOS)
// always get through.
type QuietHours struct {
	Start ClockTime `json:"start" yaml:"start"`
	End   ClockTime `json:"end" yaml:"end"`
	// Zone is an IANA time zone name, e.g. Europe/Berlin, Asia/Shanghai.
	Zone string `json:"zone" yaml:"zone"`
}

// Validate reports a missing or unknown zone.
func (q QuietHours) Validate() error {
	_, err := loadZone(q.Zone)
	return err
}

// Quiet reports whether t lies inside the quiet window. An invalid zone
// counts as not quiet (notify rather than hold back).
func (q QuietHours) Quiet(t time.Time) bool {
	loc, err := loadZone(q.Zone)
	if err != nil {
		return false
	}
	return inWindow(minuteOfDay(t, loc), q.Start, q.End)
}
