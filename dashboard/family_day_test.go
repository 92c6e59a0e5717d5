package dashboard

import (
	"math"
	"testing"
	"time"
)

// scriptedDay is one resident's day in Asia/Shanghai: in bed from 21:30,
// up at 02:10 for 12 minutes, up again at 06:40 (out of bed since);
// breakfast at 07:30 (ate 80 %), lunch at 11:55 (ate 30 %). Readings every
// 30 s as a bed sensor sends them.
func scriptedDay(t *testing.T) (loc *time.Location, occ []Point, meals []MealRecord, at func(day int, hm string) time.Time) {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skip("no tzdata for Asia/Shanghai")
	}
	at = func(day int, hm string) time.Time {
		x, err := time.ParseInLocation("2006-01-02 15:04", "2026-03-0"+string(rune('0'+day))+" "+hm, loc)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	state := func(x time.Time) float64 {
		switch {
		case x.Before(at(1, "21:30")):
			return 0
		case !x.Before(at(2, "02:10")) && x.Before(at(2, "02:22")):
			return 0
		case !x.Before(at(2, "06:40")):
			return 0
		}
		return 1
	}
	for x := at(1, "19:00"); x.Before(at(2, "12:30")); x = x.Add(30 * time.Second) {
		occ = append(occ, Point{T: x.UTC(), V: state(x)})
	}
	meals = []MealRecord{
		{At: at(2, "07:30").UTC(), Card: "C1", Meal: "breakfast", EatenPct: 80},
		{At: at(2, "09:00").UTC(), Card: "C2", Meal: "breakfast", EatenPct: 100}, // another resident
		{At: at(2, "11:55").UTC(), Card: "C1", Meal: "lunch", EatenPct: 30},
	}
	return loc, occ, meals, at
}

func TestFamilyScriptedDay(t *testing.T) {
	t.Parallel()
	loc, occ, all, at := scriptedDay(t)
	now := at(2, "12:05")
	from, to := lastNight(now, loc)
	if !from.Equal(at(1, "20:00")) || !to.Equal(at(2, "08:00")) {
		t.Fatalf("last night %s - %s, want 20:00 - 08:00", from, to)
	}
	sl := sleepOf(occ, from, to)
	// 21:30 -> 06:40 is 9 h 10 min, less the 12 min up at night.
	if want := 9*time.Hour + 10*time.Minute - 12*time.Minute; sl.InBed != want || sl.TimesUp != 2 {
		t.Errorf("night: %s in bed, up %d times; want %s and 2", sl.InBed, sl.TimesUp, want)
	}
	if got := trn(LangEN, "fam.sleep_line", sl.TimesUp, "inbed", durText(LangEN, sl.InBed)); got != "8 h 58 min in bed, got up 2 times" {
		t.Errorf("sleep line: %q", got)
	}
	if got := trn(LangZH, "fam.sleep_line", sl.TimesUp, "inbed", durText(LangZH, sl.InBed)); got != "在床 8 小时 58 分钟，起床 2 次" {
		t.Errorf("zh sleep line: %q", got)
	}
	meals := residentMeals(all, []string{"C1"})
	if len(meals) != 2 || meals[1].Meal != "lunch" {
		t.Fatalf("meals of C1: %+v", meals)
	}
	if got := eatenWords(LangEN, meals[0].EatenPct); got != "ate most of it (80 %)" {
		t.Errorf("breakfast: %q", got)
	}
	if got := eatenWords(LangZH, meals[1].EatenPct); got != "吃了一小部分（30 %）" {
		t.Errorf("lunch zh: %q", got)
	}
	if got := eatenWords(LangEN, math.NaN()); got != "amount not recorded" {
		t.Errorf("unknown: %q", got)
	}
	bedAt, inBed, ok := lastBedChange(occ)
	if !ok || inBed || !bedAt.Equal(at(2, "06:40")) {
		t.Errorf("last bed change %s in bed %t, want out of bed at 06:40", bedAt, inBed)
	}
	for _, tc := range []struct {
		name     string
		now      time.Time
		want     string
		since    time.Time
		inactive bool
	}{
		// At 12:05 lunch (served 11:55) is under way: since the meal was served.
		{"at lunch", at(2, "12:05"), "meal", at(2, "11:55"), false},
		// At 13:00 lunch is past the meal window: up since 06:40.
		{"after lunch", at(2, "13:00"), "up", at(2, "06:40"), false},
		{"no activity", at(2, "13:00"), "inactive", time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, since, _ := familyNow(tc.now, &meals[1], bedAt, inBed, ok, tc.inactive)
			if st != tc.want || !since.Equal(tc.since) {
				t.Errorf("state %s since %s, want %s since %s", st, since, tc.want, tc.since)
			}
		})
	}
	// Back in bed after the meal: the bed wins over the meal.
	if st, since, _ := familyNow(at(2, "12:20"), &meals[1], at(2, "12:10"), true, true, false); st != "in_bed" || !since.Equal(at(2, "12:10")) {
		t.Errorf("in bed after lunch: %s since %s", st, since)
	}
	if st, _, _ := familyNow(now, nil, time.Time{}, false, false, false); st != "unknown" {
		t.Errorf("nothing known: %s", st)
	}
	if got := dayClock(LangZH, at(1, "21:30"), now, loc); got != "昨天 21:30" {
		t.Errorf("dayClock: %q", got)
	}
}
