package alerting

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func absZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func localAt(loc *time.Location, y int, mo time.Month, d, h, m int) time.Time {
	return time.Date(y, mo, d, h, m, 0, 0, loc)
}

// tickEvery runs a.Tick every step from `from` to `to` (wall time) and
// returns the actions, each with the tick time.
func tickEvery(a *absence, from, to time.Time, step time.Duration, loc *time.Location) []absenceAction {
	var out []absenceAction
	for now := from; !now.After(to); now = now.Add(step) {
		out = append(out, a.Tick(now, func(string) *time.Location { return loc })...)
	}
	return out
}

func TestDailyWindowDST(t *testing.T) {
	t.Parallel()
	berlin, shanghai := absZone(t, "Europe/Berlin"), absZone(t, "Asia/Shanghai")
	night := DefaultAbsence.Night
	tests := []struct {
		name     string
		loc      *time.Location
		evening  time.Time // 21:59 local the evening the night starts
		realSpan time.Duration
	}{
		{"Berlin spring forward (7 h)", berlin, localAt(berlin, 2026, 3, 28, 21, 59), 7 * time.Hour},
		{"Berlin fall back (9 h)", berlin, localAt(berlin, 2026, 10, 24, 21, 59), 9 * time.Hour},
		{"Berlin ordinary night (8 h)", berlin, localAt(berlin, 2026, 6, 1, 21, 59), 8 * time.Hour},
		{"Shanghai same weekend, no DST (8 h)", shanghai, localAt(shanghai, 2026, 3, 28, 21, 59), 8 * time.Hour},
		{"Shanghai autumn weekend, no DST (8 h)", shanghai, localAt(shanghai, 2026, 10, 24, 21, 59), 8 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Walk minute by minute over the night and measure how long it
			// is inside the window.
			var in time.Duration
			var start time.Time
			for now := tc.evening; now.Before(tc.evening.Add(12 * time.Hour)); now = now.Add(time.Minute) {
				if night.Contains(now, tc.loc) {
					if in == 0 {
						start = now
					}
					in += time.Minute
					s, ok := night.StartOf(now, tc.loc)
					if !ok || !s.Equal(start) {
						t.Fatalf("StartOf(%s) = %s, want %s", now.In(tc.loc), s.In(tc.loc), start.In(tc.loc))
					}
				}
			}
			if in != tc.realSpan {
				t.Errorf("night lasted %s, want %s", in, tc.realSpan)
			}
			if got := start.In(tc.loc).Format("15:04"); got != "22:00" {
				t.Errorf("night started %s local", got)
			}
		})
	}
}

func TestOutOfBedNight(t *testing.T) {
	t.Parallel()
	berlin, shanghai := absZone(t, "Europe/Berlin"), absZone(t, "Asia/Shanghai")
	tests := []struct {
		name  string
		loc   *time.Location
		exit  time.Time
		back  time.Duration // 0: never within the test
		want  []string      // types raised (and "clear:" for resolves), in order
		alarm time.Time     // when out_of_bed_night is due (zero: never)
	}{
		{"evening exit before the night: nothing", berlin, localAt(berlin, 2026, 6, 1, 21, 50), 0, nil, time.Time{}},
		{"night exit, back after 15 min: bed_exit only", berlin, localAt(berlin, 2026, 6, 1, 23, 0), 15 * time.Minute,
			[]string{TypeBedExit}, time.Time{}},
		{"night exit, back after 25 min: alert then clear", berlin, localAt(berlin, 2026, 6, 2, 3, 0), 25 * time.Minute,
			[]string{TypeBedExit, TypeOutOfBedNight, "clear:" + TypeOutOfBedNight}, localAt(berlin, 2026, 6, 2, 3, 20)},
		// 01:50 CET + 20 real minutes = 03:10 CEST (02:00-03:00 does not exist).
		{"Berlin spring-forward night", berlin, localAt(berlin, 2026, 3, 29, 1, 50), 0,
			[]string{TypeBedExit, TypeOutOfBedNight}, localAt(berlin, 2026, 3, 29, 3, 10)},
		// 02:50 CEST (first pass) + 20 min = 02:10 CET (second pass).
		{"Berlin fall-back night", berlin, time.Date(2026, 10, 25, 0, 50, 0, 0, time.UTC), 0,
			[]string{TypeBedExit, TypeOutOfBedNight}, time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC)},
		{"Shanghai same night, no DST", shanghai, localAt(shanghai, 2026, 3, 29, 1, 50), 0,
			[]string{TypeBedExit, TypeOutOfBedNight}, localAt(shanghai, 2026, 3, 29, 2, 10)},
		{"exit at 05:59 still counts", shanghai, localAt(shanghai, 2026, 3, 29, 5, 59), 0,
			[]string{TypeBedExit, TypeOutOfBedNight}, localAt(shanghai, 2026, 3, 29, 6, 19)},
		{"exit at 06:00 is morning", shanghai, localAt(shanghai, 2026, 3, 29, 6, 0), 0, nil, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAbsence(DefaultAbsence)
			var got []string
			var alarm time.Time
			record := func(acts []absenceAction) {
				for _, x := range acts {
					if x.Clear {
						got = append(got, "clear:"+x.Type)
						continue
					}
					if x.Type == TypeNoActivity {
						continue
					}
					got = append(got, x.Type)
					if x.Type == TypeOutOfBedNight {
						alarm = x.At
					}
				}
			}
			record(a.BedExit("r1", "s", "bed-1", tc.exit, tc.loc))
			end := tc.exit.Add(time.Hour)
			if tc.back > 0 {
				end = tc.exit.Add(tc.back)
			}
			// The wall clock ticks every 10 s (the service's default).
			record(tickEvery(a, tc.exit, end, 10*time.Second, tc.loc))
			if tc.back > 0 {
				record(a.BedEntry("r1", "s", "bed-1", end, tc.loc))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !alarm.Equal(tc.alarm) {
				t.Errorf("out_of_bed_night at %s, want %s", alarm.In(tc.loc), tc.alarm.In(tc.loc))
			}
		})
	}
}

func TestNoActivity(t *testing.T) {
	t.Parallel()
	berlin := absZone(t, "Europe/Berlin")
	tests := []struct {
		name     string
		activity []time.Time
		from, to time.Time
		want     []string // local times "15:04" of no_activity alerts; "clear@15:04" for resolves
	}{
		{"last activity the night before: 4 h after the day starts", []time.Time{localAt(berlin, 2026, 6, 1, 23, 0)},
			localAt(berlin, 2026, 6, 1, 23, 0), localAt(berlin, 2026, 6, 2, 21, 0), []string{"12:00"}},
		{"activity at 09:00: at 13:00", []time.Time{localAt(berlin, 2026, 6, 2, 9, 0)},
			localAt(berlin, 2026, 6, 2, 9, 0), localAt(berlin, 2026, 6, 2, 21, 0), []string{"13:00"}},
		{"activity at 16:30: silence reaches 4 h only after 20:00: nothing", []time.Time{localAt(berlin, 2026, 6, 2, 16, 30)},
			localAt(berlin, 2026, 6, 2, 16, 30), localAt(berlin, 2026, 6, 3, 7, 59), nil},
		{"activity every 3 h: nothing", []time.Time{localAt(berlin, 2026, 6, 2, 7, 0), localAt(berlin, 2026, 6, 2, 10, 0),
			localAt(berlin, 2026, 6, 2, 13, 0), localAt(berlin, 2026, 6, 2, 16, 0), localAt(berlin, 2026, 6, 2, 19, 0)},
			localAt(berlin, 2026, 6, 2, 7, 0), localAt(berlin, 2026, 6, 2, 21, 0), nil},
		{"activity after the alert clears it; next silence alerts again", []time.Time{localAt(berlin, 2026, 6, 2, 8, 30),
			localAt(berlin, 2026, 6, 2, 12, 45)},
			localAt(berlin, 2026, 6, 2, 8, 30), localAt(berlin, 2026, 6, 2, 21, 0), []string{"12:30", "clear@12:45", "16:45"}},
		// Spring forward: the day window opens at 08:00 CEST; 4 real hours later is 12:00 CEST.
		{"DST day (spring)", []time.Time{localAt(berlin, 2026, 3, 28, 23, 0)},
			localAt(berlin, 2026, 3, 28, 23, 0), localAt(berlin, 2026, 3, 29, 21, 0), []string{"12:00"}},
		{"DST day (autumn)", []time.Time{localAt(berlin, 2026, 10, 24, 23, 0)},
			localAt(berlin, 2026, 10, 24, 23, 0), localAt(berlin, 2026, 10, 25, 21, 0), []string{"12:00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAbsence(DefaultAbsence)
			acts := tc.activity
			var got []string
			for now := tc.from; !now.After(tc.to); now = now.Add(time.Minute) {
				for len(acts) > 0 && !acts[0].After(now) {
					for _, x := range a.Activity("r1", "s", "door-1", acts[0]) {
						got = append(got, "clear@"+x.At.In(berlin).Format("15:04"))
					}
					acts = acts[1:]
				}
				for _, x := range a.Tick(now, func(string) *time.Location { return berlin }) {
					if x.Type != TypeNoActivity || x.Severity != SeverityWarning {
						t.Fatalf("unexpected %+v", x)
					}
					got = append(got, x.At.In(berlin).Format("15:04"))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMealMissed(t *testing.T) {
	t.Parallel()
	berlin, shanghai := absZone(t, "Europe/Berlin"), absZone(t, "Asia/Shanghai")
	tests := []struct {
		name  string
		loc   *time.Location
		day   [3]int // y, m, d
		meals map[string][2]int
		want  []string // "meal HH:MM" alerts, "clear meal" resolves
	}{
		{"all three on time", berlin, [3]int{2026, 6, 2},
			map[string][2]int{"breakfast": {8, 0}, "lunch": {12, 0}, "dinner": {18, 0}}, nil},
		{"no meals at all", shanghai, [3]int{2026, 6, 2}, nil,
			[]string{"breakfast 09:30", "lunch 13:30", "dinner 19:30"}},
		{"late breakfast clears, lunch exactly at the deadline counts as missed", berlin, [3]int{2026, 6, 2},
			map[string][2]int{"breakfast": {9, 45}, "lunch": {13, 31}, "dinner": {19, 29}},
			[]string{"breakfast 09:30", "clear breakfast", "lunch 13:30", "clear lunch"}},
		{"Berlin spring-forward day", berlin, [3]int{2026, 3, 29},
			map[string][2]int{"lunch": {12, 0}, "dinner": {18, 0}}, []string{"breakfast 09:30"}},
		{"Shanghai same day", shanghai, [3]int{2026, 3, 29},
			map[string][2]int{"lunch": {12, 0}, "dinner": {18, 0}}, []string{"breakfast 09:30"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAbsence(DefaultAbsence)
			start := localAt(tc.loc, tc.day[0], time.Month(tc.day[1]), tc.day[2], 0, 0)
			a.HasCard("r1", "s", start)
			var got []string
			for now := start; now.Before(start.Add(24 * time.Hour)); now = now.Add(time.Minute) {
				for meal, hm := range tc.meals {
					if at := localAt(tc.loc, tc.day[0], time.Month(tc.day[1]), tc.day[2], hm[0], hm[1]); at.Equal(now) {
						for _, x := range a.Meal("r1", "s", "meal-1", meal, at, tc.loc) {
							if x.Type == TypeMealMissed && x.Clear {
								got = append(got, "clear "+meal)
							}
						}
					}
				}
				for _, x := range a.Tick(now, func(string) *time.Location { return tc.loc }) {
					if x.Type == TypeMealMissed {
						got = append(got, strings.Fields(x.Detail)[1]+" "+now.In(tc.loc).Format("15:04"))
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("deadline before tracking started is not alerted", func(t *testing.T) {
		a := newAbsence(DefaultAbsence)
		a.HasCard("r1", "s", localAt(berlin, 2026, 6, 2, 15, 0)) // e.g. the service started at 15:00
		acts := a.Tick(localAt(berlin, 2026, 6, 2, 15, 1), func(string) *time.Location { return berlin })
		if len(acts) != 0 {
			t.Fatalf("raised %+v for deadlines before the rule knew the resident", acts)
		}
		acts = a.Tick(localAt(berlin, 2026, 6, 2, 19, 30), func(string) *time.Location { return berlin })
		if len(acts) != 1 || acts[0].Detail != "no dinner recorded by 19:30" {
			t.Fatalf("got %+v, want the dinner alert", acts)
		}
	})
}

// kasterenEvent is one sensor firing of the van Kasteren data set.
type kasterenEvent struct {
	at     time.Time
	sensor int
}

type kasterenSpan struct {
	from, to time.Time
	id       int
}

// kasteren reads kasterenSenseData.txt (sensor events, Start and End) or
// kasterenActData.txt (annotated activities), in local time of the house
// (Amsterdam). Lines that are not data (header, "Length: ...") are skipped.
func kasteren(t *testing.T, name string, loc *time.Location) []kasterenSpan {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RealData(t), "activity-kasteren", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []kasterenSpan
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(strings.TrimRight(sc.Text(), "\r"), "\t")
		if len(cells) < 3 {
			continue
		}
		from, err1 := time.ParseInLocation("02-Jan-2006 15:04:05", strings.TrimSpace(cells[0]), loc)
		to, err2 := time.ParseInLocation("02-Jan-2006 15:04:05", strings.TrimSpace(cells[1]), loc)
		id, err3 := strconv.Atoi(strings.TrimSpace(cells[2]))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, kasterenSpan{from, to, id})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no data rows", name)
	}
	return out
}

var kasterenActivities = map[int]string{1: "leave house", 4: "use toilet", 5: "take shower", 10: "go to bed",
	13: "prepare Breakfast", 15: "prepare Dinner", 17: "get drink"}

// TestNoActivityKasteren replays the four weeks of the van Kasteren house
// (one man, 14 door/cupboard/appliance sensors; Amsterdam, 25 Feb - 23 Mar
// 2008) through the no_activity rule with the default settings (08:00-20:00,
// 4 h), ticking the injected wall clock every minute. Each sensor firing's
// start and end are activity. Every alert must fall in a genuinely quiet
// period: the resident was away ("leave house") or asleep ("go to bed")
// per the annotation, at the alert and at least since the later of the last
// activity and 08:00. The alert count and days are golden (see
// docs/alerting.md).
func TestNoActivityKasteren(t *testing.T) {
	t.Parallel()
	loc := absZone(t, "Europe/Amsterdam")
	sense := kasteren(t, "kasterenSenseData.txt", loc)
	acts := kasteren(t, "kasterenActData.txt", loc)
	var events []kasterenEvent
	for _, s := range sense {
		events = append(events, kasterenEvent{s.from, s.sensor()}, kasterenEvent{s.to, s.sensor()})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	t.Logf("%d sensor firings, %d activity events, %s to %s", len(sense), len(events), events[0].at, events[len(events)-1].at)

	a := newAbsence(DefaultAbsence)
	type alert struct {
		at, since time.Time
	}
	var alerts []alert
	var clears int
	i := 0
	start := events[0].at.Truncate(time.Minute)
	end := events[len(events)-1].at.Add(time.Hour)
	for now := start; now.Before(end); now = now.Add(time.Minute) {
		for ; i < len(events) && !events[i].at.After(now); i++ {
			clears += len(a.Activity("kasteren", "house", fmt.Sprintf("sensor-%d", events[i].sensor), events[i].at))
		}
		for range a.Tick(now, func(string) *time.Location { return loc }) {
			alerts = append(alerts, alert{at: now, since: a.residents["kasteren"].lastActivity})
		}
	}
	days := map[string]bool{}
	for _, al := range alerts {
		quietFrom := al.since
		dayStart, _ := DefaultAbsence.Day.StartOf(al.at, loc)
		if quietFrom.Before(dayStart) {
			quietFrom = dayStart
		}
		// What was the resident doing over the quiet part of the day?
		var doing []string
		covered := false
		for _, s := range acts {
			if s.to.Before(quietFrom) || s.from.After(al.at) {
				continue
			}
			doing = append(doing, kasterenActivities[s.id])
			if (s.id == 1 || s.id == 10) && !s.from.After(quietFrom.Add(time.Minute)) && !s.to.Before(al.at) {
				covered = true
			}
		}
		days[al.at.Format("2006-01-02")] = true
		line := fmt.Sprintf("%s (quiet since %s): %s", al.at.Format("Mon 2006-01-02 15:04"), al.since.Format("01-02 15:04"), strings.Join(doing, ", "))
		t.Log(line)
		if !covered {
			t.Errorf("alert %s: not inside a leave-house or go-to-bed annotation covering the quiet period", line)
		}
	}
	t.Logf("%d no_activity alerts on %d days, %d cleared by activity", len(alerts), len(days), clears)
	if len(alerts) != kasterenWantAlerts || len(days) != kasterenWantDays {
		t.Errorf("%d alerts on %d days, want %d on %d (golden, see docs/alerting.md)", len(alerts), len(days), kasterenWantAlerts, kasterenWantDays)
	}
	if clears != len(alerts) {
		t.Errorf("%d clears for %d alerts: every alert ends with the resident's return", clears, len(alerts))
	}
}

func (s kasterenSpan) sensor() int { return s.id }

// Golden results of TestNoActivityKasteren (documented in docs/alerting.md).
const (
	kasterenWantAlerts = 23
	kasterenWantDays   = 23
)
