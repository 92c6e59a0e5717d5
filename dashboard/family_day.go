package dashboard

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// MealRecord is one meal recorded at a meal terminal: the card tapped
// when the meal was served (the meal starts then), the meal's name
// (breakfast, lunch, dinner or another) and the share of the portion
// eaten, in % [0, 100] (EatenPct NaN when the terminal sent none).
type MealRecord struct {
	At       time.Time
	Card     string
	Meal     string
	EatenPct float64
}

// DayReader reads a resident's day from InfluxDB for the family view;
// *FluxVitals implements it.
type DayReader interface {
	// Meals returns every meal event in [from, to), oldest first (any
	// resident: the terminal is shared, the card says whose meal it is).
	Meals(ctx context.Context, from, to time.Time) ([]MealRecord, error)
	// Occupancy returns the in_bed readings (1 in bed, 0 out) of the
	// resident's bed sensors in [from, to), oldest first.
	Occupancy(ctx context.Context, residentID string, from, to time.Time) ([]Point, error)
	// LastEvent returns the newest event of the resident's devices in
	// [from, to) and its type (ok false when there is none).
	LastEvent(ctx context.Context, residentID string, from, to time.Time) (at time.Time, typ string, ok bool, err error)
}

// Meals implements DayReader (measurement events, type meal, fields
// attr_card, attr_meal, attr_eaten_pct pivoted into one row a meal).
func (f *FluxVitals) Meals(ctx context.Context, from, to time.Time) ([]MealRecord, error) {
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "events" and r.type == "meal" and (r._field == "attr_card" or r._field == "attr_meal" or r._field == "attr_eaten_pct"))
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time"])`, fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query meals from bucket %s: %w", f.bucket, err)
	}
	defer res.Close()
	var out []MealRecord
	for res.Next() {
		r := res.Record()
		m := MealRecord{At: r.Time().UTC(), EatenPct: math.NaN()}
		m.Card, _ = r.ValueByKey("attr_card").(string)
		m.Meal, _ = r.ValueByKey("attr_meal").(string)
		if v, ok := toFloat(r.ValueByKey("attr_eaten_pct")); ok {
			m.EatenPct = v
		}
		if m.Card != "" {
			out = append(out, m)
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read meals from bucket %s: %w", f.bucket, err)
	}
	return out, nil
}

// Occupancy implements DayReader (measurement readings, field in_bed,
// tag resident).
func (f *FluxVitals) Occupancy(ctx context.Context, residentID string, from, to time.Time) ([]Point, error) {
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "in_bed" and r.resident == %s)
  |> group()
  |> sort(columns: ["_time"])
  |> keep(columns: ["_time", "_value"])`, fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), fluxString(residentID))
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query bed occupancy of %s from bucket %s: %w", residentID, f.bucket, err)
	}
	defer res.Close()
	var out []Point
	for res.Next() {
		r := res.Record()
		if v, ok := toFloat(r.Value()); ok {
			out = append(out, Point{T: r.Time().UTC(), V: v})
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read bed occupancy of %s: %w", residentID, err)
	}
	return out, nil
}

// LastEvent implements DayReader (measurement events, tag resident, the
// seq field of the newest event).
func (f *FluxVitals) LastEvent(ctx context.Context, residentID string, from, to time.Time) (time.Time, string, bool, error) {
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "events" and r._field == "seq" and r.resident == %s and r.type != "low_battery")
  |> group()
  |> sort(columns: ["_time"])
  |> last()`, fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), fluxString(residentID))
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return time.Time{}, "", false, fmt.Errorf("query last event of %s: %w", residentID, err)
	}
	defer res.Close()
	var at time.Time
	var typ string
	ok := false
	for res.Next() {
		r := res.Record()
		at, ok = r.Time().UTC(), true
		typ, _ = r.ValueByKey("type").(string)
	}
	if err := res.Err(); err != nil {
		return time.Time{}, "", false, fmt.Errorf("read last event of %s: %w", residentID, err)
	}
	return at, typ, ok, nil
}

// Night is the window the family view calls "last night": 20:00 to 08:00
// in the site's time zone.
const (
	nightStartHour = 20
	nightEndHour   = 8
	// occupancyHold is how long one in_bed reading counts when the next
	// is late (a bed sensor reports every 30 s; a gap longer than this is
	// not counted as time in bed).
	occupancyHold = 10 * time.Minute
)

// lastNight is the most recent complete night window, 20:00 to 08:00 in
// loc, that ended by now.
func lastNight(now time.Time, loc *time.Location) (from, to time.Time) {
	l := now.In(loc)
	end := time.Date(l.Year(), l.Month(), l.Day(), nightEndHour, 0, 0, 0, loc)
	if l.Before(end) {
		end = time.Date(l.Year(), l.Month(), l.Day()-1, nightEndHour, 0, 0, 0, loc)
	}
	start := time.Date(end.Year(), end.Month(), end.Day()-1, nightStartHour, 0, 0, 0, loc)
	return start, end
}

// sleepSummary is a night from the bed sensor: time in bed and the number
// of times the resident got up (1 -> 0 changes) inside [from, to).
type sleepSummary struct {
	InBed   time.Duration
	TimesUp int
	Known   bool // at least one reading in the window
}

// sleepOf sums occ (in_bed readings, oldest first) over [from, to): each
// reading holds until the next one, at most occupancyHold.
func sleepOf(occ []Point, from, to time.Time) sleepSummary {
	var s sleepSummary
	prev := math.NaN()
	for i, p := range occ {
		if p.T.Before(from) {
			prev = p.V
			continue
		}
		if !p.T.Before(to) {
			break
		}
		s.Known = true
		if prev == 1 && p.V == 0 {
			s.TimesUp++
		}
		prev = p.V
		if p.V != 1 {
			continue
		}
		end := p.T.Add(occupancyHold)
		if i+1 < len(occ) && occ[i+1].T.Before(end) {
			end = occ[i+1].T
		}
		if end.After(to) {
			end = to
		}
		s.InBed += end.Sub(p.T)
	}
	return s
}

// lastBedChange is the time of the newest change of occ (or its first
// reading) and the state since then.
func lastBedChange(occ []Point) (at time.Time, inBed bool, ok bool) {
	if len(occ) == 0 {
		return time.Time{}, false, false
	}
	i := len(occ) - 1
	for i > 0 && occ[i-1].V == occ[len(occ)-1].V {
		i--
	}
	return occ[i].T, occ[len(occ)-1].V == 1, true
}

// familyMeal is one meal of today in the family view.
type familyMeal struct {
	Name, At, Eaten string
}

// eatenWords says how much of the portion was eaten in lang: "all of it",
// "about three quarters", ... from the share in %.
func eatenWords(lang string, pct float64) string {
	if math.IsNaN(pct) {
		return trIn(lang, "fam.eaten.unknown")
	}
	var key string
	switch {
	case pct >= 90:
		key = "all"
	case pct >= 65:
		key = "most"
	case pct >= 40:
		key = "half"
	case pct >= 15:
		key = "little"
	default:
		key = "none"
	}
	return trf(lang, "fam.eaten."+key, "pct", fmt.Sprintf("%.0f", pct))
}

// mealName is the meal's name in lang (breakfast, lunch, dinner; another
// name as recorded).
func mealName(lang, meal string) string {
	k := "meal." + strings.ToLower(meal)
	if s := trIn(lang, k); s != k {
		return s
	}
	if meal == "" {
		return trIn(lang, "meal.other")
	}
	return meal
}

// residentMeals picks the meals of the resident's cards from all, oldest
// first.
func residentMeals(all []MealRecord, cards []string) []MealRecord {
	var out []MealRecord
	for _, m := range all {
		if slices.Contains(cards, m.Card) {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// familyNow decides the state line of the family view from the newest
// observation: a meal served within MealWindow ("at a meal since" the
// meal was served) unless a bed change came after it; else the bed
// sensor's state since its last change; an open no_activity alert says
// "no activity noticed". The live feed's bed state (newer than InfluxDB's
// last reading) wins over the history.
func familyNow(now time.Time, lastMeal *MealRecord, bedAt time.Time, inBed, bedKnown, inactive bool) (state string, since time.Time, meal string) {
	if inactive {
		return "inactive", time.Time{}, ""
	}
	if lastMeal != nil && now.Sub(lastMeal.At) <= MealWindow && !lastMeal.At.After(now) && (!bedKnown || lastMeal.At.After(bedAt)) {
		return "meal", lastMeal.At, lastMeal.Meal
	}
	if !bedKnown {
		return "unknown", time.Time{}, ""
	}
	if inBed {
		return "in_bed", bedAt, ""
	}
	return "up", bedAt, ""
}
