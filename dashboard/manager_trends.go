package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// TrendReader is *alerting.Manager's trend and device reports.
type TrendReader interface {
	AlertResponses(ctx context.Context, from, to time.Time) ([]alerting.AlertResponse, error)
	OfflinePeriods(ctx context.Context, from, to, now time.Time) (map[string]time.Duration, error)
	VisitedResidents(ctx context.Context, from, to time.Time) (map[string]time.Time, error)
}

var _ TrendReader = (*alerting.Manager)(nil)

// reportSettings returns the saved report settings (defaults without an
// account database).
func (s *Server) reportSettings(ctx context.Context) (ReportSettings, error) {
	if s.deps.Accounts == nil {
		return DefaultReportSettings, nil
	}
	return s.deps.Accounts.ReportSettings(ctx)
}

// TargetRow is one group of the response-time tables: Label is what the
// page shows for the group's key.
type TargetRow struct {
	alerting.TargetStat
	Label string
}

// Trends is the trends page of one period: alerts per day by type, and the
// response against the target by site, ward, shift, responder and channel.
// Response time is from the alert's opening to its first response by a
// person: the first acknowledgement, or the resolution when it was
// resolved without one (alerting.AlertResponse).
type Trends struct {
	Period   Period
	Settings ReportSettings
	Overall  TargetRow
	Groups   []TargetGroup
	Days     []string // YYYY-MM-DD in the report zone, every day of the period so far
	Types    []string // alert types seen, in alerting.Types order where known
	// PerDay[type][i] is the number of alerts of type opened on Days[i].
	PerDay map[string][]int
	// ShareByDay[i] is the share answered within target of the alerts
	// opened on Days[i]; NaN when there were none.
	ShareByDay []float64
	Alerts     int
}

// TargetGroup is one table of the trends page: Dim is site, ward, shift,
// responder or channel.
type TargetGroup struct {
	Dim  string
	Rows []TargetRow
}

// trendDims are the groupings of the trends page, in page order.
var trendDims = []string{"site", "ward", "shift", "responder", "channel"}

// buildTrends computes the trends of rs (alerts opened in p, already
// filtered to the visible sites) with d for wards and zones.
func buildTrends(lang string, d *directory, rs []alerting.AlertResponse, p Period, now time.Time, set ReportSettings) *Trends {
	tr := &Trends{Period: p, Settings: set, PerDay: map[string][]int{}, Alerts: len(rs)}
	end := p.To
	if now.Before(end) {
		end = now
	}
	idx := map[string]int{}
	for day := p.From; day.Before(end); day = day.AddDate(0, 0, 1) {
		idx[day.Format(time.DateOnly)] = len(tr.Days)
		tr.Days = append(tr.Days, day.Format(time.DateOnly))
	}
	within := make([]int, len(tr.Days))
	count := make([]int, len(tr.Days))
	for _, r := range rs {
		i, ok := idx[r.Opened.In(p.Loc).Format(time.DateOnly)]
		if !ok {
			continue
		}
		if tr.PerDay[r.Type] == nil {
			tr.PerDay[r.Type] = make([]int, len(tr.Days))
			tr.Types = append(tr.Types, r.Type)
		}
		tr.PerDay[r.Type][i]++
		count[i]++
		if rt, ok := r.ResponseTime(); ok && rt <= set.Target.Within {
			within[i]++
		}
	}
	slices.Sort(tr.Types)
	tr.ShareByDay = make([]float64, len(tr.Days))
	for i := range tr.Days {
		tr.ShareByDay[i] = ratio(within[i], count[i])
	}
	wardOf := func(a alerting.AlertResponse) string {
		site := d.siteByID[a.Site].Name
		if site == "" {
			site = a.Site
		}
		ward := ""
		if res, ok := d.resByID[a.Resident]; ok && res.BedID != "" {
			ward = d.roomByID[d.bedByID[res.BedID].RoomID].Ward
		}
		if ward == "" {
			ward = trIn(lang, "mg.ward.default")
		}
		return site + " · " + ward
	}
	keys := map[string]func(alerting.AlertResponse) string{
		"site": func(a alerting.AlertResponse) string {
			if n := d.siteByID[a.Site].Name; n != "" {
				return n
			}
			return a.Site
		},
		"ward": wardOf,
		"shift": func(a alerting.AlertResponse) string {
			sh, _ := set.Shifts.Shift(a.Opened, d.loc(a.Site))
			return sh
		},
		"responder": func(a alerting.AlertResponse) string {
			if a.Responder == "" {
				return noneKey
			}
			return a.Responder
		},
		"channel": func(a alerting.AlertResponse) string {
			if a.Channel == "" {
				return noneKey
			}
			return a.Channel
		},
	}
	for _, dim := range trendDims {
		g := TargetGroup{Dim: dim}
		for _, st := range alerting.SummariseResponses(rs, set.Target, keys[dim]) {
			row := TargetRow{TargetStat: st, Label: st.Key}
			switch {
			case st.Key == noneKey:
				row.Label = trIn(lang, "mg.noresponse")
			case dim == "shift":
				row.Label = trIn(lang, "mg.shift."+st.Key)
			case dim == "channel":
				row.Label = channelName(lang, st.Key)
			}
			g.Rows = append(g.Rows, row)
		}
		if dim == "shift" { // day, evening, night order
			slices.SortFunc(g.Rows, func(a, b TargetRow) int {
				return slices.Index(alerting.Shifts, a.Key) - slices.Index(alerting.Shifts, b.Key)
			})
		}
		tr.Groups = append(tr.Groups, g)
	}
	if all := alerting.SummariseResponses(rs, set.Target, func(alerting.AlertResponse) string { return "all" }); len(all) == 1 {
		tr.Overall = TargetRow{TargetStat: all[0], Label: trIn(lang, "mg.all")}
	}
	return tr
}

// channelName names a channel in lang through the catalogue's channel.*
// keys, the key itself when unknown.
func channelName(lang, ch string) string {
	if v := trIn(lang, "channel."+ch); v != "channel."+ch {
		return v
	}
	return ch
}

// chartJSON is the data of the trends charts for web/src/charts.js
// (initTrendCharts): days as unix seconds of local noon, a series per
// alert type, the daily share within target in % (null: no alerts) and the
// target in %.
func (tr *Trends) chartJSON(lang string) template.JS {
	type series struct {
		Label  string `json:"label"`
		Values []int  `json:"values"`
	}
	out := struct {
		Days   []int64    `json:"days"`
		Series []series   `json:"series"`
		Share  []*float64 `json:"share"`
		Target float64    `json:"target"`
	}{Target: math.Round(tr.Settings.Target.Share*1000) / 10}
	for _, d := range tr.Days {
		t, _ := time.ParseInLocation(time.DateOnly, d, tr.Period.Loc)
		out.Days = append(out.Days, t.Add(12*time.Hour).Unix())
	}
	for _, typ := range tr.Types {
		out.Series = append(out.Series, series{Label: trIn(lang, "type."+typ), Values: tr.PerDay[typ]})
	}
	for _, v := range tr.ShareByDay {
		if math.IsNaN(v) {
			out.Share = append(out.Share, nil)
			continue
		}
		x := math.Round(v*1000) / 10
		out.Share = append(out.Share, &x)
	}
	b, _ := json.Marshal(out)
	return template.JS(b) // json.Marshal escapes <, > and & in strings
}

// targetText says the target in lang: "90 % acknowledged within 2 min".
func targetText(lang string, t alerting.ResponseTarget) string {
	return trf(lang, "mg.target.text", "share", strconv.FormatFloat(math.Round(t.Share*1000)/10, 'f', -1, 64), "within", durText(lang, t.Within))
}

// trendsPage is GET /manager/trends (period picker: period, month, from,
// to; csv=<table> answers that table as CSV): alerts per day by type and
// the response against the target by site, ward, shift, responder and
// channel.
func (s *Server) trendsPage(c *fiber.Ctx) error {
	lang := langOf(c)
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, pick, errs := s.managerPeriod(c, loc)
	ctx := c.UserContext()
	set, err := s.reportSettings(ctx)
	if err != nil {
		return err
	}
	tr, err := s.trends(ctx, lang, p, keep, set)
	if err != nil {
		return err
	}
	if name := c.Query("csv"); name != "" {
		if err := periodRefused(errs); err != nil {
			return err
		}
		rows, err := tr.csv(name, loc)
		if err != nil {
			return fiber.NewError(fiber.StatusNotFound, err.Error())
		}
		return s.sendCSV(c, name, p.Label, rows)
	}
	return s.renderView(c, periodStatus(errs), "manager_trends", "mg.trends.title", map[string]any{"Trends": tr, "Pick": pick, "Errors": errs,
		"Chart": tr.chartJSON(lang), "Target": targetText(lang, set.Target), "ShiftStarts": ShiftStarts(set.Shifts), "ShiftText": strings.ReplaceAll(ShiftStarts(set.Shifts), ",", ", "),
		"TargetSeconds": int(set.Target.Within / time.Second), "TargetPct": strconv.FormatFloat(math.Round(set.Target.Share*1000)/10, 'f', -1, 64),
		"CanEdit": canEditSettings(c)})
}

func canEditSettings(c *fiber.Ctx) bool {
	u, ok := userFrom(c)
	return ok && (u.Role == RoleManager || u.Role == RoleAdmin)
}

// trends reads the alerts of p and builds the trends page.
func (s *Server) trends(ctx context.Context, lang string, p Period, keep func(string) bool, set ReportSettings) (*Trends, error) {
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	var rs []alerting.AlertResponse
	if tr := s.deps.Trends; tr != nil {
		all, err := tr.AlertResponses(ctx, p.From, p.To)
		if err != nil {
			return nil, err
		}
		for _, r := range all {
			if keep(r.Site) {
				rs = append(rs, r)
			}
		}
	}
	return buildTrends(lang, d, rs, p, s.now(), set), nil
}

// trendCSVs are the tables of the trends page: per_day and response_<dim>.
func trendCSVs() []string {
	out := []string{"per_day"}
	for _, d := range trendDims {
		out = append(out, "response_"+d)
	}
	return out
}

// csv returns table name of tr (see trendCSVs): per_day has a row per day
// and type; response_<dim> a row per group with the target, counts, share
// (0..1, 4 decimals) and percentiles in seconds.
func (tr *Trends) csv(name string, loc *time.Location) ([][]string, error) {
	if name == "per_day" {
		rows := [][]string{{"date", "type", "alerts", "share_within_target"}}
		for i, day := range tr.Days {
			for _, typ := range tr.Types {
				rows = append(rows, []string{day, typ, strconv.Itoa(tr.PerDay[typ][i]), fmtRatio(tr.ShareByDay[i])})
			}
		}
		return rows, nil
	}
	dim, ok := strings.CutPrefix(name, "response_")
	for _, g := range tr.Groups {
		if ok && g.Dim == dim {
			rows := [][]string{{dim, "target_s", "target_share", "alerts", "responded", "within_target", "share_within_target", "target_met", "p50_s", "p90_s", "p95_s"}}
			for _, r := range g.Rows {
				rows = append(rows, []string{r.Key, strconv.Itoa(int(tr.Settings.Target.Within / time.Second)), fmtRatio(tr.Settings.Target.Share),
					strconv.Itoa(r.Alerts), strconv.Itoa(r.Responded), strconv.Itoa(r.Within), fmtRatio(r.Share), strconv.FormatBool(r.Met),
					fmtSec(r.P50), fmtSec(r.P90), fmtSec(r.P95)})
			}
			return rows, nil
		}
	}
	return nil, fmt.Errorf("no table %q: want one of %s", truncate(name, 32), strings.Join(trendCSVs(), ", "))
}

func fmtSec(d *time.Duration) string {
	if d == nil {
		return ""
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// saveTrendSettings is POST /manager/trends/settings (manager, admin):
// target_s (seconds, 1-86400), target_pct (1-100) and shifts
// ("HH:MM,HH:MM,HH:MM"). A bad value re-renders the page with the reason
// beside its field; nothing is saved then.
func (s *Server) saveTrendSettings(c *fiber.Ctx) error {
	if !canEditSettings(c) {
		return fiber.NewError(fiber.StatusForbidden, trIn(langOf(c), "mg.settings.forbidden"))
	}
	lang := langOf(c)
	errs := formErrors{}
	set := DefaultReportSettings
	if n, err := strconv.Atoi(strings.TrimSpace(c.FormValue("target_s"))); err != nil || n < 1 || n > 86400 {
		errs["target_s"] = trIn(lang, "mg.err.target_s")
	} else {
		set.Target.Within = time.Duration(n) * time.Second
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(c.FormValue("target_pct")), 64); err != nil || !(f >= 1 && f <= 100) {
		errs["target_pct"] = trIn(lang, "mg.err.target_pct")
	} else {
		set.Target.Share = f / 100
	}
	if b, err := ParseShiftStarts(c.FormValue("shifts")); err != nil {
		errs["shifts"] = trIn(lang, "mg.err.shifts")
	} else {
		set.Shifts = b
	}
	if len(errs) == 0 && s.deps.Accounts != nil {
		u, _ := userFrom(c)
		if err := s.deps.Accounts.SaveReportSettings(c.UserContext(), set, u.Username); err != nil {
			return err
		}
		s.audit(c, "report_settings", "manager_settings", fmt.Sprintf("target %s %.3f shifts %s", set.Target.Within, set.Target.Share, ShiftStarts(set.Shifts)))
		return c.Redirect("/manager/trends?saved=1", fiber.StatusSeeOther)
	}
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, pick, _ := s.managerPeriod(c, loc)
	cur, err := s.reportSettings(c.UserContext())
	if err != nil {
		return err
	}
	tr, err := s.trends(c.UserContext(), lang, p, keep, cur)
	if err != nil {
		return err
	}
	c.Status(fiber.StatusBadRequest)
	return s.renderView(c, 0, "manager_trends", "mg.trends.title", map[string]any{"Trends": tr, "Pick": pick, "Errors": errs,
		"Chart": tr.chartJSON(lang), "Target": targetText(lang, cur.Target), "ShiftStarts": c.FormValue("shifts"), "ShiftText": strings.ReplaceAll(ShiftStarts(cur.Shifts), ",", ", "),
		"TargetSeconds": c.FormValue("target_s"), "TargetPct": c.FormValue("target_pct"), "CanEdit": true})
}

// noneKey is the responder and channel key of alerts nobody answered.
const noneKey = "none"
