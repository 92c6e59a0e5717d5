package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
)

// Staff roles: they work at sites and act on alerts.
var staffRoles = []string{RoleAdmin, RoleManager, RoleNurseLead, RoleCaregiver}

// userFrom returns the logged-in user of a browser request (set by
// requireSession), or false for API and anonymous requests.
func userFrom(c *fiber.Ctx) (*User, bool) {
	u, ok := c.Locals("user").(*User)
	return u, ok && u != nil
}

// requireRole lets a logged-in user with one of roles through; any other
// logged-in user gets 403 (anonymous requests never get here: the web
// group requires a session first).
func requireRole(roles ...string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, ok := userFrom(c)
		if !ok {
			return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
		}
		if !slices.Contains(roles, u.Role) {
			return fiber.NewError(fiber.StatusForbidden, fmt.Sprintf("this page is not available to the %s role", u.Role))
		}
		return c.Next()
	}
}

// familyPaths are the only pages of the session group a family account
// reaches; every other path answers 404 to it (familyFence), so a family
// member can neither see nor learn of a staff page.
var familyPaths = map[string]bool{
	"/": true, "/family": true, "/family/preferences": true,
	"/account": true, "/account/lang": true, "/account/password": true, "/logout": true,
	"/account/contacts": true, // contacts.go: a family member's own channels and quiet hours
}

// familyFence answers 404 to a family account on every path outside
// familyPaths (deny by default: a new staff route is fenced without
// being listed).
func (s *Server) familyFence(c *fiber.Ctx) error {
	if u, ok := userFrom(c); ok && u.Role == RoleFamily && !familyPaths[c.Path()] {
		return fiber.NewError(fiber.StatusNotFound, trIn(langOf(c), "err.not_found"))
	}
	return c.Next()
}

// canSeeSite reports whether u sees site: admin all, staff their sites,
// family never directly (only through their residents).
func canSeeSite(u *User, siteID string) bool {
	switch u.Role {
	case RoleAdmin:
		return true
	case RoleFamily:
		return false
	}
	return slices.Contains(u.Sites, siteID)
}

// canSeeResident reports whether u may see residentID: a family member only
// their linked residents, staff residents of their sites, admin every
// resident. An unknown resident is not visible. Handlers answer 404 (not
// 403) when it is false, so a URL does not reveal who lives where.
func (s *Server) canSeeResident(u *User, residentID string) bool {
	if u == nil || device.ValidateID("resident", residentID) != nil {
		return false
	}
	if u.Role == RoleFamily {
		return slices.Contains(u.Residents, residentID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := s.deps.Registry.Residents(ctx, "")
	if err != nil {
		s.log.Error("scope: read residents", "err", err)
		return false
	}
	for _, r := range rs {
		if r.ID == residentID {
			return canSeeSite(u, r.SiteID)
		}
	}
	return false
}

// canSeeAlert reports whether u sees alert a: its resident when it has one,
// else its site (staff only).
//
// An alert of a resident no longer in the registry (retired: moved out,
// died) is seen by the staff of the alert's site, so its history stays
// readable and an alert still open can be acknowledged and resolved; a
// family member never sees it through that rule.
func (s *Server) canSeeAlert(u *User, a alerting.Alert) bool {
	if a.Resident != nil && *a.Resident != "" {
		if s.canSeeResident(u, *a.Resident) {
			return true
		}
		if u == nil || !slices.Contains(staffRoles, u.Role) {
			return false
		}
		if _, known := s.residentSite(*a.Resident); known {
			return false
		}
	}
	return u != nil && canSeeSite(u, a.Site)
}

// residentSite is the site of resident id in the registry; false when the
// registry has no such resident (or cannot be read).
func (s *Server) residentSite(id string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := s.deps.Registry.Residents(ctx, "")
	if err != nil {
		s.log.Error("scope: read residents", "err", err)
		return "", true // unknown: refuse rather than widen
	}
	for _, r := range rs {
		if r.ID == id {
			return r.SiteID, true
		}
	}
	return "", false
}

// visibleSites returns the site ids u sees, or nil meaning all (admin).
// Family members see no site as such.
func visibleSites(u *User) []string {
	if u.Role == RoleAdmin {
		return nil
	}
	if u.Role == RoleFamily {
		return []string{}
	}
	return u.Sites
}

// roleHome is the page "/" sends u to.
func roleHome(u *User) string {
	switch u.Role {
	case RoleFamily:
		return "/family"
	case RoleManager:
		return "/manager"
	case RoleAdmin:
		return "/admin"
	}
	return "/board"
}

// home is GET /: a redirect to the user's start page.
func (s *Server) home(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return c.Redirect("/login", fiber.StatusSeeOther)
	}
	return c.Redirect(roleHome(u), fiber.StatusSeeOther)
}

// scopeResident guards /residents/:id...: a resident u may not see answers
// 404; a GET of the resident's page is written to the audit log.
func (s *Server) scopeResident(c *fiber.Ctx) error {
	u, _ := userFrom(c)
	id := c.Params("id")
	if !s.canSeeResident(u, id) {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	err := c.Next()
	if err == nil && c.Method() == fiber.MethodGet && c.Response().StatusCode() < 400 {
		s.audit(c, AuditViewResident, "resident:"+id, c.Path())
	}
	return err
}

// scopeAlertAction guards POST /alerts/:id/ack and /resolve (browser) and
// their /api/v1 twins: staff only, an alert outside the user's scope
// answers 404, and a successful change is written to the audit log.
func (s *Server) scopeAlertAction(action string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, err := parseID(c)
		if err != nil {
			return err
		}
		a, err := s.deps.Alerts.Get(c.UserContext(), id)
		if err != nil {
			return alertError(err)
		}
		if u, ok := userFrom(c); ok {
			if !slices.Contains(staffRoles, u.Role) || !s.canSeeAlert(u, a) {
				return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
			}
		}
		err = c.Next()
		if err == nil && c.Response().StatusCode() < 400 {
			detail := a.Type
			if action == AuditResolve {
				detail += " outcome=" + c.FormValue("outcome")
				if isAPI(c) {
					detail = a.Type
				}
			}
			s.audit(c, action, fmt.Sprintf("alert:%d", id), detail)
		}
		return err
	}
}

// scopeAPIVitals audits GET /api/v1/residents/:id/vitals.
func (s *Server) scopeAPIVitals(c *fiber.Ctx) error {
	if u, ok := userFrom(c); ok && !s.canSeeResident(u, c.Params("id")) { // an API client's token of other sites
		return fiber.NewError(fiber.StatusNotFound, "resident not found")
	}
	err := c.Next()
	if err == nil && c.Response().StatusCode() < 400 {
		s.audit(c, AuditViewVitals, "resident:"+c.Params("id"), c.OriginalURL())
	}
	return err
}

// frameFilter returns a test of live-feed SSE frames for u: a frame is
// kept when its site (the first "site" key of its JSON: the device's or
// the alert's, see Change) is one u sees. nil means keep everything
// (admin, or no user: the caller already required a session).
func frameFilter(u *User) func(frame []byte) bool {
	if u == nil || u.Role == RoleAdmin {
		return nil
	}
	return func(frame []byte) bool {
		site, ok := frameSite(frame)
		return ok && canSeeSite(u, site)
	}
}

// frameSite returns the value of the first "site" key in an SSE frame.
// JSON escapes every quote inside a string value, so the byte sequence
// "site":" only occurs as a key.
func frameSite(frame []byte) (string, bool) {
	const key = `"site":"`
	i := bytes.Index(frame, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := frame[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}
