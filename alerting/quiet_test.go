package alerting

import (
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func clock(s string) ClockTime {
	c, err := ParseClock(s)
	if err != nil {
		panic(err)
	}
	return c
}

// Europe/Berlin 2026: CET -> CEST on Sun 29 March at 01:00 UTC (02:00 ->
// 03:00 local), CEST -> CET on Sun 25 October at 01:00 UTC (03:00 -> 02:00
// local). Asia/Shanghai is UTC+8 all year (no DST since 1991).
func TestQuietHoursDSTAndMidnight(t *testing.T) {
	t.Parallel()
	night := func(zone string) QuietHours {
		return QuietHours{Start: clock("22:00"), End: clock("07:00"), Zone: zone}
	}
	twoToThree := QuietHours{Start: clock("02:00"), End: clock("03:00"), Zone: "Europe/Berlin"}
	cases := []struct {
		name  string
		q     QuietHours
		at    string
		quiet bool
	}{
		{"berlin before start", night("Europe/Berlin"), "2026-03-28T20:59:59Z", false}, // 21:59 CET
		{"berlin at start", night("Europe/Berlin"), "2026-03-28T21:00:00Z", true},      // 22:00 CET
		{"berlin across midnight", night("Europe/Berlin"), "2026-03-28T23:30:00Z", true},
		{"berlin spring 06:59 CEST", night("Europe/Berlin"), "2026-03-29T04:59:00Z", true},
		// 05:00 UTC is 07:00 CEST: over, although it would be 06:00 in CET.
		{"berlin spring end follows DST", night("Europe/Berlin"), "2026-03-29T05:00:00Z", false},
		{"berlin autumn 06:59 CET", night("Europe/Berlin"), "2026-10-25T05:59:00Z", true},
		// 05:30 UTC is 06:30 CET (still quiet), 07:30 in CEST would not be.
		{"berlin autumn end follows DST", night("Europe/Berlin"), "2026-10-25T05:30:00Z", true},
		{"berlin autumn 07:00 CET", night("Europe/Berlin"), "2026-10-25T06:00:00Z", false},
		{"berlin summer evening", night("Europe/Berlin"), "2026-07-01T20:00:00Z", true}, // 22:00 CEST
		{"berlin summer 21:59 CEST", night("Europe/Berlin"), "2026-07-01T19:59:00Z", false},
		// 02:00-03:00 does not exist on the spring night ...
		{"berlin spring 01:59 CET", twoToThree, "2026-03-29T00:59:59Z", false},
		{"berlin spring 03:00 CEST", twoToThree, "2026-03-29T01:00:00Z", false},
		// ... and happens twice on the autumn night: quiet both times.
		{"berlin autumn first 02:30 CEST", twoToThree, "2026-10-25T00:30:00Z", true},
		{"berlin autumn second 02:30 CET", twoToThree, "2026-10-25T01:30:00Z", true},
		{"berlin autumn 03:00 CET", twoToThree, "2026-10-25T02:00:00Z", false},
		{"shanghai 21:59", night("Asia/Shanghai"), "2026-03-29T13:59:00Z", false},
		{"shanghai 22:00", night("Asia/Shanghai"), "2026-03-29T14:00:00Z", true},
		{"shanghai midnight", night("Asia/Shanghai"), "2026-03-29T16:00:00Z", true},
		{"shanghai 06:59", night("Asia/Shanghai"), "2026-03-29T22:59:00Z", true},
		{"shanghai 07:00", night("Asia/Shanghai"), "2026-03-29T23:00:00Z", false},
		{"shanghai same in october", night("Asia/Shanghai"), "2026-10-24T23:00:00Z", false},
		{"bad zone is never quiet", QuietHours{Start: clock("00:00"), End: clock("00:00"), Zone: "Mars/Olympus"}, "2026-01-01T00:00:00Z", false},
		{"start == end is all day", QuietHours{Start: clock("05:00"), End: clock("05:00"), Zone: "UTC"}, "2026-01-01T12:00:00Z", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.q.Quiet(utc(c.at)); got != c.quiet {
				t.Errorf("Quiet(%s = %s local) = %v, want %v", c.at, utc(c.at).In(mustZone(c.q.Zone)).Format("15:04 MST"), got, c.quiet)
			}
		})
	}
}

func mustZone(z string) *time.Location {
	l, err := time.LoadLocation(z)
	if err != nil {
		return time.UTC
	}
	return l
}

// TestQuietNightLength counts the real minutes of a 22:00-07:00 window
// per night: 9 h normally, 8 h when clocks spring forward, 10 h when they
// fall back; always 9 h in Shanghai.
func TestQuietNightLength(t *testing.T) {
	t.Parallel()
	cases := []struct {
		zone, evening string // evening: a UTC time on the day before
		want          time.Duration
	}{
		{"Europe/Berlin", "2026-03-21T12:00:00Z", 9 * time.Hour},
		{"Europe/Berlin", "2026-03-28T12:00:00Z", 8 * time.Hour},
		{"Europe/Berlin", "2026-10-24T12:00:00Z", 10 * time.Hour},
		{"Asia/Shanghai", "2026-03-28T00:00:00Z", 9 * time.Hour},
		{"Asia/Shanghai", "2026-10-24T00:00:00Z", 9 * time.Hour},
	}
	for _, c := range cases {
		t.Run(c.zone+" "+c.evening, func(t *testing.T) {
			q := QuietHours{Start: clock("22:00"), End: clock("07:00"), Zone: c.zone}
			var got time.Duration
			start := utc(c.evening)
			for m := 0; m < 24*60; m++ {
				if q.Quiet(start.Add(time.Duration(m) * time.Minute)) {
					got += time.Minute
				}
			}
			if got != c.want {
				t.Errorf("quiet for %s in the 24 h from %s, want %s", got, c.evening, c.want)
			}
		})
	}
}

func TestRosterShiftCrossingMidnight(t *testing.T) {
	t.Parallel()
	r := Roster{Site: "demo", Zone: "Asia/Shanghai", Shifts: []Shift{
		{Name: "day", Start: clock("07:00"), End: clock("19:00"), OnDuty: []string{"ana"}},
		{Name: "night", Start: clock("19:00"), End: clock("07:00"), OnDuty: []string{"ben"}},
	}}
	cases := []struct{ at, want string }{
		{"2026-03-29T10:59:00Z", "day"},   // 18:59
		{"2026-03-29T11:00:00Z", "night"}, // 19:00
		{"2026-03-29T16:00:00Z", "night"}, // 00:00
		{"2026-03-29T22:59:00Z", "night"}, // 06:59
		{"2026-03-29T23:00:00Z", "day"},   // 07:00
	}
	for _, c := range cases {
		t.Run(c.at, func(t *testing.T) {
			sh, ok := r.ShiftAt(utc(c.at))
			if !ok || sh.Name != c.want {
				t.Errorf("ShiftAt(%s) = %q, %v; want %q", c.at, sh.Name, ok, c.want)
			}
		})
	}
	berlin := Roster{Site: "b", Zone: "Europe/Berlin", Shifts: r.Shifts}
	// 05:30 UTC on the spring-forward morning is 07:30 CEST: day already.
	if sh, _ := berlin.ShiftAt(utc("2026-03-29T05:30:00Z")); sh.Name != "day" {
		t.Errorf("Berlin 07:30 CEST: shift %q, want day", sh.Name)
	}
	gap := Roster{Site: "g", Zone: "UTC", Shifts: []Shift{{Name: "day", Start: clock("07:00"), End: clock("19:00")}}}
	if _, ok := gap.ShiftAt(utc("2026-03-29T20:00:00Z")); ok {
		t.Error("a time no shift covers matched a shift")
	}
}

func TestParseClock(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"00:00", "07:30", "23:59"} {
		if c, err := ParseClock(s); err != nil || c.String() != s {
			t.Errorf("ParseClock(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"", "7:30", "24:00", "12:60", "ab:cd", "12-30", "-1:00", "07:30:00"} {
		if _, err := ParseClock(s); err == nil {
			t.Errorf("ParseClock(%q): no error", s)
		}
	}
}

func FuzzParseClock(f *testing.F) {
	for _, s := range []string{"00:00", "23:59", "24:00", "7:3", "+1:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClock(s)
		if err != nil {
			return
		}
		if c.min < 0 || c.min >= 24*60 {
			t.Fatalf("ParseClock(%q) = %d minutes", s, c.min)
		}
		if back, err := ParseClock(c.String()); err != nil || back != c {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
	})
}
