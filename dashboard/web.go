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

	"github.com/eldercare-iot/eldercare/device/registry"
)

const (
	sessionCookie = "eldercare_session"
	// MaxNoteLen is the longest note of a resolved alert, in characters.
	MaxNoteLen = 1000
	// channelDashboard is the history channel of browser changes.
	channelDashboard = "dashboard"
)

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"deref": func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		},
		"outcomes": func() []string { return alerting.Outcomes },
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
	for k, v := range langFuncs(LangEN) { // i18n.go; rebound per language by templatesIn
		funcs[k] = v
	}
	for k, v := range viewFuncs() { // views_common.go
		funcs[k] = v
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
	// Role is the logged-in user's role ("" without an account): the
	// navigation shows the pages of that role (layout.html).
	Role string
	Data any
}

func (s *Server) render(c *fiber.Ctx, name string, data any) error {
	var buf bytes.Buffer
	if err := s.templatesFor(c).ExecuteTemplate(&buf, name, data); err != nil { // in the request's language (i18n.go)
		s.log.Error("render template", "template", name, "err", err)
		return c.Status(fiber.StatusInternalServerError).SendString("template error")
	}
	c.Type("html", "utf-8")
	return c.Send(buf.Bytes())
}

func (s *Server) renderPage(c *fiber.Ctx, name, title string, data any) error {
	sess, _ := c.Locals("session").(session)
	p := page{Title: title, CSRF: sess.csrf, Actor: sess.actor, Data: data}
	if u, ok := userFrom(c); ok {
		p.Role = u.Role
	}
	return s.render(c, name, p)
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
		if registry.IsSpoofingFormat(r) {
			return fmt.Errorf("%s: invisible direction or line control %U not allowed", field, r)
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
	s.deps.Live.PublishAlert(alerting.Change{ID: fmt.Sprintf("local-%d-%s", a.ID, event), Event: event, Alert: a, At: s.now().UTC()})
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

// errNoteRequired: an injury is resolved without a note.
var errNoteRequired = errors.New("note: required when the outcome is injury (what happened and what was done)")

// resolveInput validates an outcome and a note; an injury needs a note.
func resolveInput(outcome, note string) error {
	var errs []error
	if !slices.Contains(alerting.Outcomes, outcome) {
		errs = append(errs, fmt.Errorf("outcome: %q is not one of %s", truncate(outcome, 32), strings.Join(alerting.Outcomes, ", ")))
	}
	if outcome == alerting.OutcomeInjury && strings.TrimSpace(note) == "" {
		errs = append(errs, errNoteRequired)
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
		if errors.Is(err, errNoteRequired) {
			return fiber.NewError(fiber.StatusBadRequest, trIn(langOf(c), "err.note_injury"))
		}
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
	d, err := s.directoryIn(ctx, langOf(c))
	if err != nil {
		return nil, err
	}
	var active []alerting.Alert
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
	// Scope (scope.go, D1): staff see the alerts of their sites.
	u, _ := userFrom(c)
	keep := func(site string) bool { return u != nil && canSeeSite(u, site) }
	var activeRows, resolvedRows []alertRow
	for _, a := range active {
		if keep(a.Site) {
			activeRows = append(activeRows, d.row(a))
		}
	}
	for _, a := range resolved {
		if keep(a.Site) && a.ResolvedAt != nil && a.ResolvedAt.After(since) {
			resolvedRows = append(resolvedRows, d.row(a))
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
	s.audit(c, AuditViewAlerts, "", "")
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
