package dashboard

import (
	"context"
	"fmt"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
)

// Visit sources.
const (
	VisitCheckin = "checkin"  // the caregiver view's check-in button
	VisitCardTap = "card_tap" // a card tap at the home gateway (InfluxDB events)
)

// Visit is a caregiver's visit at a resident's bed. At is UTC.
type Visit struct {
	Resident string
	Site     string
	At       time.Time
	UserID   int64
	Actor    string
	Source   string
	// Card is the tapped card of a card tap ("" for a check-in).
	Card string
}

// visitStore keeps check-ins; implemented by *Accounts (table
// dashboard_visits, migration 00002_visits.sql).
type visitStore interface {
	RecordVisit(ctx context.Context, v Visit) error
	Visits(ctx context.Context, from, to time.Time) ([]Visit, error)
}

// RecordVisit stores a check-in. Errors: an invalid resident or site id,
// or the database's error.
func (a *Accounts) RecordVisit(ctx context.Context, v Visit) error {
	if err := device.ValidateID("resident", v.Resident); err != nil {
		return fmt.Errorf("record visit: %w", err)
	}
	if v.Source == "" {
		v.Source = VisitCheckin
	}
	_, err := a.db.ExecContext(ctx, a.db.Rebind(`INSERT INTO dashboard_visits (resident_id, site_id, at_ms, user_id, actor, source) VALUES (?, ?, ?, ?, ?, ?)`),
		v.Resident, v.Site, v.At.UnixMilli(), v.UserID, v.Actor, v.Source)
	if err != nil {
		return fmt.Errorf("record visit of %s: %w", v.Resident, err)
	}
	return nil
}

// Visits returns the check-ins in [from, to), oldest first.
func (a *Accounts) Visits(ctx context.Context, from, to time.Time) ([]Visit, error) {
	rows, err := a.db.QueryContext(ctx, a.db.Rebind(`SELECT resident_id, site_id, at_ms, user_id, actor, source FROM dashboard_visits
		WHERE at_ms >= ? AND at_ms < ? ORDER BY at_ms`), from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list visits: %w", err)
	}
	defer rows.Close()
	var out []Visit
	for rows.Next() {
		var v Visit
		var ms int64
		if err := rows.Scan(&v.Resident, &v.Site, &ms, &v.UserID, &v.Actor, &v.Source); err != nil {
			return nil, fmt.Errorf("list visits: %w", err)
		}
		v.At = time.UnixMilli(ms).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list visits: %w", err)
	}
	return out, nil
}

// visits returns the check-in store, or nil when the server has no
// account database.
func (s *Server) visits() visitStore {
	if s.deps.Accounts == nil {
		return nil
	}
	return s.deps.Accounts
}

// WindowedVitals is a VitalsQuerier that averages over a chosen window:
// ResidentVitalsEvery returns per field the means over windows of every
// (e.g. 30 s for the last hour, 5 min for the last day) in [from, to),
// oldest first. *FluxVitals implements it; a querier without it is asked
// through ResidentVitals (its own window).
type WindowedVitals interface {
	ResidentVitalsEvery(ctx context.Context, residentID string, from, to time.Time, every time.Duration) (map[string][]Point, error)
}

// ResidentVitalsEvery implements WindowedVitals (Flux aggregateWindow
// every, fn mean). Errors as ResidentVitals, and a window under 1 s.
func (f *FluxVitals) ResidentVitalsEvery(ctx context.Context, residentID string, from, to time.Time, every time.Duration) (map[string][]Point, error) {
	if every < time.Second {
		return nil, fmt.Errorf("query vitals of %s: window %s is under 1s", residentID, every)
	}
	g := *f
	g.every = every
	return g.ResidentVitals(ctx, residentID, from, to)
}

// vitalsWindow is one chart period of the resident page.
type vitalsWindow struct {
	TitleKey string
	Span     time.Duration // how far back
	Every    time.Duration // aggregation window
}

// residentWindows: the last hour at 30 s means, the last day at 5 min
// means (288 points a chart).
var residentWindows = []vitalsWindow{
	{TitleKey: "res.vitals_hour", Span: time.Hour, Every: 30 * time.Second},
	{TitleKey: "res.vitals_day", Span: 24 * time.Hour, Every: 5 * time.Minute},
}

// vitalsIn reads the resident's series over w.
func (s *Server) vitalsIn(ctx context.Context, id string, now time.Time, w vitalsWindow) (map[string][]Point, error) {
	from := now.Add(-w.Span)
	if wv := s.deps.Windows; wv != nil {
		return wv.ResidentVitalsEvery(ctx, id, from, now, w.Every)
	}
	return s.deps.Vitals.ResidentVitals(ctx, id, from, now)
}

// chartGroup is the charts of one period.
type chartGroup struct {
	Title  string
	Charts []template.HTML
	Err    bool
	Empty  bool
}

// timelineEntry is one line of a resident's event timeline.
type timelineEntry struct {
	At      string
	AlertID int64
	Type    string
	Action  string
	Actor   string
	Channel string
	Detail  string
	t       time.Time
}

// residentPage is GET /residents/:id: who and where, live state, open
// alerts with acknowledge and resolve, vitals charts of the last hour and
// the last day (InfluxDB), the check-in button and the event timeline.
// Scope and the audit entry are scopeResident's.
func (s *Server) residentPage(c *fiber.Ctx) error {
	ctx := c.UserContext()
	lang := langOf(c)
	id := c.Params("id")
	if err := device.ValidateID("resident", id); err != nil {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	d, err := s.directoryIn(ctx, lang)
	if err != nil {
		return err
	}
	res, ok := d.resByID[id]
	if !ok {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	now := s.now()
	loc := d.loc(res.SiteID)
	room, bed := d.bedLabel(res.BedID)
	devs := d.devicesOf(res.BedID, res.ID, now)
	devViews, vitals, occ, _ := s.liveSummary(devs)
	for i := range vitals {
		vitals[i].Label, vitals[i].Unit = trIn(lang, "vital."+vitals[i].Field), trIn(lang, "unit."+vitals[i].Field)
	}

	active, err := s.activeAlerts(ctx, alerting.Filter{Resident: id})
	if err != nil {
		return err
	}
	var openRows []alertRow
	for _, a := range active {
		openRows = append(openRows, d.row(a))
	}

	var groups []chartGroup
	for _, w := range residentWindows {
		g := chartGroup{Title: trIn(lang, w.TitleKey), Empty: true}
		series, err := s.vitalsIn(ctx, id, now, w)
		if err != nil {
			g.Err = true
			s.log.Warn("resident page: vitals history unavailable", "resident", id, "window", w.Span, "err", err)
		}
		gap := max(chartGap, 2*w.Every)
		for _, f := range VitalFields {
			if len(series[f]) > 0 {
				g.Empty = false
			}
			g.Charts = append(g.Charts, lineChartIn(lang, trIn(lang, "vital."+f)+" ("+trIn(lang, "unit."+f)+")", series[f], now.Add(-w.Span), now, loc, gap))
		}
		groups = append(groups, g)
	}

	all, err := s.deps.Alerts.List(ctx, alerting.Filter{Resident: id, Limit: 20})
	if err != nil {
		return fmt.Errorf("list alerts of %s: %w", id, err)
	}
	var timeline []timelineEntry
	for _, a := range all {
		hist, err := s.deps.Alerts.History(ctx, a.ID)
		if err != nil {
			return fmt.Errorf("history of alert %d: %w", a.ID, err)
		}
		for _, h := range hist {
			timeline = append(timeline, timelineEntry{At: h.At.In(loc).Format(timeFormat), AlertID: a.ID, Type: a.Type,
				Action: h.Action, Actor: h.Actor, Channel: h.Channel, Detail: historyWords(lang, a, h), t: h.At})
		}
	}
	lastVisit := ""
	if vs := s.visits(); vs != nil {
		visits, err := vs.Visits(ctx, now.Add(-31*24*time.Hour), now.Add(time.Minute))
		if err != nil {
			s.log.Warn("resident page: visits unavailable", "resident", id, "err", err)
		}
		for _, v := range visits {
			if v.Resident != id {
				continue
			}
			lastVisit = v.At.In(loc).Format(timeFormat) + " · " + v.Actor
			timeline = append(timeline, timelineEntry{At: v.At.In(loc).Format(timeFormat), Type: "visit", Action: v.Source, Actor: v.Actor, Channel: channelDashboard, t: v.At})
		}
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].t.After(timeline[j].t) })
	if len(timeline) > 100 {
		timeline = timeline[:100]
	}
	ids := make([]string, len(devs))
	for i, x := range devs {
		ids[i] = x.ID
	}
	u, _ := userFrom(c)
	staff := u != nil && u.Role != RoleFamily
	adherence, err := s.residentAdherence(ctx, res, loc, 4) // adherence.go
	if err != nil {
		s.log.Warn("resident page: adherence unavailable", "resident", id, "err", err)
	}
	var cmdDevs []commandDevice // commands.go
	if staff && s.deps.Commands != nil {
		cmdDevs = commandDevices(d, res, devs)
	}
	return s.renderPage(c, "resident", res.Name, map[string]any{
		"Adherence": adherence, "Map": s.residentMap(ctx, lang, res, now), "CommandDevices": cmdDevs, "Commands": s.commandRows(d, res.SiteID, cmdDevs), "CommandSent": c.Query("command"),
		"Resident": res, "Site": d.siteByID[res.SiteID], "Room": room, "Bed": bed,
		"Devices": devViews, "DeviceIDs": strings.Join(ids, " "), "Vitals": vitals, "Occupancy": occ,
		"Alerts": openRows, "ChartGroups": groups, "Staff": staff, "LastVisit": lastVisit,
		"CheckedIn": c.Query("checkedin") == "1", "CanCheckIn": staff && s.visits() != nil,
		"Timeline": timeline, "CSRF": csrfOf(c), "Back": "/residents/" + id, "Sites": d.siteInfos(now),
	})
}

// csrfOf is the session's CSRF token (for forms built in handlers).
func csrfOf(c *fiber.Ctx) string { return csrfToken(c) }

// checkIn is POST /residents/:id/checkin: the caregiver records a visit at
// the bed (audited). 503 when the server keeps no visits.
func (s *Server) checkIn(c *fiber.Ctx) error {
	ctx := c.UserContext()
	id := c.Params("id")
	vs := s.visits()
	if vs == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, "visits are not recorded on this server (no account database)")
	}
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	res, ok := d.resByID[id]
	if !ok {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	v := Visit{Resident: id, Site: res.SiteID, At: s.now().UTC(), Actor: actorOf(c), Source: VisitCheckin}
	if u, ok := userFrom(c); ok {
		v.UserID = u.ID
	}
	if err := vs.RecordVisit(ctx, v); err != nil {
		return err
	}
	s.audit(c, AuditCheckin, "resident:"+id, "")
	return c.Redirect("/residents/"+id+"?checkedin=1", fiber.StatusSeeOther)
}

// board is GET /board: the caregiver's triage list, phone first. Open
// alerts come first (most severe, then oldest), each with resident, room
// and bed, what happened in plain words, its age, repeats and escalation,
// one-tap acknowledge and a resolve panel (outcome, note required for an
// injury, confirmation; the page script sends it after an undo window);
// then acknowledged alerts; then the beds needing attention (vitals
// outside the resident's thresholds, devices offline, active alerts); then
// the other beds. Limited to the user's sites.
func (s *Server) board(c *fiber.Ctx) error {
	s.audit(c, AuditViewBoard, "", "")
	m, err := s.triage(c)
	if err != nil {
		return err
	}
	return s.renderPage(c, "board", trIn(langOf(c), "board.title"), m)
}

// boardFragment is GET /board/fragment: the triage list alone, fetched by
// the page script when an alert changes.
func (s *Server) boardFragment(c *fiber.Ctx) error {
	m, err := s.triage(c)
	if err != nil {
		return err
	}
	return s.render(c, "board_sections", m)
}

// residentVitalsJSON is GET /residents/:id/vitals.json?minutes=N (1-1440,
// default 60) for the resident page's charts (web/src/charts.js): the
// shape of GET /api/v1/residents/:id/vitals, {"resident", "from", "to",
// "series": {field: [{"t", "v"}]}}, averaged over windows of N/240 minutes
// (at least 10 s) so a day is 240 points a field. Scope and the audit
// entry are scopeResident's. 502 when InfluxDB fails (the error is
// logged, not served).
func (s *Server) residentVitalsJSON(c *fiber.Ctx) error {
	id := c.Params("id")
	minutes := 60
	if v := c.Query("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1440 {
			return fiber.NewError(fiber.StatusBadRequest, "minutes: want an integer from 1 to 1440")
		}
		minutes = n
	}
	span := time.Duration(minutes) * time.Minute
	every := max(10*time.Second, (span / 240).Round(time.Second))
	to := s.now().UTC()
	series, err := s.vitalsIn(c.UserContext(), id, to, vitalsWindow{Span: span, Every: every})
	if err != nil {
		s.log.Error("resident charts: vitals history unavailable", "resident", id, "err", err)
		return c.Status(fiber.StatusBadGateway).JSON(fiber.Map{"error": "vitals history unavailable"})
	}
	if series == nil {
		series = map[string][]Point{}
	}
	return c.JSON(fiber.Map{"resident": id, "from": to.Add(-span), "to": to, "series": series})
}
