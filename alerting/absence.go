// Stage 2, rules: the absence rules (night bed exit, no activity, missed meals) on the site's wall clock.

package alerting

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Alert types of the event and absence rules.
const (
	// TypeBedExit: a bed sensor reported bed_exit during the night window.
	TypeBedExit = "bed_exit"
	// TypeOutOfBedNight: out of bed at night and not back within OutOfBed.
	TypeOutOfBedNight = "out_of_bed_night"
	// TypeNoActivity: no activity for NoActivity in the daytime window.
	TypeNoActivity = "no_activity"
	// TypeMealMissed: no meal recorded at a meal terminal by its deadline.
	TypeMealMissed = "meal_missed"
)

func hhmm(h, m int) ClockTime { return ClockTime{min: h*60 + m} }

// DailyWindow is a daily time-of-day range [Start, End) in a site's IANA
// time zone; End at or before Start crosses midnight (22:00-06:00). Wall
// times are read in the zone at each check, so the window follows DST: the
// night of the spring change in Europe/Berlin a 22:00-06:00 window lasts 7
// real hours, in autumn 9; Asia/Shanghai has no DST.
type DailyWindow struct {
	Start ClockTime `json:"start" yaml:"start"`
	End   ClockTime `json:"end" yaml:"end"`
}

// Contains reports whether t lies in the window in loc.
func (w DailyWindow) Contains(t time.Time, loc *time.Location) bool {
	return inWindow(minuteOfDay(t, loc), w.Start, w.End)
}

// StartOf returns the instant the occurrence of the window that contains t
// began (in loc); false when t is outside the window.
func (w DailyWindow) StartOf(t time.Time, loc *time.Location) (time.Time, bool) {
	if !w.Contains(t, loc) {
		return time.Time{}, false
	}
	l := t.In(loc)
	y, mo, d := l.Date()
	if w.Start.min >= w.End.min && minuteOfDay(t, loc) < w.End.min {
		d-- // after midnight in a window that began yesterday
	}
	return time.Date(y, mo, d, w.Start.min/60, w.Start.min%60, 0, 0, loc), true
}

// MealDeadline says which meal must be recorded by when (local time).
type MealDeadline struct {
	// Meal is breakfast, lunch or dinner (the meal attribute of the event).
	Meal string    `json:"meal" yaml:"meal"`
	By   ClockTime `json:"by" yaml:"by"`
}

// AbsenceRules configures the rules that fire on something that did not
// happen. Schedules are read in the site's IANA zone (registry
// Snapshot.Location). The defaults are ours, not from a clinical source.
type AbsenceRules struct {
	// Night is when a bed exit raises bed_exit (high) and starts the
	// out-of-bed timer; default 22:00-06:00.
	Night DailyWindow
	// OutOfBed is how long a resident may be out of bed after a night bed
	// exit before out_of_bed_night (high); default 20 min.
	OutOfBed time.Duration
	// Day is when silence counts for no_activity; default 08:00-20:00.
	Day DailyWindow
	// NoActivity is how long the resident's non-vitals devices (bed,
	// doors, motion and environment sensors, meal terminal, SOS, fall)
	// may stay silent within Day before no_activity (warning); default 4 h.
	NoActivity time.Duration
	// Meals are the meal deadlines for residents with a meal card (alert
	// meal_missed, warning); default breakfast 09:30, lunch 13:30, dinner
	// 19:30.
	Meals []MealDeadline
}

// DefaultAbsence are the absence rules of this release.
var DefaultAbsence = AbsenceRules{
	Night: DailyWindow{hhmm(22, 0), hhmm(6, 0)}, OutOfBed: 20 * time.Minute,
	Day: DailyWindow{hhmm(8, 0), hhmm(20, 0)}, NoActivity: 4 * time.Hour,
	Meals: []MealDeadline{{"breakfast", hhmm(9, 30)}, {"lunch", hhmm(13, 30)}, {"dinner", hhmm(19, 30)}},
}

// Validate reports every problem: durations that are not positive, an
// empty window (Start == End would be the whole day; for Day that would
// make night-time silence count), a meal named twice or not a main meal.
func (r AbsenceRules) Validate() error {
	var errs []error
	if r.OutOfBed <= 0 {
		errs = append(errs, fmt.Errorf("out-of-bed time %s must be positive", r.OutOfBed))
	}
	if r.NoActivity <= 0 {
		errs = append(errs, fmt.Errorf("no-activity time %s must be positive", r.NoActivity))
	}
	if r.Night.Start == r.Night.End {
		errs = append(errs, errors.New("night window is empty or the whole day"))
	}
	if r.Day.Start == r.Day.End {
		errs = append(errs, errors.New("day window is empty or the whole day"))
	}
	var seen []string
	for _, m := range r.Meals {
		if !slices.Contains([]string{"breakfast", "lunch", "dinner"}, m.Meal) {
			errs = append(errs, fmt.Errorf("meal %q is not breakfast, lunch or dinner", m.Meal))
		}
		if slices.Contains(seen, m.Meal) {
			errs = append(errs, fmt.Errorf("meal %q has two deadlines", m.Meal))
		}
		seen = append(seen, m.Meal)
	}
	return errors.Join(errs...)
}

// absenceAction is what the absence rules want done: raise an alert, or
// resolve an open one (Clear) with Note.
type absenceAction struct {
	Resident, Site, Device string
	Type                   string
	Severity               string
	Clear                  bool
	At                     time.Time
	Detail                 string // alert detail, or resolve note with Clear
}

// residentAbsence is what the absence rules know of one resident.
type residentAbsence struct {
	site string
	// lastActivity is the device time of the newest activity.
	lastActivity time.Time
	activityDev  string
	// quietAlerted is the lastActivity for which no_activity was raised.
	quietAlerted time.Time
	quietOpen    bool
	// outSince is the device time of a night bed exit not yet followed by
	// a bed entry; zero when in bed.
	outSince   time.Time
	outDevice  string
	outAlerted bool
	// meals: meal -> local date ("2006-01-02") of the newest record.
	meals map[string]string
	// mealAlerted: meal -> local date of a raised meal_missed.
	mealAlerted map[string]string
	mealDevice  string
	hasCard     bool
	// cardSince is when the meal deadlines started to apply: a deadline
	// that passed before it is never alerted (nothing was known then).
	cardSince time.Time
}

// absence runs the absence rules over a time-ordered stream of activity
// (device time) and ticks of the wall clock. It is a pure state machine,
// not safe for concurrent use: the service feeds it under its lock, and
// tests replay recordings through it directly.
type absence struct {
	rules     AbsenceRules
	residents map[string]*residentAbsence
}

func newAbsence(r AbsenceRules) *absence {
	return &absence{rules: r, residents: map[string]*residentAbsence{}}
}

func (a *absence) resident(id, site string) *residentAbsence {
	r := a.residents[id]
	if r == nil {
		r = &residentAbsence{site: site, meals: map[string]string{}, mealAlerted: map[string]string{}}
		a.residents[id] = r
	}
	if site != "" {
		r.site = site
	}
	return r
}

// Activity records activity of the resident at device time t (any event
// or reading of a non-vitals device). It returns the resolve of an open
// no_activity alert, if any.
func (a *absence) Activity(resident, site, dev string, t time.Time) []absenceAction {
	r := a.resident(resident, site)
	if t.Before(r.lastActivity) {
		return nil // an older message arriving late changes nothing
	}
	r.lastActivity, r.activityDev = t, dev
	if r.quietOpen {
		r.quietOpen = false
		return []absenceAction{{Resident: resident, Site: r.site, Device: dev, Type: TypeNoActivity, Clear: true, At: t,
			Detail: "cleared: activity again (" + dev + ")"}}
	}
	return nil
}

// BedExit records a bed exit at device time t. During the night window it
// returns a bed_exit alert and starts the out-of-bed timer.
func (a *absence) BedExit(resident, site, dev string, t time.Time, loc *time.Location) []absenceAction {
	out := a.Activity(resident, site, dev, t)
	if !a.rules.Night.Contains(t, loc) {
		return out
	}
	r := a.resident(resident, site)
	if r.outSince.IsZero() {
		r.outSince, r.outDevice, r.outAlerted = t, dev, false
	}
	return append(out, absenceAction{Resident: resident, Site: r.site, Device: dev, Type: TypeBedExit, Severity: SeverityHigh,
		At: t, Detail: "out of bed at " + t.In(loc).Format("15:04") + " (night " + a.rules.Night.Start.String() + "-" + a.rules.Night.End.String() + ")"})
}

// BedEntry records a return to bed at device time t and resolves an open
// out_of_bed_night alert.
func (a *absence) BedEntry(resident, site, dev string, t time.Time, loc *time.Location) []absenceAction {
	out := a.Activity(resident, site, dev, t)
	r := a.resident(resident, site)
	if r.outSince.IsZero() || t.Before(r.outSince) {
		return out
	}
	away := t.Sub(r.outSince)
	alerted := r.outAlerted
	r.outSince, r.outAlerted = time.Time{}, false
	if alerted {
		out = append(out, absenceAction{Resident: resident, Site: r.site, Device: dev, Type: TypeOutOfBedNight, Clear: true, At: t,
			Detail: fmt.Sprintf("cleared: back in bed at %s after %d min", t.In(loc).Format("15:04"), int(away/time.Minute))})
	}
	return out
}

// Meal records a meal at device time t and resolves an open meal_missed
// alert for that meal of that local day.
func (a *absence) Meal(resident, site, dev, meal string, t time.Time, loc *time.Location) []absenceAction {
	out := a.Activity(resident, site, dev, t)
	r := a.resident(resident, site)
	if !r.hasCard {
		r.hasCard, r.cardSince = true, t
	}
	r.mealDevice = dev
	day := t.In(loc).Format(time.DateOnly)
	if r.meals[meal] < day {
		r.meals[meal] = day
	}
	if r.mealAlerted[meal] == day {
		delete(r.mealAlerted, meal)
		out = append(out, absenceAction{Resident: resident, Site: r.site, Device: dev, Type: TypeMealMissed, Clear: true, At: t,
			Detail: "cleared: " + meal + " recorded at " + t.In(loc).Format("15:04")})
	}
	return out
}

// HasCard marks a resident as holding a meal card, so the meal deadlines
// that pass after since apply.
func (a *absence) HasCard(resident, site string, since time.Time) {
	r := a.resident(resident, site)
	if !r.hasCard {
		r.hasCard, r.cardSince = true, since
	}
}

// Tick checks every resident's timers at wall time now and returns the
// alerts due. loc gives a site's zone. Each condition raises once:
// out_of_bed_night once per night exit, no_activity once per silence,
// meal_missed once per meal and local day.
func (a *absence) Tick(now time.Time, loc func(site string) *time.Location) []absenceAction {
	var out []absenceAction
	ids := make([]string, 0, len(a.residents))
	for id := range a.residents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := a.residents[id]
		z := loc(r.site)
		if !r.outSince.IsZero() && !r.outAlerted && now.Sub(r.outSince) >= a.rules.OutOfBed {
			r.outAlerted = true
			out = append(out, absenceAction{Resident: id, Site: r.site, Device: r.outDevice, Type: TypeOutOfBedNight,
				Severity: SeverityHigh, At: now, Detail: fmt.Sprintf("out of bed since %s, not back within %d min",
					r.outSince.In(z).Format("15:04"), int(a.rules.OutOfBed/time.Minute))})
		}
		if !r.lastActivity.IsZero() && r.quietAlerted != r.lastActivity {
			if start, ok := a.rules.Day.StartOf(now, z); ok {
				from := r.lastActivity
				if from.Before(start) {
					from = start // silence counts inside the day window only
				}
				if now.Sub(from) >= a.rules.NoActivity {
					r.quietAlerted, r.quietOpen = r.lastActivity, true
					out = append(out, absenceAction{Resident: id, Site: r.site, Device: r.activityDev, Type: TypeNoActivity,
						Severity: SeverityWarning, At: now, Detail: fmt.Sprintf("no activity since %s (%s)",
							r.lastActivity.In(z).Format("2006-01-02 15:04"), now.Sub(r.lastActivity).Truncate(time.Minute))})
				}
			}
		}
		if r.hasCard {
			local := now.In(z)
			day := local.Format(time.DateOnly)
			for _, m := range a.rules.Meals {
				y, mo, d := local.Date()
				deadline := time.Date(y, mo, d, m.By.min/60, m.By.min%60, 0, 0, z)
				if now.Before(deadline) || deadline.Before(r.cardSince) || r.meals[m.Meal] == day || r.mealAlerted[m.Meal] == day {
					continue
				}
				r.mealAlerted[m.Meal] = day
				out = append(out, absenceAction{Resident: id, Site: r.site, Device: r.mealDevice, Type: TypeMealMissed,
					Severity: SeverityWarning, At: now, Detail: fmt.Sprintf("no %s recorded by %s", m.Meal, m.By)})
			}
		}
	}
	return out
}
