package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
)

const (
	sessionCookie = "eldercare_session"
	// MaxNoteLen is the longest note of a resolved alert, in characters.
	MaxNoteLen = 1000
	// maxActorLen is the longest caregiver name given at login.
	maxActorLen = 64
	// channelDashboard is the history channel of browser changes.
	channelDashboard = "dashboard"
)

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"t":  tr,
		"tt": func(prefix, key string) string { return tr(prefix + key) },
		"deref": func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		},
		"outcomes": func() []string { return alerting.Outcomes },
		"i18n":     func() map[string]string { return uiText },
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
	t, err := template.New("").Funcs(funcs).ParseFS(webFS, "web/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	return t, nil
}

// page is what every page template gets.
type page struct {
	Title string
	CSRF  string
	Actor string
	Data  any
}

func (s *Server) render(c *fiber.Ctx, name string, data any) error {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("render template", "template", name, "err", err)
		return c.Status(fiber.StatusInternalServerError).SendString("template error")
	}
	c.Type("html", "utf-8")
	return c.Send(buf.Bytes())
}

func (s *Server) renderPage(c *fiber.Ctx, name, title string, data any) error {
	sess, _ := c.Locals("session").(session)
	return s.render(c, name, page{Title: title, CSRF: sess.csrf, Actor: sess.actor, Data: data})
}

// requireSession lets a request with a live session through; a browser
// without one is sent to /login.
func (s *Server) requireSession(c *fiber.Ctx) error {
	sess, ok := s.sessions.get(c.Cookies(sessionCookie))
	if !ok {
		if c.Method() == fiber.MethodGet {
			return c.Redirect("/login", fiber.StatusSeeOther)
		}
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	c.Locals("session", sess)
	c.Locals("sessionID", c.Cookies(sessionCookie))
	return c.Next()
}

// checkCSRF requires the session's CSRF token in the "csrf" form field of
// every POST.
func (s *Server) checkCSRF(c *fiber.Ctx) error {
	if c.Method() != fiber.MethodPost {
		return c.Next()
	}
	sess, _ := c.Locals("session").(session)
	if !equalSecret(c.FormValue("csrf"), sess.csrf) {
		return fiber.NewError(fiber.StatusForbidden, "missing or wrong CSRF token; reload the page and try again")
	}
	return c.Next()
}

func (s *Server) getLogin(c *fiber.Ctx) error {
	if tok := c.Query("token"); tok != "" {
		if !equalSecret(tok, s.cfg.APIToken) {
			c.Status(fiber.StatusUnauthorized)
			return s.render(c, "login", page{Title: tr("login.title"), Data: map[string]any{"Wrong": true}})
		}
		return s.startSession(c, "")
	}
	return s.render(c, "login", page{Title: tr("login.title"), Data: map[string]any{}})
}

func (s *Server) postLogin(c *fiber.Ctx) error {
	actor := strings.TrimSpace(c.FormValue("name"))
	if err := checkText("name", actor, maxActorLen, false); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	if !equalSecret(c.FormValue("token"), s.cfg.APIToken) {
		s.log.Warn("dashboard login refused", "ip", c.IP())
		c.Status(fiber.StatusUnauthorized)
		return s.render(c, "login", page{Title: tr("login.title"), Data: map[string]any{"Wrong": true}})
	}
	return s.startSession(c, actor)
}

func (s *Server) startSession(c *fiber.Ctx, actor string) error {
	if actor == "" {
		actor = channelDashboard
	}
	id, sess := s.sessions.create(actor)
	c.Cookie(&fiber.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: sess.expires,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: s.cfg.SecureCookies || c.Protocol() == "https",
	})
	s.log.Info("audit: dashboard login", "actor", actor, "ip", c.IP())
	return c.Redirect("/", fiber.StatusSeeOther)
}

func (s *Server) postLogout(c *fiber.Ctx) error {
	id, _ := c.Locals("sessionID").(string)
	s.sessions.delete(id)
	c.ClearCookie(sessionCookie)
	return c.Redirect("/login", fiber.StatusSeeOther)
}

// checkText rejects text that is too long, not UTF-8 or has control
// characters (newlines and tabs only when multiline).
func checkText(field, v string, max int, multiline bool) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return fmt.Errorf("%s: %d characters, at most %d", field, n, max)
	}
	for _, r := range v {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) {
			return fmt.Errorf("%s: control character %U not allowed", field, r)
		}
	}
	return nil
}

func parseID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("alert id %q: want a positive integer", truncate(c.Params("id"), 32)))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// alertError maps the store's sentinels to HTTP errors.
func alertError(err error) error {
	switch {
	case errors.Is(err, alerting.ErrNotFound):
		return fiber.NewError(fiber.StatusNotFound, err.Error())
	case errors.Is(err, alerting.ErrConflict):
		return fiber.NewError(fiber.StatusConflict, err.Error())
	}
	return err
}

// backTo returns a safe local redirect target from the "back" form field.
func backTo(c *fiber.Ctx) string {
	b := c.FormValue("back")
	if b == "" || !strings.HasPrefix(b, "/") || strings.HasPrefix(b, "//") || strings.ContainsAny(b, "\\\r\n") || len(b) > 200 {
		return "/alerts"
	}
	return b
}

// announce pushes a change made here to the live feed at once (the
// alerting service's MQTT notification follows and is idempotent).
func (s *Server) announce(event string, a alerting.Alert) {
	s.deps.Live.PublishAlert(AlertChange{ID: fmt.Sprintf("local-%d-%s", a.ID, event), Event: event, Alert: viewAlert(a), At: s.now().UTC()})
}

func (s *Server) formAck(c *fiber.Ctx) error {
	id, err := parseID(c)
	if err != nil {
		return err
	}
	sess, _ := c.Locals("session").(session)
	a, err := s.deps.Alerts.Acknowledge(c.UserContext(), id, sess.actor, channelDashboard)
	if err != nil {
		return alertError(err)
	}
	s.log.Info("audit: alert acknowledged", "alert", id, "actor", sess.actor, "channel", channelDashboard)
	s.announce(alerting.EventAcknowledged, a)
	return c.Redirect(backTo(c), fiber.StatusSeeOther)
}

// resolveInput validates an outcome and a note.
func resolveInput(outcome, note string) error {
	var errs []error
	if !slices.Contains(alerting.Outcomes, outcome) {
		errs = append(errs, fmt.Errorf("outcome: %q is not one of %s", truncate(outcome, 32), strings.Join(alerting.Outcomes, ", ")))
	}
	if err := checkText("note", note, MaxNoteLen, true); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) formResolve(c *fiber.Ctx) error {
	id, err := parseID(c)
	if err != nil {
		return err
	}
	outcome, note := c.FormValue("outcome"), strings.TrimSpace(c.FormValue("note"))
	if err := resolveInput(outcome, note); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	sess, _ := c.Locals("session").(session)
	a, err := s.deps.Alerts.Resolve(c.UserContext(), id, sess.actor, channelDashboard, outcome, note)
	if err != nil {
		return alertError(err)
	}
	s.log.Info("audit: alert resolved", "alert", id, "actor", sess.actor, "channel", channelDashboard, "outcome", outcome)
	s.announce(alerting.EventResolved, a)
	return c.Redirect(backTo(c), fiber.StatusSeeOther)
}

func (s *Server) board(c *fiber.Ctx) error {
	cards, unassigned, sites, err := s.boardModel(c.UserContext())
	if err != nil {
		return err
	}
	return s.renderPage(c, "board", tr("board.title"), map[string]any{"Cards": cards, "Unassigned": unassigned, "Sites": sites})
}

// alertsStatus parses the status query parameter of the alert list:
// comma-separated open, acknowledged, resolved; "" = all.
func alertsStatus(c *fiber.Ctx) (map[string]bool, error) {
	v := c.Query("status")
	if v == "" {
		return map[string]bool{alerting.StatusOpen: true, alerting.StatusAcknowledged: true, alerting.StatusResolved: true}, nil
	}
	out := map[string]bool{}
	for _, x := range strings.Split(v, ",") {
		x = strings.TrimSpace(x)
		if x != alerting.StatusOpen && x != alerting.StatusAcknowledged && x != alerting.StatusResolved {
			return nil, fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("status: %q is not open, acknowledged or resolved (comma-separated, e.g. ?status=open,acknowledged)", truncate(x, 32)))
		}
		out[x] = true
	}
	return out, nil
}

// alertsModel is the data of the alert list.
func (s *Server) alertsModel(c *fiber.Ctx) (map[string]any, error) {
	ctx := c.UserContext()
	want, err := alertsStatus(c)
	if err != nil {
		return nil, err
	}
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	var active []AlertView
	if want[alerting.StatusOpen] || want[alerting.StatusAcknowledged] {
		all, err := s.activeAlerts(ctx, alerting.Filter{})
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			if want[a.Status] {
				active = append(active, a)
			}
		}
	}
	var resolved []alerting.Alert
	if want[alerting.StatusResolved] {
		resolved, err = s.deps.Alerts.List(ctx, alerting.Filter{Status: []string{alerting.StatusResolved}, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("list resolved alerts: %w", err)
		}
	}
	since := s.now().Add(-24 * time.Hour)
	var activeRows, resolvedRows []alertRow
	for _, a := range active {
		activeRows = append(activeRows, d.row(a))
	}
	for _, a := range resolved {
		if a.ResolvedAt != nil && a.ResolvedAt.After(since) {
			resolvedRows = append(resolvedRows, d.row(viewAlert(a)))
		}
	}
	sort.SliceStable(resolvedRows, func(i, j int) bool { return resolvedRows[i].ResolvedAt.After(*resolvedRows[j].ResolvedAt) })
	sess, _ := c.Locals("session").(session)
	back := "/alerts"
	if q := c.Query("status"); q != "" {
		back += "?status=" + url.QueryEscape(q)
	}
	return map[string]any{"Active": activeRows, "Resolved": resolvedRows, "CSRF": sess.csrf, "Back": back,
		"ShowActive": want[alerting.StatusOpen] || want[alerting.StatusAcknowledged], "ShowResolved": want[alerting.StatusResolved]}, nil
}

func (s *Server) alertsPage(c *fiber.Ctx) error {
	m, err := s.alertsModel(c)
	if err != nil {
		return err
	}
	return s.renderPage(c, "alerts", tr("alerts.title"), m)
}

// alertsFragment is the alert tables alone, fetched by the page's script
// when a change arrives.
func (s *Server) alertsFragment(c *fiber.Ctx) error {
	m, err := s.alertsModel(c)
	if err != nil {
		return err
	}
	return s.render(c, "alerts_body", m)
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

func (s *Server) residentPage(c *fiber.Ctx) error {
	ctx := c.UserContext()
	id := c.Params("id")
	if err := device.ValidateID("resident", id); err != nil {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	res, ok := d.resByID[id]
	if !ok {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no resident %q", id))
	}
	sess, _ := c.Locals("session").(session)
	s.log.Info("audit: resident viewed", "resident", id, "actor", sess.actor)
	now := s.now()
	loc := d.loc(res.SiteID)
	room, bed := d.bedLabel(res.BedID)
	devs := d.devicesOf(res.BedID, res.ID, now)
	devViews, vitals, occ, _ := s.liveSummary(devs)

	active, err := s.activeAlerts(ctx, alerting.Filter{Resident: id})
	if err != nil {
		return err
	}
	var openRows []alertRow
	for _, a := range active {
		openRows = append(openRows, d.row(a))
	}

	var charts []template.HTML
	vitalsErr := false
	series, err := s.deps.Vitals.ResidentVitals(ctx, id, now.Add(-15*time.Minute), now)
	if err != nil {
		vitalsErr = true
		s.log.Warn("resident page: vitals history unavailable", "resident", id, "err", err)
	}
	hasVitals := false
	for _, f := range VitalFields {
		if len(series[f]) > 0 {
			hasVitals = true
		}
		charts = append(charts, lineChart(tr("vital."+f)+" ("+tr("unit."+f)+")", series[f], now.Add(-15*time.Minute), now, loc))
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
				Action: h.Action, Actor: h.Actor, Channel: h.Channel, Detail: h.Detail, t: h.At})
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
	return s.renderPage(c, "resident", res.Name, map[string]any{
		"Resident": res, "Site": d.siteByID[res.SiteID], "Room": room, "Bed": bed,
		"Devices": devViews, "DeviceIDs": strings.Join(ids, " "), "Vitals": vitals, "Occupancy": occ,
		"Alerts": openRows, "Charts": charts, "HasVitals": hasVitals, "VitalsErr": vitalsErr,
		"Timeline": timeline, "CSRF": sess.csrf, "Back": "/residents/" + id, "Sites": d.siteInfos(now),
	})
}
