package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// viewRoutes registers the role views on the session-protected group web:
// the caregiver's board, resident page and visit check-in; the family
// view and preferences; the manager's reports with CSV export; and the
// admin pages. Roles are checked with requireRole; a resident the user
// may not see answers 404.
func (s *Server) viewRoutes(web fiber.Router) {
	staff := requireRole(RoleAdmin, RoleManager, RoleNurseLead, RoleCaregiver)
	web.Get("/board", staff, s.board)
	web.Get("/board/fragment", staff, s.boardFragment)
	// scopeResident (scope.go): 404 outside the user's scope, GETs audited.
	web.Get("/residents/:id", s.scopeResident, s.residentPage)
	web.Get("/residents/:id/vitals.json", s.scopeResident, s.residentVitalsJSON)
	web.Post("/residents/:id/checkin", staff, s.scopeResident, s.checkIn)

	family := requireRole(RoleFamily)
	web.Get("/family", family, s.familyPage)
	web.Get("/family/preferences", family, s.preferencesPage)
	web.Post("/family/preferences", family, s.postPreferences)

	mgr := requireRole(RoleAdmin, RoleManager, RoleNurseLead)
	web.Get("/manager", mgr, s.managerPage)
	web.Get("/manager/reports/:name", mgr, s.reportCSV)

	admin := requireRole(RoleAdmin)
	web.Get("/admin", admin, s.adminPage)
	web.Post("/admin/bind", admin, s.adminBind)
	web.Post("/admin/unbind", admin, s.adminUnbind)
	web.Post("/admin/policy", admin, s.adminPolicy)
	web.Post("/admin/roster", admin, s.adminRoster)
	web.Post("/admin/users", admin, s.adminUser)
	web.Get("/admin/users/:username", admin, s.adminUserPage)
	web.Post("/admin/users/:username", admin, s.postAdminUser)
	web.Post("/admin/registry", admin, s.adminRegistry)
}

// viewFuncs are the template functions of the role views.
func viewFuncs() template.FuncMap {
	return template.FuncMap{
		// pct renders a share 0..1 as "12.5 %", "–" for NaN.
		"pct": func(f float64) string {
			if math.IsNaN(f) {
				return "–"
			}
			return fmt.Sprintf("%.1f %%", 100*f)
		},
		// ferr returns the message of field f in a formErrors, "" if none.
		"ferr":      func(errs formErrors, f string) string { return errs[f] },
		"join":      strings.Join,
		"hasPrefix": strings.HasPrefix,
		"vrange":    vitalRange,
		"has":       func(xs []string, x string) bool { return slices.Contains(xs, x) },
	}
}

// formErrors are field-level validation messages of a form, by field
// name. The page shows each next to its field and answers 400.
type formErrors map[string]string

func (e formErrors) add(field, msg string) {
	if _, ok := e[field]; !ok {
		e[field] = msg
	}
}

// actorOf is the name written to the alert history for the logged-in user.
func actorOf(c *fiber.Ctx) string {
	if u, ok := userFrom(c); ok {
		return u.Display()
	}
	return channelDashboard
}

// renderView renders a page template with status code (200 when 0).
func (s *Server) renderView(c *fiber.Ctx, code int, name, titleKey string, data any) error {
	if code != 0 {
		c.Status(code)
	}
	return s.renderPage(c, name, trIn(langOf(c), titleKey), data)
}

// The production types behind the optional interfaces of the views.
var (
	_ SettingsStore    = (*alerting.Manager)(nil)
	_ PolicyStore      = (*alerting.Manager)(nil)
	_ ResponseTimer    = (*alerting.Manager)(nil)
	_ Binder           = (*registry.Store)(nil)
	_ EventCounter     = (*FluxVitals)(nil)
	_ WindowedVitals   = (*FluxVitals)(nil)
	_ DayReader        = (*FluxVitals)(nil)
	_ EscalationReader = (*alerting.Manager)(nil)
	_ ThresholdReader  = (*alerting.Manager)(nil)
	_ visitStore       = (*Accounts)(nil)
	_ CardLister       = (*registry.Store)(nil)
)
