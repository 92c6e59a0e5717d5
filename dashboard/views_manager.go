package dashboard

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// reportScope returns the site filter of the logged-in user (admin: all)
// and the zone the report's days are counted in (the first visible site's,
// else UTC).
func (s *Server) reportScope(c *fiber.Ctx) (keep func(string) bool, loc *time.Location, err error) {
	u, _ := userFrom(c)
	keep = func(site string) bool { return u == nil || canSeeSite(u, site) }
	d, err := s.directory(c.UserContext())
	if err != nil {
		return nil, nil, err
	}
	loc = time.UTC
	for _, x := range d.sites {
		if keep(x.ID) {
			loc = d.loc(x.ID)
			break
		}
	}
	return keep, loc, nil
}

// managerPage is GET /manager with the period picker (period=week,
// month=YYYY-MM (default this month in the site's zone), or
// period=custom&from=YYYY-MM-DD&to=YYYY-MM-DD): occupancy and nursing-bed
// share, device health and unprotected residents, response times p50/p90
// by site and shift, the false-alarm rate by device, meals served and
// missed, and the visit coverage of vulnerable residents, each with a CSV
// link. A bad period answers 400 with this month and the reason beside
// the field.
func (s *Server) managerPage(c *fiber.Ctx) error {
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, pick, errs := s.managerPeriod(c, loc)
	code := 0
	if len(errs) > 0 {
		code = fiber.StatusBadRequest
	}
	rep, err := s.report(c.UserContext(), p, keep)
	if err != nil {
		return err
	}
	return s.renderView(c, code, "manager", "mgr.title", map[string]any{"Report": rep, "Month": p.Label, "Pick": pick, "Errors": errs, "Names": ReportNames})
}

// reportCSV is GET /manager/reports/<name>.csv with the period picker's
// query (see managerPage): one report as CSV (see Report.WriteCSV), as an
// attachment named <name>-<period>.csv. Errors: 404 for an unknown name,
// 400 for a bad period.
func (s *Server) reportCSV(c *fiber.Ctx) error {
	name, ok := strings.CutSuffix(c.Params("name"), ".csv")
	if !ok || !slices.Contains(ReportNames, name) {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no report %q: want one of %s, with .csv", truncate(c.Params("name"), 32), strings.Join(ReportNames, ", ")))
	}
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, _, errs := s.managerPeriod(c, loc)
	for _, msg := range errs {
		return fiber.NewError(fiber.StatusBadRequest, msg)
	}
	rep, err := s.report(c.UserContext(), p, keep)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf, name); err != nil {
		return err
	}
	s.audit(c, "export_report", "report:"+name, p.Label)
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%s.csv"`, name, p.Label))
	return c.Send(buf.Bytes())
}

// managerRoutes registers the manager's pages (admin, manager, nurse
// lead): /manager/trends (+ POST /manager/trends/settings, manager and
// admin only), /manager/devices, /manager/programme and
// /manager/handover (+ POST /manager/handover/notes). Each table answers
// as CSV with ?csv=<table>.
func (s *Server) managerRoutes(web fiber.Router) {
	mgr := requireRole(RoleAdmin, RoleManager, RoleNurseLead)
	web.Get("/manager/trends", mgr, s.trendsPage)
	web.Post("/manager/trends/settings", mgr, s.saveTrendSettings)
	web.Get("/manager/devices", mgr, s.devicesPage)
	web.Get("/manager/programme", mgr, s.programmePage)
	web.Get("/manager/handover", mgr, s.handoverPage)
	web.Post("/manager/handover/notes", mgr, s.addHandoverNote)
}
