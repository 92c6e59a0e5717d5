package dashboard

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// NursingBedTarget is the programme's target share of nursing-type beds
// (护理型床位) among a site's beds: 90 % (registry.BedNursing; the city
// programme's figure, issue 13 item 7).
const NursingBedTarget = 0.9

// AteLittlePct: a meal with less than this share of the portion eaten (%)
// counts as "ate little" on the meals table.
const AteLittlePct = 50.0

// MealPortionRow is one resident's meals in a period from the meal
// terminal's meal events (attribute eaten_pct, % of the portion eaten) and
// the meal_missed alerts.
type MealPortionRow struct {
	Resident, Name, SiteName string
	Served                   int     // meal events with the resident's card
	Measured                 int     // of which with an eaten_pct
	AvgEatenPct              float64 // mean eaten_pct of the measured meals; NaN when none
	Little                   int     // meals with eaten_pct < AteLittlePct
	Missed                   int     // meal_missed alerts opened in the period
}

// buildMealPortions groups meals (any card) by the resident holding the
// card, for residents of visible sites.
func buildMealPortions(lang string, d *directory, keep func(string) bool, cards []registry.MealCard, meals []MealRecord, alerts []alerting.AlertResponse, p Period) []MealPortionRow {
	holder := map[string]string{}
	for _, c := range cards {
		holder[c.ID] = c.ResidentID
	}
	type acc struct {
		served, measured, little, missed int
		sum                              float64
	}
	by := map[string]*acc{}
	get := func(r string) *acc {
		if by[r] == nil {
			by[r] = &acc{}
		}
		return by[r]
	}
	for _, m := range meals {
		r, ok := holder[m.Card]
		if !ok || m.At.Before(p.From) || !m.At.Before(p.To) {
			continue
		}
		a := get(r)
		a.served++
		if !math.IsNaN(m.EatenPct) {
			a.measured++
			a.sum += m.EatenPct
			if m.EatenPct < AteLittlePct {
				a.little++
			}
		}
	}
	for _, al := range alerts {
		if al.Type == alerting.TypeMealMissed && al.Resident != "" && !al.Opened.Before(p.From) && al.Opened.Before(p.To) {
			get(al.Resident).missed++
		}
	}
	var out []MealPortionRow
	for _, r := range d.residents {
		if !keep(r.SiteID) {
			continue
		}
		row := MealPortionRow{Resident: r.ID, Name: residentName(d, lang, r.ID), SiteName: d.siteByID[r.SiteID].Name, AvgEatenPct: math.NaN()}
		if a := by[r.ID]; a != nil {
			row.Served, row.Measured, row.Little, row.Missed = a.served, a.measured, a.little, a.missed
			if a.measured > 0 {
				row.AvgEatenPct = a.sum / float64(a.measured)
			}
		}
		out = append(out, row)
	}
	return out
}

// VisitCoverage is the programme's visit figure: the share of vulnerable
// residents visited at least once in the period (check-ins in the alert
// store, check-ins from the caregiver view and card taps at the home),
// with the list of those not yet visited.
type VisitCoverage struct {
	Vulnerable, Visited int
	Share               float64 // Visited / Vulnerable; NaN with none
	NotVisited          []VisitedRow
	VisitedRows         []VisitedRow
}

// VisitedRow is one vulnerable resident with the last visit in the period
// (zero when not visited).
type VisitedRow struct {
	Resident, Name, SiteName string
	Last                     time.Time
}

// buildVisitCoverage computes the coverage of the vulnerable residents of
// visible sites from last, the last visit in the period per resident.
func buildVisitCoverage(lang string, d *directory, keep func(string) bool, last map[string]time.Time) VisitCoverage {
	var v VisitCoverage
	for _, r := range d.residents {
		if !r.Vulnerable || !keep(r.SiteID) {
			continue
		}
		v.Vulnerable++
		row := VisitedRow{Resident: r.ID, Name: residentName(d, lang, r.ID), SiteName: d.siteByID[r.SiteID].Name, Last: last[r.ID]}
		if row.Last.IsZero() {
			v.NotVisited = append(v.NotVisited, row)
		} else {
			v.Visited++
			v.VisitedRows = append(v.VisitedRows, row)
		}
	}
	v.Share = ratio(v.Visited, v.Vulnerable)
	return v
}

// BedTypeRow counts one site's beds by type against the nursing target.
type BedTypeRow struct {
	Site, SiteName string
	Total          int
	ByType         map[string]int
	NursingShare   float64 // ByType[nursing] / Total; NaN with no beds
	Met            bool    // NursingShare >= NursingBedTarget
}

// ConversionRow is one bed type change in the period.
type ConversionRow struct {
	registry.BedTypeChange
	BedName, SiteName string
}

// buildBedTypes counts beds of visible sites by type.
func buildBedTypes(d *directory, keep func(string) bool) []BedTypeRow {
	by := map[string]*BedTypeRow{}
	for _, s := range d.sites {
		if keep(s.ID) {
			by[s.ID] = &BedTypeRow{Site: s.ID, SiteName: s.Name, ByType: map[string]int{}}
		}
	}
	for _, b := range d.beds {
		row := by[b.SiteID]
		if row == nil {
			continue
		}
		typ := b.Type
		if typ == "" {
			typ = registry.BedOrdinary
			if b.Nursing {
				typ = registry.BedNursing
			}
		}
		row.Total++
		row.ByType[typ]++
	}
	var out []BedTypeRow
	for _, s := range d.sites {
		if row := by[s.ID]; row != nil {
			row.NursingShare = ratio(row.ByType[registry.BedNursing], row.Total)
			row.Met = !math.IsNaN(row.NursingShare) && row.NursingShare >= NursingBedTarget
			out = append(out, *row)
		}
	}
	return out
}

// BedHistory is *registry.Store's bed type history.
type BedHistory interface {
	BedTypeHistory(ctx context.Context, bedID string, from, to time.Time) ([]registry.BedTypeChange, error)
}

var _ BedHistory = (*registry.Store)(nil)

// Programme is the programme page: meals with portions, visit coverage
// and bed types with conversions.
type Programme struct {
	Period      Period
	Meals       []MealPortionRow
	MealsErr    bool // meal events could not be read from InfluxDB
	Visits      VisitCoverage
	Beds        []BedTypeRow
	BedTypes    []string
	Conversions []ConversionRow
	Target      float64
}

// programme reads everything of the programme page for p.
func (s *Server) programme(ctx context.Context, lang string, p Period, keep func(string) bool) (*Programme, error) {
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	pr := &Programme{Period: p, BedTypes: registry.BedTypes, Target: NursingBedTarget}
	// Every alert opened in the period (not a capped list), for the
	// missed meals.
	var opened []alerting.AlertResponse
	tr := s.deps.Trends
	hasTrends := tr != nil
	if hasTrends {
		if opened, err = tr.AlertResponses(ctx, p.From, p.To); err != nil {
			return nil, err
		}
	}
	var cards []registry.MealCard
	if cl := s.deps.Cards; cl != nil {
		if cards, err = cl.Cards(ctx); err != nil {
			return nil, fmt.Errorf("read meal cards: %w", err)
		}
	}
	var meals []MealRecord
	pr.MealsErr = true
	if dr := s.deps.Days; dr != nil {
		if meals, err = dr.Meals(ctx, p.From, p.To); err != nil {
			s.log.Warn("programme report: meals unavailable", "err", err)
		} else {
			pr.MealsErr = false
		}
	}
	pr.Meals = buildMealPortions(lang, d, keep, cards, meals, opened, p)

	last := map[string]time.Time{}
	note := func(res string, at time.Time) {
		if !at.Before(p.From) && at.Before(p.To) && at.After(last[res]) {
			last[res] = at
		}
	}
	if hasTrends {
		vis, err := tr.VisitedResidents(ctx, p.From, p.To)
		if err != nil {
			return nil, err
		}
		for r, at := range vis {
			note(r, at)
		}
	}
	if vs := s.visits(); vs != nil {
		list, err := vs.Visits(ctx, p.From, p.To)
		if err != nil {
			return nil, err
		}
		for _, v := range list {
			note(v.Resident, v.At)
		}
	}
	if ec := s.deps.Events; ec != nil {
		taps, err := ec.CardTaps(ctx, p.From, p.To)
		if err != nil {
			s.log.Warn("programme report: card taps unavailable", "err", err)
		}
		_, taps = mealsAndVisits(cards, nil, taps)
		for _, v := range taps {
			note(v.Resident, v.At)
		}
	}
	pr.Visits = buildVisitCoverage(lang, d, keep, last)
	pr.Beds = buildBedTypes(d, keep)
	if bh := s.deps.Beds; bh != nil {
		ch, err := bh.BedTypeHistory(ctx, "", p.From, p.To)
		if err != nil {
			return nil, err
		}
		for _, c := range ch {
			b := d.bedByID[c.BedID]
			if b.ID != "" && !keep(b.SiteID) {
				continue
			}
			name := b.Name
			if room := d.roomByID[b.RoomID].Name; room != "" {
				name = room + " · " + b.Name
			}
			pr.Conversions = append(pr.Conversions, ConversionRow{BedTypeChange: c, BedName: name, SiteName: d.siteByID[b.SiteID].Name})
		}
	}
	sort.SliceStable(pr.Visits.NotVisited, func(i, j int) bool { return pr.Visits.NotVisited[i].Name < pr.Visits.NotVisited[j].Name })
	return pr, nil
}

// programmeCSV returns table name of pr: meals, visits (every vulnerable
// resident, visited or not), not_visited, beds, conversions. Times in loc.
func (pr *Programme) csv(name string, loc *time.Location) ([][]string, error) {
	switch name {
	case "meals":
		rows := [][]string{{"resident", "name", "site", "served", "with_portion", "avg_eaten_pct", "ate_little", "missed"}}
		for _, r := range pr.Meals {
			avg := ""
			if !math.IsNaN(r.AvgEatenPct) {
				avg = strconv.FormatFloat(r.AvgEatenPct, 'f', 1, 64)
			}
			rows = append(rows, []string{r.Resident, r.Name, r.SiteName, strconv.Itoa(r.Served), strconv.Itoa(r.Measured), avg, strconv.Itoa(r.Little), strconv.Itoa(r.Missed)})
		}
		return rows, nil
	case "visits", "not_visited":
		rows := [][]string{{"resident", "name", "site", "visited", "last_visit"}}
		list := pr.Visits.NotVisited
		if name == "visits" {
			list = append(append([]VisitedRow{}, pr.Visits.VisitedRows...), pr.Visits.NotVisited...)
		}
		for _, r := range list {
			rows = append(rows, []string{r.Resident, r.Name, r.SiteName, strconv.FormatBool(!r.Last.IsZero()), csvTime(r.Last, loc)})
		}
		return rows, nil
	case "beds":
		head := []string{"site", "site_name", "beds"}
		head = append(head, pr.BedTypes...)
		head = append(head, "nursing_share", "target", "target_met")
		rows := [][]string{head}
		for _, r := range pr.Beds {
			row := []string{r.Site, r.SiteName, strconv.Itoa(r.Total)}
			for _, t := range pr.BedTypes {
				row = append(row, strconv.Itoa(r.ByType[t]))
			}
			row = append(row, fmtRatio(r.NursingShare), fmtRatio(pr.Target), strconv.FormatBool(r.Met))
			rows = append(rows, row)
		}
		return rows, nil
	case "conversions":
		rows := [][]string{{"at", "bed", "bed_name", "site", "from", "to", "by", "reason"}}
		for _, c := range pr.Conversions {
			rows = append(rows, []string{csvTime(c.At, loc), c.BedID, c.BedName, c.SiteName, c.From, c.To, c.By, c.Reason})
		}
		return rows, nil
	}
	return nil, fmt.Errorf("no table %q: want meals, visits, not_visited, beds or conversions", truncate(name, 32))
}

// programmePage is GET /manager/programme (period picker; csv=<table>):
// meals with how much was eaten, visit coverage of vulnerable residents
// with those not yet visited, and bed types against the 90 % nursing
// target with the conversions in the period.
func (s *Server) programmePage(c *fiber.Ctx) error {
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, pick, errs := s.managerPeriod(c, loc)
	pr, err := s.programme(c.UserContext(), langOf(c), p, keep)
	if err != nil {
		return err
	}
	if name := c.Query("csv"); name != "" {
		if err := periodRefused(errs); err != nil {
			return err
		}
		rows, err := pr.csv(name, loc)
		if err != nil {
			return fiber.NewError(fiber.StatusNotFound, err.Error())
		}
		return s.sendCSV(c, name, p.Label, rows)
	}
	return s.renderView(c, periodStatus(errs), "manager_programme", "mg.programme.title", map[string]any{"P": pr, "Pick": pick, "Errors": errs, "Loc": loc})
}
