package dashboard

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// familyCard is what the family view shows of one resident: plain words
// only, no staff notes, staff names or internal ids.
type familyCard struct {
	Resident registry.Resident
	State    string // in_bed, up, meal, inactive, unknown
	Since    string // when the state began, "" when unknown
	Meal     string // the meal's name when State is "meal"
	// LastActive is when movement was last noticed ("" unknown).
	LastActive string
	// Visit is the last visit line: a carer's check-in or card tap, else
	// the last time staff acknowledged an alert of the resident.
	Visit     string
	Meals     []familyMeal
	MealsErr  bool
	Sleep     string // the night in words, "" when there is no reading
	SleepErr  bool
	NightSpan string
	Vitals    []familyVital
	Events    []familyEvent
	// Adherence is this week's medication in plain words ("" without a
	// schedule; adherence.go).
	Adherence string
}

// familyModel builds the cards of the residents linked to u.
func (s *Server) familyModel(ctx context.Context, lang string, u *User) ([]familyCard, error) {
	d, err := s.directoryIn(ctx, lang)
	if err != nil {
		return nil, err
	}
	now := s.now()
	dr := s.deps.Days
	cardsOf := map[string][]string{}
	if cl := s.deps.Cards; cl != nil {
		if cs, err := cl.Cards(ctx); err == nil {
			for _, c := range cs {
				cardsOf[c.ResidentID] = append(cardsOf[c.ResidentID], c.ID)
			}
		} else {
			s.log.Warn("family view: meal cards unavailable", "err", err)
		}
	}
	var visits []Visit
	if vs := s.visits(); vs != nil {
		if visits, err = vs.Visits(ctx, now.Add(-SeriousWindow), now.Add(time.Minute)); err != nil {
			s.log.Warn("family view: visits unavailable", "err", err)
		}
	}
	if ec := s.deps.Events; ec != nil {
		if taps, err := ec.CardTaps(ctx, now.Add(-SeriousWindow), now.Add(time.Minute)); err == nil {
			visits = append(visits, taps...)
		} else {
			s.log.Warn("family view: card taps unavailable", "err", err)
		}
	}
	var cards []familyCard
	for _, id := range u.Residents {
		res, ok := d.resByID[id]
		if !ok {
			continue
		}
		loc := d.loc(res.SiteID)
		clock := func(t time.Time) string { return dayClock(lang, t, now, loc) }
		card := familyCard{Resident: res}
		if weeks, err := s.residentAdherence(ctx, res, loc, 1); err == nil && len(weeks) == 1 {
			card.Adherence = familyAdherence(lang, weeks[0])
		}
		var states []DeviceState
		for _, dv := range d.devicesOf(res.BedID, res.ID, now) {
			if st, ok := s.deps.Live.Device(dv.ID); ok {
				states = append(states, st)
			}
		}
		open, err := s.activeAlerts(ctx, alerting.Filter{Resident: id})
		if err != nil {
			return nil, err
		}
		inactive := slices.ContainsFunc(open, func(a alerting.Alert) bool { return a.Type == alerting.TypeNoActivity })

		nightFrom, nightTo := lastNight(now, loc)
		l := now.In(loc)
		midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
		var meals []MealRecord
		var occ []Point
		var lastActive time.Time
		if dr != nil {
			all, err := dr.Meals(ctx, midnight, now.Add(time.Second))
			if err != nil {
				card.MealsErr = true
				s.log.Warn("family view: meals unavailable", "resident", id, "err", err)
			}
			meals = residentMeals(all, cardsOf[id])
			if occ, err = dr.Occupancy(ctx, id, nightFrom.Add(-occupancyHold), now.Add(time.Second)); err != nil {
				card.SleepErr = true
				s.log.Warn("family view: bed readings unavailable", "resident", id, "err", err)
			}
			if at, _, ok, err := dr.LastEvent(ctx, id, now.Add(-7*24*time.Hour), now.Add(time.Second)); err == nil && ok {
				lastActive = at
			} else if err != nil {
				s.log.Warn("family view: events unavailable", "resident", id, "err", err)
			}
		}
		for _, m := range meals {
			card.Meals = append(card.Meals, familyMeal{Name: mealName(lang, m.Meal), At: clock(m.At), Eaten: eatenWords(lang, m.EatenPct)})
			lastActive = later(lastActive, m.At)
		}
		bedAt, inBed, bedKnown := lastBedChange(occ)
		// The live feed can be newer than the last stored reading.
		for _, st := range states {
			if st.InBed != nil && st.InBedAt != nil && st.InBedAt.After(bedAt) && (!bedKnown || *st.InBed != inBed) {
				bedAt, inBed, bedKnown = *st.InBedAt, *st.InBed, true
			}
			if st.LastEventAt != nil && st.LastEvent != "low_battery" {
				lastActive = later(lastActive, *st.LastEventAt)
			}
		}
		if bedKnown {
			lastActive = later(lastActive, bedAt)
		}
		var lastMeal *MealRecord
		if len(meals) > 0 {
			lastMeal = &meals[len(meals)-1]
		}
		st, since, meal := familyNow(now, lastMeal, bedAt, inBed, bedKnown, inactive)
		card.State = st
		if !since.IsZero() {
			card.Since = clock(since)
		}
		if meal != "" || st == "meal" {
			card.Meal = mealName(lang, meal)
		}
		if !lastActive.IsZero() {
			card.LastActive = trf(lang, "fam.last_active_at", "at", clock(lastActive), "ago", agoText(lang, now.Sub(lastActive)))
		}
		if sl := sleepOf(occ, nightFrom, nightTo); sl.Known {
			card.Sleep = trn(lang, "fam.sleep_line", sl.TimesUp, "inbed", durText(lang, sl.InBed))
		}
		card.NightSpan = trf(lang, "fam.night_span", "from", clock(nightFrom), "to", clock(nightTo))

		var lastVisit *Visit
		for i := range visits {
			if visits[i].Resident == id && (lastVisit == nil || visits[i].At.After(lastVisit.At)) {
				lastVisit = &visits[i]
			}
		}
		all, err := s.deps.Alerts.List(ctx, alerting.Filter{Resident: id, Limit: 200})
		if err != nil {
			return nil, fmt.Errorf("list alerts of %s: %w", id, err)
		}
		switch {
		case lastVisit != nil && lastVisit.Source == VisitCardTap:
			card.Visit = trf(lang, "fam.visit.tap", "at", clock(lastVisit.At))
		case lastVisit != nil:
			card.Visit = trf(lang, "fam.visit.checkin", "at", clock(lastVisit.At))
		default:
			var acked time.Time
			for _, a := range all {
				if a.AcknowledgedAt != nil && a.AcknowledgedAt.After(acked) {
					acked = *a.AcknowledgedAt
				}
			}
			if !acked.IsZero() {
				card.Visit = trf(lang, "fam.visit.ack", "at", clock(acked))
			} else {
				card.Visit = trIn(lang, "fam.visit.none")
			}
		}

		for _, r := range familyRanges {
			var latest *Sample
			for _, ds := range states {
				if smp, ok := ds.Latest[r.Field]; ok && (latest == nil || smp.At.After(latest.At)) {
					latest = &smp
				}
			}
			if latest == nil {
				continue
			}
			text, verdict := vitalSentence(lang, r, latest.V)
			card.Vitals = append(card.Vitals, familyVital{Text: text, Verdict: verdict, Age: clock(latest.At)})
		}
		for _, a := range all {
			if (a.Severity != alerting.SeverityCritical && a.Severity != alerting.SeverityHigh) || now.Sub(a.OpenedAt) > SeriousWindow {
				continue
			}
			card.Events = append(card.Events, familyEvent{Type: a.Type, At: clock(a.OpenedAt),
				Outcome: a.Outcome, Handled: a.Status != alerting.StatusOpen})
		}
		cards = append(cards, card)
	}
	return cards, nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// dayClock renders t for the family in loc: "today 14:05", "yesterday
// 14:05", else "3 Dec 14:05" (and the Chinese forms).
func dayClock(lang string, t, now time.Time, loc *time.Location) string {
	lt, ln := t.In(loc), now.In(loc)
	hm := lt.Format("15:04")
	y1, m1, d1 := lt.Date()
	y2, m2, d2 := ln.Date()
	if y1 == y2 && m1 == m2 && d1 == d2 {
		return trf(lang, "day.today", "hm", hm)
	}
	if y3, m3, d3 := ln.AddDate(0, 0, -1).Date(); y1 == y3 && m1 == m3 && d1 == d3 {
		return trf(lang, "day.yesterday", "hm", hm)
	}
	return trf(lang, "day.date", "d", fmt.Sprint(d1), "m", fmt.Sprint(int(m1)), "mon", trIn(lang, fmt.Sprintf("month.%d", int(m1))), "hm", hm)
}
