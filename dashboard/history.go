package dashboard

// Alert history (issue 14, item 2): /alerts/history with filters, search
// and paging, its CSV /alerts/history.csv, each alert's timeline
// /alerts/:id with comments, and the JSON API under /api/v1.

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// AlertHistory is the alert store's history side, implemented by
// *alerting.Manager: the filtered, paged list, one alert's timeline, the
// comments and the people who responded. Errors wrap alerting.ErrNotFound
// and alerting.ErrInvalidComment.
type AlertHistory interface {
	QueryHistory(ctx context.Context, q alerting.HistoryQuery) (alerting.HistoryPage, error)
	Timeline(ctx context.Context, id int64) (alerting.Timeline, error)
	AddComment(ctx context.Context, id int64, author, channel, text string) (alerting.Comment, error)
	Responders(ctx context.Context, sites []string) ([]string, error)
}

// Audit actions of the alert history.
const (
	AuditComment       = "comment"        // a comment added to an alert (page or API)
	AuditExportHistory = "export_history" // the alert history's CSV
)

// History page sizes: the page shows HistoryPageSize alerts; the API's
// limit is 1 to alerting.MaxHistoryLimit; the CSV has at most
// MaxHistoryCSVRows rows.
const (
	HistoryPageSize   = 50
	MaxHistoryCSVRows = 50000
)

// historyOutcomeOpen is the outcome filter value of alerts not resolved.
const historyOutcomeOpen = "unresolved"

// filterID is the form of a type, ward or responder filter value.
var filterID = regexp.MustCompile(`^[\p{L}\p{N}_.:@ -]{1,64}$`)

// historyRoutes registers the pages (web group); historyAPIRoutes the API
// (before GET /api/v1/alerts/:id, whose handler it replaces with the
// timeline-bearing one).
func (s *Server) historyRoutes(web fiber.Router) {
	staff := requireRole(staffRoles...)
	web.Get("/alerts/history", staff, s.historyPage)
	web.Get("/alerts/history.csv", staff, s.historyCSV)
	web.Get("/alerts/:id", staff, s.timelinePage) // an :id not all digits: the next route
	web.Post("/alerts/:id/comments", staff, s.scopeAlertComment, s.formComment)
}

func (s *Server) historyAPIRoutes(api fiber.Router) {
	api.Get("/alerts/history", s.apiHistory)
	api.Get("/alerts/:id", s.apiAlertTimeline) // an :id not all digits: the next route
	api.Post("/alerts/:id/comments", s.scopeAlertComment, s.apiComment)
}

// numericID reports whether the route's :id is all digits (at most 19).
func numericID(c *fiber.Ctx) bool {
	id := c.Params("id")
	return id != "" && len(id) <= 19 && strings.Trim(id, "0123456789") == ""
}

// history returns the history store or a 503 naming what is missing.
func (s *Server) history() (AlertHistory, error) {
	if s.deps.History == nil {
		return nil, fiber.NewError(fiber.StatusServiceUnavailable, "alert history is not configured (dashboard.Deps.History)")
	}
	return s.deps.History, nil
}

// historyFilter is a parsed history query: the store's query and the
// form's values as given (for the page's form and links).
type historyFilter struct {
	Q    alerting.HistoryQuery
	Form map[string]string
	// Zone is the time zone of the date range (the chosen site's, else the
	// first visible site's, else UTC).
	Zone *time.Location
}

// historyParams are the query parameters of the history (page, CSV, API).
var historyParams = []string{"from", "to", "site", "ward", "resident", "type", "severity", "outcome", "responder", "q"}

// filterError is a bad filter value: the field and the catalogue key of
// the reason, with its English form for the API.
type filterError struct {
	Field, Key, Value string
}

func (e *filterError) Error() string {
	return fmt.Sprintf("%s: %q: %s", e.Field, truncate(e.Value, 40), tr(e.Key))
}

// parseHistoryFilter reads the history's query parameters for a user who
// sees sites (nil: every site) and checks each against the registry d:
// from and to are dates (YYYY-MM-DD, to inclusive) in the site's zone or
// RFC 3339 times; site, resident and ward must be visible; type,
// severity and outcome known values; responder and q plain text. A site
// or resident the user does not see is a *filterError with Key
// "history.err.unknown" (the API answers 404).
func parseHistoryFilter(get func(string) string, d *directory, sites []string, lang string) (historyFilter, error) {
	f := historyFilter{Form: map[string]string{}, Zone: time.UTC}
	for _, k := range historyParams {
		f.Form[k] = strings.TrimSpace(get(k))
	}
	q := &f.Q
	if sites != nil {
		q.Sites = slices.Clone(sites)
		if q.Sites == nil {
			q.Sites = []string{}
		}
	}
	sees := func(site string) bool { return sites == nil || slices.Contains(sites, site) }
	bad := func(field, key string) error { return &filterError{Field: field, Key: key, Value: f.Form[field]} }
	if v := f.Form["site"]; v != "" {
		if _, ok := d.siteByID[v]; !ok || !sees(v) {
			return f, bad("site", "history.err.unknown")
		}
		q.Site = v
	}
	// The zone of the dates: the chosen site's, else the first visible.
	zoneSite := q.Site
	if zoneSite == "" {
		for _, x := range d.sites {
			if sees(x.ID) {
				zoneSite = x.ID
				break
			}
		}
	}
	f.Zone = d.loc(zoneSite)
	for _, k := range []string{"from", "to"} {
		v := f.Form[k]
		if v == "" {
			continue
		}
		var t time.Time
		if day, err := time.ParseInLocation("2006-01-02", v, f.Zone); err == nil {
			t = day
			if k == "to" {
				t = day.AddDate(0, 0, 1) // inclusive: up to the end of that day
			}
		} else if ts, err := time.Parse(time.RFC3339, v); err == nil {
			t = ts
		} else {
			return f, bad(k, "history.err.date")
		}
		if k == "from" {
			q.From = t
		} else {
			q.To = t
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return f, bad("to", "history.err.range")
	}
	if v := f.Form["resident"]; v != "" {
		r, ok := d.resByID[v]
		if device.ValidateID("resident", v) != nil || !ok || !sees(r.SiteID) {
			return f, bad("resident", "history.err.unknown")
		}
		q.Resident = v
	}
	if v := f.Form["ward"]; v != "" {
		if !filterID.MatchString(v) {
			return f, bad("ward", "history.err.value")
		}
		p := &alerting.HistoryPlace{}
		found := false
		beds := map[string]bool{}
		for _, b := range d.beds {
			if room, ok := d.roomByID[b.RoomID]; ok && room.Ward == v && sees(room.SiteID) && (q.Site == "" || room.SiteID == q.Site) {
				beds[b.ID], found = true, true
			}
		}
		for _, room := range d.roomByID {
			if room.Ward == v && sees(room.SiteID) {
				found = true
			}
		}
		if !found {
			return f, bad("ward", "history.err.unknown")
		}
		for _, r := range d.residents {
			if beds[r.BedID] {
				p.Residents = append(p.Residents, r.ID)
			}
		}
		for _, x := range d.devices {
			if beds[x.BedID] {
				p.Devices = append(p.Devices, x.ID)
			}
		}
		q.Place = p
	}
	if v := f.Form["type"]; v != "" {
		if !slices.Contains(alertTypes, v) && !filterID.MatchString(v) {
			return f, bad("type", "history.err.value")
		}
		q.Types = []string{v}
	}
	if v := f.Form["severity"]; v != "" {
		if !slices.Contains([]string{alerting.SeverityCritical, alerting.SeverityHigh, alerting.SeverityWarning}, v) {
			return f, bad("severity", "history.err.value")
		}
		q.Severities = []string{v}
	}
	switch v := f.Form["outcome"]; {
	case v == "":
	case v == historyOutcomeOpen:
		q.Statuses = []string{alerting.StatusOpen, alerting.StatusAcknowledged}
	case slices.Contains(alerting.Outcomes, v):
		q.Outcomes = []string{v}
	default:
		return f, bad("outcome", "history.err.value")
	}
	if v := f.Form["responder"]; v != "" {
		if checkText("responder", v, 100, false) != nil {
			return f, bad("responder", "history.err.value")
		}
		q.Responder = v
	}
	if v := f.Form["q"]; v != "" {
		if checkText("q", v, 100, false) != nil {
			return f, bad("q", "history.err.text")
		}
		q.Text = v
		q.TextResidents = residentsNamed(d, v, sees)
	}
	return f, nil
}

// residentsNamed returns the residents of visible sites whose id, name or
// display name in any language contains text (case-insensitive).
func residentsNamed(d *directory, text string, sees func(string) bool) []string {
	low := strings.ToLower(text)
	var out []string
	for _, r := range d.residents {
		if !sees(r.SiteID) {
			continue
		}
		names := []string{r.ID, r.Name}
		for _, n := range r.Names {
			names = append(names, n)
		}
		for _, n := range names {
			if strings.Contains(strings.ToLower(n), low) {
				out = append(out, r.ID)
				break
			}
		}
	}
	return out
}

// historySites is the request's site scope: a browser user's visible
// sites, an API client's sites (nil: every site).
func historySites(c *fiber.Ctx) []string {
	if cl := apiClientFrom(c); cl != nil {
		if len(cl.Sites) == 0 {
			return nil
		}
		return cl.Sites
	}
	if u, ok := userFrom(c); ok && !isAPI(c) {
		return visibleSites(u)
	}
	return nil // the bootstrap API token: every site
}

// historyRow is one alert of the history list (and of its CSV).
type historyRow struct {
	alertRow
	What                 string
	Ward, Room, Bed      string
	Acknowledged         string // in the site's zone, "" when never
	OpenedCSV, AckCSV    string // RFC 3339 in the site's zone, with offset
	ResolvedCSV          string
	ResidentDisplay      string
	AckAfter, ResolvedIn string // durations in words
}

// historyRow makes the row of a in lang.
func (d *directory) historyRow(lang string, a alerting.Alert) historyRow {
	r := historyRow{alertRow: d.row(a)}
	loc := d.loc(a.Site)
	r.What = alertWhat(lang, r.Alert)
	r.OpenedCSV = a.OpenedAt.In(loc).Format(time.RFC3339)
	if a.AcknowledgedAt != nil {
		r.Acknowledged = a.AcknowledgedAt.In(loc).Format(timeFormat)
		r.AckCSV = a.AcknowledgedAt.In(loc).Format(time.RFC3339)
		r.AckAfter = durText(lang, a.AcknowledgedAt.Sub(a.OpenedAt))
	}
	if a.ResolvedAt != nil {
		r.ResolvedCSV = a.ResolvedAt.In(loc).Format(time.RFC3339)
		r.ResolvedIn = durText(lang, a.ResolvedAt.Sub(a.OpenedAt))
	}
	r.ResidentDisplay = r.ResidentName
	if a.Resident != nil {
		if res, ok := d.resByID[*a.Resident]; ok {
			r.ResidentDisplay = registry.DisplayName(res.Names, lang, res.Name)
			if b, ok := d.bedByID[res.BedID]; ok {
				room, bed := d.bedLabel(b.ID)
				r.Room, r.Bed = placeName(lang, "room", room), placeName(lang, "bed", bed)
				if rm, ok := d.roomByID[b.RoomID]; ok {
					r.Ward = rm.Ward
					if n := registry.DisplayName(rm.Names, lang, ""); n != "" {
						r.Room = n
					}
				}
			}
		}
	} else if dev, ok := d.devByID[a.Device]; ok && dev.BedID != "" {
		room, bed := d.bedLabel(dev.BedID)
		r.Room, r.Bed = placeName(lang, "room", room), placeName(lang, "bed", bed)
		if b, ok := d.bedByID[dev.BedID]; ok {
			r.Ward = d.roomByID[b.RoomID].Ward
		}
	}
	return r
}

// historyOption is one choice of a filter's select.
type historyOption struct{ Value, Label string }

// historyModel is the data of the history page.
type historyModel struct {
	Rows                 []historyRow
	Form                 map[string]string
	Error                string // why the filter was refused ("" when not)
	ErrorField           string
	Sites, Wards, People []historyOption
	Residents            []historyOption
	Types, Severities    []historyOption
	Outcomes             []historyOption
	Responders           []string
	Zone                 string
	Next, CSV, Query     string // links: next page, the CSV, the filter as a query string
	First                bool   // the first page (no "after")
}

func (s *Server) historyPage(c *fiber.Ctx) error {
	h, err := s.history()
	if err != nil {
		return err
	}
	ctx, lang := c.UserContext(), langOf(c)
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	sites := historySites(c)
	m := historyModel{First: c.Query("after") == ""}
	f, ferr := parseHistoryFilter(func(k string) string { return c.Query(k) }, d, sites, lang)
	m.Form, m.Zone = f.Form, f.Zone.String()
	if ferr == nil && c.Query("after") != "" {
		cur, err := alerting.ParseCursor(c.Query("after"))
		if err != nil {
			ferr = &filterError{Field: "after", Key: "history.err.value", Value: c.Query("after")}
		} else {
			f.Q.Before = &cur
		}
	}
	qs := historyQueryString(f.Form)
	m.Query, m.CSV = qs, "/alerts/history.csv"+qs
	var fe *filterError
	if errors.As(ferr, &fe) {
		m.Error, m.ErrorField = trIn(lang, fe.Key), fe.Field
		c.Status(fiber.StatusBadRequest)
	} else if ferr != nil {
		return ferr
	} else {
		f.Q.Limit = HistoryPageSize
		p, err := h.QueryHistory(ctx, f.Q)
		if err != nil {
			return err
		}
		for _, a := range p.Alerts {
			m.Rows = append(m.Rows, d.historyRow(lang, a))
		}
		if p.Next != nil {
			sep := "?"
			if qs != "" {
				sep = "&"
			}
			m.Next = "/alerts/history" + qs + sep + "after=" + url.QueryEscape(p.Next.String())
		}
	}
	s.fillHistoryOptions(ctx, &m, d, sites, lang)
	s.audit(c, AuditViewAlerts, "alerts:history", truncate(strings.TrimPrefix(qs, "?"), 200))
	return s.renderPage(c, "history", trIn(lang, "history.title"), m)
}

// historyQueryString is the filter as "?k=v&..." ("" when empty), in
// historyParams order.
func historyQueryString(form map[string]string) string {
	v := url.Values{}
	for _, k := range historyParams {
		if form[k] != "" {
			v.Set(k, form[k])
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// fillHistoryOptions fills the filter's choices from what the user sees.
func (s *Server) fillHistoryOptions(ctx context.Context, m *historyModel, d *directory, sites []string, lang string) {
	sees := func(site string) bool { return sites == nil || slices.Contains(sites, site) }
	for _, x := range d.sites {
		if sees(x.ID) {
			name := x.Name
			if name == "" {
				name = x.ID
			}
			m.Sites = append(m.Sites, historyOption{x.ID, name})
		}
	}
	wards := map[string]bool{}
	for _, r := range d.roomByID {
		if r.Ward != "" && sees(r.SiteID) {
			wards[r.Ward] = true
		}
	}
	for w := range wards {
		m.Wards = append(m.Wards, historyOption{w, w})
	}
	sort.Slice(m.Wards, func(i, j int) bool { return m.Wards[i].Value < m.Wards[j].Value })
	for _, r := range d.residents {
		if sees(r.SiteID) {
			m.Residents = append(m.Residents, historyOption{r.ID, registry.DisplayName(r.Names, lang, r.Name)})
		}
	}
	sort.Slice(m.Residents, func(i, j int) bool { return m.Residents[i].Label < m.Residents[j].Label })
	for _, t := range alertTypes {
		m.Types = append(m.Types, historyOption{t, trIn(lang, "type."+t)})
	}
	for _, x := range []string{alerting.SeverityCritical, alerting.SeverityHigh, alerting.SeverityWarning} {
		m.Severities = append(m.Severities, historyOption{x, trIn(lang, "sev."+x)})
	}
	for _, x := range alerting.Outcomes {
		m.Outcomes = append(m.Outcomes, historyOption{x, trIn(lang, "outcome."+x)})
	}
	m.Outcomes = append(m.Outcomes, historyOption{historyOutcomeOpen, trIn(lang, "history.outcome.unresolved")})
	if rs, err := s.deps.History.Responders(ctx, sites); err == nil {
		m.Responders = rs
	} else {
		s.log.Error("alert history: responders", "err", err)
	}
}

// historyCSVHeader is the CSV's header row; times are RFC 3339 in the
// site's zone with its offset, durations whole seconds.
var historyCSVHeader = []string{"id", "site", "ward", "resident_id", "resident", "room", "bed", "device", "type", "severity", "status",
	"opened_at", "acknowledged_at", "acknowledged_by", "ack_seconds", "resolved_at", "resolved_by", "outcome", "note", "what", "repeats"}

// csvSafe neutralises spreadsheet formulas (OWASP CSV injection): a cell
// starting with = + - @, tab or carriage return gets a leading
// apostrophe.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *Server) historyCSV(c *fiber.Ctx) error {
	h, err := s.history()
	if err != nil {
		return err
	}
	ctx, lang := c.UserContext(), langOf(c)
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	f, err := parseHistoryFilter(func(k string) string { return c.Query(k) }, d, historySites(c), lang)
	if err != nil {
		var fe *filterError
		if errors.As(err, &fe) {
			return fiber.NewError(fiber.StatusBadRequest, fe.Field+": "+trIn(lang, fe.Key))
		}
		return err
	}
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="alert-history.csv"`)
	s.audit(c, AuditExportHistory, "alerts:history", truncate(strings.TrimPrefix(historyQueryString(f.Form), "?"), 200))
	var buf strings.Builder
	if err := writeHistoryCSV(ctx, &buf, h, f.Q, d, lang); err != nil {
		return err
	}
	return c.SendString(buf.String())
}

// writeHistoryCSV writes every alert that matches q (at most
// MaxHistoryCSVRows), newest first, as CSV with a header row.
func writeHistoryCSV(ctx context.Context, w io.Writer, h AlertHistory, q alerting.HistoryQuery, d *directory, lang string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(historyCSVHeader); err != nil {
		return err
	}
	for n := 0; n < MaxHistoryCSVRows; {
		q.Limit = min(alerting.MaxHistoryLimit, MaxHistoryCSVRows-n)
		p, err := h.QueryHistory(ctx, q)
		if err != nil {
			return err
		}
		for _, a := range p.Alerts {
			r := d.historyRow(lang, a)
			ack := ""
			if a.AcknowledgedAt != nil {
				ack = strconv.FormatInt(int64(a.AcknowledgedAt.Sub(a.OpenedAt)/time.Second), 10)
			}
			rec := []string{strconv.FormatInt(a.ID, 10), a.Site, r.Ward, r.ResidentID, r.ResidentDisplay, r.Room, r.Bed, a.Device, a.Type,
				a.Severity, a.Status, r.OpenedCSV, r.AckCSV, a.AcknowledgedBy, ack, r.ResolvedCSV, a.ResolvedBy, a.Outcome, a.Note, r.What,
				strconv.Itoa(a.Repeats)}
			for i := range rec {
				rec[i] = csvSafe(rec[i])
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
			n++
		}
		if p.Next == nil {
			break
		}
		q.Before = p.Next
	}
	cw.Flush()
	return cw.Error()
}

// apiHistoryPage is the body of GET /api/v1/alerts/history: the alerts of
// one page (alerting.Alert, newest opened first) and next, the "after" value
// of the following page ("" on the last).
type apiHistoryPage struct {
	Alerts []alerting.Alert `json:"alerts"`
	Next   string           `json:"next"`
}

// apiHistory serves GET /api/v1/alerts/history?from=&to=&site=&ward=&resident=&type=&severity=&outcome=&responder=&q=&after=&limit=
// (limit 1 to alerting.MaxHistoryLimit, default HistoryPageSize), scoped
// to the API client's sites; a site or resident it does not see is 404.
func (s *Server) apiHistory(c *fiber.Ctx) error {
	h, err := s.history()
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	f, err := parseHistoryFilter(func(k string) string { return c.Query(k) }, d, historySites(c), LangEN)
	if err != nil {
		var fe *filterError
		if errors.As(err, &fe) && fe.Key == "history.err.unknown" {
			return fiber.NewError(fiber.StatusNotFound, fe.Error())
		}
		if fe != nil {
			return fiber.NewError(fiber.StatusBadRequest, fe.Error())
		}
		return err
	}
	f.Q.Limit = HistoryPageSize
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > alerting.MaxHistoryLimit {
			return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit: %q is not an integer from 1 to %d (default %d)", truncate(v, 32), alerting.MaxHistoryLimit, HistoryPageSize))
		}
		f.Q.Limit = n
	}
	if v := c.Query("after"); v != "" {
		cur, err := alerting.ParseCursor(v)
		if err != nil {
			return fiber.NewError(fiber.StatusBadRequest, "after: "+err.Error())
		}
		f.Q.Before = &cur
	}
	s.audit(c, AuditViewAlerts, "alerts:history", truncate(c.Context().QueryArgs().String(), 200))
	p, err := h.QueryHistory(ctx, f.Q)
	if err != nil {
		return err
	}
	out := apiHistoryPage{Alerts: p.Alerts}
	if out.Alerts == nil {
		out.Alerts = []alerting.Alert{} // [] on an empty page, not null
	}
	if p.Next != nil {
		out.Next = p.Next.String()
	}
	return c.JSON(out)
}
