package dashboard

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Report names: the CSV exports are /manager/reports/<name>.csv.
var ReportNames = []string{"occupancy", "devices", "response", "false_alarms", "meals", "visits"}

// Period is a report period [From, To) with the zone its days are counted
// in.
type Period struct {
	From, To time.Time
	Loc      *time.Location
	Label    string // "2026-03"
}

// MonthPeriod returns the calendar month ym ("YYYY-MM"; "" = the month of
// now) in loc. Errors: ym not YYYY-MM.
func MonthPeriod(ym string, now time.Time, loc *time.Location) (Period, error) {
	if ym == "" {
		ym = now.In(loc).Format("2006-01")
	}
	t, err := time.ParseInLocation("2006-01", ym, loc)
	if err != nil || len(ym) != 7 {
		return Period{}, fmt.Errorf("month %q: want YYYY-MM, e.g. %s", truncate(ym, 16), now.In(loc).Format("2006-01"))
	}
	return Period{From: t, To: t.AddDate(0, 1, 0), Loc: loc, Label: ym}, nil
}

// elapsedDays is the number of calendar days of p up to now (the whole
// month once it is over; at least 1).
func (p Period) elapsedDays(now time.Time) int {
	end := p.To
	if now.Before(end) {
		end = now
	}
	n := 0
	for d := p.From; d.Before(end); d = d.AddDate(0, 0, 1) {
		n++
	}
	return max(n, 1)
}

// OccupancyRow is the occupancy of one site: beds, occupied beds (a
// resident is assigned), nursing beds and occupied nursing beds;
// NursingShare = Nursing / Beds, Occupancy = Occupied / Beds (NaN with no
// beds).
type OccupancyRow struct {
	Site, SiteName                           string
	Beds, Occupied, Nursing, NursingOccupied int
	Occupancy, NursingShare                  float64
}

// occupancyReport counts beds per site of d that keep(site) allows.
func occupancyReport(d *directory, keep func(string) bool) []OccupancyRow {
	occupied := map[string]bool{}
	for _, r := range d.residents {
		if r.BedID != "" {
			occupied[r.BedID] = true
		}
	}
	bySite := map[string]*OccupancyRow{}
	for _, s := range d.sites {
		if keep(s.ID) {
			bySite[s.ID] = &OccupancyRow{Site: s.ID, SiteName: s.Name}
		}
	}
	for _, b := range d.beds {
		row := bySite[b.SiteID]
		if row == nil {
			continue
		}
		row.Beds++
		if occupied[b.ID] {
			row.Occupied++
		}
		if b.Nursing {
			row.Nursing++
			if occupied[b.ID] {
				row.NursingOccupied++
			}
		}
	}
	var out []OccupancyRow
	for _, s := range d.sites {
		row := bySite[s.ID]
		if row == nil {
			continue
		}
		row.Occupancy, row.NursingShare = ratio(row.Occupied, row.Beds), ratio(row.Nursing, row.Beds)
		out = append(out, *row)
	}
	return out
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// DeviceHealthRow is an open alert about protection: unprotected (a
// resident's safety device is down), device_offline or low_battery.
type DeviceHealthRow struct {
	Site, Type, Resident, ResidentName, Device, Since, Detail string
}

// deviceHealthTypes are the alert types of the device health report.
var deviceHealthTypes = []string{alerting.TypeUnprotected, alerting.TypeDeviceOffline, alerting.TypeLowBattery}

func deviceHealthReport(d *directory, active []alerting.Alert, keep func(string) bool) []DeviceHealthRow {
	var out []DeviceHealthRow
	for _, a := range active {
		if !slices.Contains(deviceHealthTypes, a.Type) || !keep(a.Site) {
			continue
		}
		r := d.row(a)
		out = append(out, DeviceHealthRow{Site: a.Site, Type: a.Type, Resident: r.ResidentID, ResidentName: r.ResidentName,
			Device: a.Device, Since: r.Opened, Detail: a.Detail})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return slices.Index(deviceHealthTypes, out[i].Type) < slices.Index(deviceHealthTypes, out[j].Type)
	})
	return out
}

// FalseAlarmRow is the false-alarm rate of one device: alerts resolved in
// the period, how many with outcome false_alarm, and their ratio.
type FalseAlarmRow struct {
	Device          string
	Resolved, False int
	Rate            float64
}

// falseAlarmReport groups the alerts resolved in p by device, highest
// rate first.
func falseAlarmReport(alerts []alerting.Alert, p Period, keep func(string) bool) []FalseAlarmRow {
	by := map[string]*FalseAlarmRow{}
	for _, a := range alerts {
		if a.ResolvedAt == nil || a.ResolvedAt.Before(p.From) || !a.ResolvedAt.Before(p.To) || !keep(a.Site) {
			continue
		}
		r := by[a.Device]
		if r == nil {
			r = &FalseAlarmRow{Device: a.Device}
			by[a.Device] = r
		}
		r.Resolved++
		if a.Outcome == alerting.OutcomeFalseAlarm {
			r.False++
		}
	}
	out := make([]FalseAlarmRow, 0, len(by))
	for _, r := range by {
		r.Rate = ratio(r.False, r.Resolved)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rate != out[j].Rate {
			return out[i].Rate > out[j].Rate
		}
		return out[i].Device < out[j].Device
	})
	return out
}

// MealRow is a resident's meals in the period: served (meal events in
// InfluxDB, -1 when unavailable) and missed (meal_missed alerts opened).
type MealRow struct {
	Resident, Name string
	Served, Missed int
}

// mealReport merges served counts and meal_missed alerts opened in p.
func mealReport(d *directory, served map[string]int, servedOK bool, alerts []alerting.Alert, p Period, keep func(string) bool) []MealRow {
	missed := map[string]int{}
	for _, a := range alerts {
		if a.Type == alerting.TypeMealMissed && a.Resident != nil && !a.OpenedAt.Before(p.From) && a.OpenedAt.Before(p.To) {
			missed[*a.Resident]++
		}
	}
	var out []MealRow
	for _, r := range d.residents {
		if !keep(r.SiteID) {
			continue
		}
		row := MealRow{Resident: r.ID, Name: r.Name, Served: served[r.ID], Missed: missed[r.ID]}
		if !servedOK {
			row.Served = -1
		}
		out = append(out, row)
	}
	return out
}

// VisitRow is the visit coverage of one vulnerable resident: visits in
// the period, the days (in the site's zone) with at least one, the days
// of the period so far, and DaysVisited / Days.
type VisitRow struct {
	Resident, Name            string
	Visits, DaysVisited, Days int
	Coverage                  float64
}

// visitReport counts the visits (check-ins and card taps) of vulnerable
// residents in p.
func visitReport(d *directory, visits []Visit, p Period, now time.Time, keep func(string) bool) []VisitRow {
	days := p.elapsedDays(now)
	type acc struct {
		n    int
		days map[string]bool
	}
	by := map[string]*acc{}
	for _, v := range visits {
		if v.At.Before(p.From) || !v.At.Before(p.To) {
			continue
		}
		a := by[v.Resident]
		if a == nil {
			a = &acc{days: map[string]bool{}}
			by[v.Resident] = a
		}
		a.n++
		a.days[v.At.In(d.loc(d.resByID[v.Resident].SiteID)).Format("2006-01-02")] = true
	}
	var out []VisitRow
	for _, r := range d.residents {
		if !r.Vulnerable || !keep(r.SiteID) {
			continue
		}
		row := VisitRow{Resident: r.ID, Name: r.Name, Days: days}
		if a := by[r.ID]; a != nil {
			row.Visits, row.DaysVisited = a.n, len(a.days)
		}
		row.Coverage = ratio(row.DaysVisited, row.Days)
		out = append(out, row)
	}
	return out
}

// Report is every manager report of one period.
type Report struct {
	Period      Period
	Occupancy   []OccupancyRow
	Devices     []DeviceHealthRow
	Response    []alerting.ResponseStat
	ResponseErr bool // the store has no response-time report
	FalseAlarms []FalseAlarmRow
	Meals       []MealRow
	MealsErr    bool // served meals could not be read from InfluxDB
	Visits      []VisitRow
}

// ResponseTimer is *alerting.Manager's response-time report.
type ResponseTimer interface {
	ResponseTimes(ctx context.Context, from, to time.Time) ([]alerting.ResponseStat, error)
}

// EventCounter reads meal and card-tap events from InfluxDB; *FluxVitals
// implements it.
type EventCounter interface {
	// MealsByCard returns the number of meal events per meal card (event
	// attribute card) in [from, to).
	MealsByCard(ctx context.Context, from, to time.Time) (map[string]int, error)
	// CardTaps returns the card_tap events with a resident tag (the
	// resident the tapping device is bound to) in [from, to) as visits
	// (Source VisitCardTap, Card the tapped card, Actor the device).
	CardTaps(ctx context.Context, from, to time.Time) ([]Visit, error)
}

// CardLister lists meal cards; *registry.Store implements it.
type CardLister interface {
	Cards(ctx context.Context) ([]registry.MealCard, error)
}

// eventsQuery selects field of measurement events of type typ.
func (f *FluxVitals) eventsQuery(typ, field string, from, to time.Time) string {
	return fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "events" and r.type == %s and r._field == %s)`,
		fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), fluxString(typ), fluxString(field))
}

// MealsByCard implements EventCounter (events of type meal, field
// attr_card, counted by value). Errors: InfluxDB's, wrapped with the
// bucket.
func (f *FluxVitals) MealsByCard(ctx context.Context, from, to time.Time) (map[string]int, error) {
	q := f.eventsQuery("meal", "attr_card", from, to) + `
  |> map(fn: (r) => ({_time: r._time, card: r._value, _value: 1}))
  |> group(columns: ["card"])
  |> sum()`
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query meals from bucket %s: %w", f.bucket, err)
	}
	defer res.Close()
	out := map[string]int{}
	for res.Next() {
		r := res.Record()
		card, _ := r.ValueByKey("card").(string)
		v, ok := toFloat(r.Value())
		if card != "" && ok {
			out[card] += int(v)
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read meals from bucket %s: %w", f.bucket, err)
	}
	return out, nil
}

// CardTaps implements EventCounter (events of type card_tap, field
// attr_card, with a resident tag).
func (f *FluxVitals) CardTaps(ctx context.Context, from, to time.Time) ([]Visit, error) {
	q := f.eventsQuery("card_tap", "attr_card", from, to) + `
  |> filter(fn: (r) => exists r.resident)
  |> group()
  |> keep(columns: ["_time", "_value", "resident", "site", "device"])`
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query card taps from bucket %s: %w", f.bucket, err)
	}
	defer res.Close()
	var out []Visit
	for res.Next() {
		r := res.Record()
		id, _ := r.ValueByKey("resident").(string)
		site, _ := r.ValueByKey("site").(string)
		dev, _ := r.ValueByKey("device").(string)
		card, _ := r.Value().(string)
		if id != "" {
			out = append(out, Visit{Resident: id, Site: site, At: r.Time().UTC(), Actor: dev, Card: card, Source: VisitCardTap})
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read card taps from bucket %s: %w", f.bucket, err)
	}
	return out, nil
}

// mealsAndVisits maps meals by card to residents and drops card taps made
// with a resident's own meal card (a visit is a caregiver's tap).
func mealsAndVisits(cards []registry.MealCard, byCard map[string]int, taps []Visit) (served map[string]int, visits []Visit) {
	holder := map[string]string{}
	for _, c := range cards {
		holder[c.ID] = c.ResidentID
	}
	served = map[string]int{}
	for card, n := range byCard {
		if r, ok := holder[card]; ok {
			served[r] += n
		}
	}
	for _, v := range taps {
		if _, own := holder[v.Card]; !own {
			visits = append(visits, v)
		}
	}
	return served, visits
}

// report builds every manager report of p for the sites keep allows.
func (s *Server) report(ctx context.Context, p Period, keep func(string) bool) (*Report, error) {
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rep := &Report{Period: p}
	rep.Occupancy = occupancyReport(d, keep)
	active, err := s.activeAlerts(ctx, alerting.Filter{})
	if err != nil {
		return nil, err
	}
	rep.Devices = deviceHealthReport(d, active, keep)
	if rt := s.deps.ResponseTimes; rt != nil {
		stats, err := rt.ResponseTimes(ctx, p.From, p.To)
		if err != nil {
			return nil, fmt.Errorf("response times: %w", err)
		}
		for _, st := range stats {
			if (st.Dimension == "site" && !keep(st.Key)) || st.Dimension == "responder" {
				continue
			}
			rep.Response = append(rep.Response, st)
		}
	} else {
		rep.ResponseErr = true
	}
	all, err := s.deps.Alerts.List(ctx, alerting.Filter{Limit: MaxAlertLimit})
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	rep.FalseAlarms = falseAlarmReport(all, p, keep)
	var cards []registry.MealCard
	cardsOK := false
	if cl := s.deps.Cards; cl != nil {
		if cards, err = cl.Cards(ctx); err != nil {
			return nil, fmt.Errorf("read meal cards: %w", err)
		}
		cardsOK = true
	}
	var byCard map[string]int
	var taps []Visit
	servedOK := false
	ec := s.deps.Events
	if ec != nil && cardsOK {
		if byCard, err = ec.MealsByCard(ctx, p.From, p.To); err != nil {
			s.log.Warn("manager report: meals unavailable", "err", err)
		} else {
			servedOK = true
		}
	}
	if ec != nil {
		if taps, err = ec.CardTaps(ctx, p.From, p.To); err != nil {
			s.log.Warn("manager report: card taps unavailable", "err", err)
		}
	}
	served, tapVisits := mealsAndVisits(cards, byCard, taps)
	rep.MealsErr = !servedOK
	rep.Meals = mealReport(d, served, servedOK, all, p, keep)
	var visits []Visit
	if vs := s.visits(); vs != nil {
		if visits, err = vs.Visits(ctx, p.From, p.To); err != nil {
			return nil, err
		}
	}
	visits = append(visits, tapVisits...)
	rep.Visits = visitReport(d, visits, p, now, keep)
	return rep, nil
}

// csvCell neutralises spreadsheet formulas: a cell starting with = + - @
// tab or CR gets a leading apostrophe (OWASP CSV injection).
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func fmtRatio(f float64) string {
	if math.IsNaN(f) {
		return ""
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}

func fmtDurMS(d *time.Duration) string {
	if d == nil {
		return ""
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// WriteCSV writes report name of rep as CSV with a header row. Ratios are
// 0..1 with 4 decimals ("" when undefined), durations in ms ("" when no
// alert was acknowledged/resolved), served meals "" when unavailable.
// Errors: an unknown name, or the writer's error.
func (rep *Report) WriteCSV(w io.Writer, name string) error {
	cw := csv.NewWriter(w)
	var rows [][]string
	switch name {
	case "occupancy":
		rows = append(rows, []string{"site", "site_name", "beds", "occupied", "occupancy", "nursing_beds", "nursing_occupied", "nursing_share"})
		for _, r := range rep.Occupancy {
			rows = append(rows, []string{r.Site, r.SiteName, strconv.Itoa(r.Beds), strconv.Itoa(r.Occupied), fmtRatio(r.Occupancy),
				strconv.Itoa(r.Nursing), strconv.Itoa(r.NursingOccupied), fmtRatio(r.NursingShare)})
		}
	case "devices":
		rows = append(rows, []string{"site", "type", "resident", "resident_name", "device", "since", "detail"})
		for _, r := range rep.Devices {
			rows = append(rows, []string{r.Site, r.Type, r.Resident, r.ResidentName, r.Device, r.Since, r.Detail})
		}
	case "response":
		rows = append(rows, []string{"dimension", "key", "alerts", "acknowledged", "resolved", "ack_p50_ms", "ack_p90_ms", "resolve_p50_ms", "resolve_p90_ms"})
		for _, r := range rep.Response {
			rows = append(rows, []string{r.Dimension, r.Key, strconv.Itoa(r.Alerts), strconv.Itoa(r.Acknowledged), strconv.Itoa(r.Resolved),
				fmtDurMS(r.AckP50), fmtDurMS(r.AckP90), fmtDurMS(r.ResolveP50), fmtDurMS(r.ResolveP90)})
		}
	case "false_alarms":
		rows = append(rows, []string{"device", "resolved", "false_alarms", "rate"})
		for _, r := range rep.FalseAlarms {
			rows = append(rows, []string{r.Device, strconv.Itoa(r.Resolved), strconv.Itoa(r.False), fmtRatio(r.Rate)})
		}
	case "meals":
		rows = append(rows, []string{"resident", "name", "served", "missed"})
		for _, r := range rep.Meals {
			served := strconv.Itoa(r.Served)
			if r.Served < 0 {
				served = ""
			}
			rows = append(rows, []string{r.Resident, r.Name, served, strconv.Itoa(r.Missed)})
		}
	case "visits":
		rows = append(rows, []string{"resident", "name", "visits", "days_visited", "days", "coverage"})
		for _, r := range rep.Visits {
			rows = append(rows, []string{r.Resident, r.Name, strconv.Itoa(r.Visits), strconv.Itoa(r.DaysVisited), strconv.Itoa(r.Days), fmtRatio(r.Coverage)})
		}
	default:
		return fmt.Errorf("report %q: want one of %s", truncate(name, 32), strings.Join(ReportNames, ", "))
	}
	for i, row := range rows {
		if i > 0 {
			for j := range row {
				row[j] = csvCell(row[j])
			}
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write report %s: %w", name, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write report %s: %w", name, err)
	}
	return nil
}
