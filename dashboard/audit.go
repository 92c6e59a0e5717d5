package dashboard

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// Audit actions.
const (
	AuditViewResident = "view_resident"  // a resident's page (vitals, timeline)
	AuditViewVitals   = "view_vitals"    // a resident's vitals through the API
	AuditAcknowledge  = "acknowledge"    // an alert acknowledged
	AuditResolve      = "resolve"        // an alert resolved
	AuditCheckin      = "checkin"        // a caregiver's visit check-in
	AuditViewBoard    = "view_board"     // the live board (every resident's latest vitals), or its live feed
	AuditViewAlerts   = "view_alerts"    // the alert list or one alert (page or API)
	AuditViewList     = "view_residents" // every resident with latest vitals through the API
	AuditLogin        = "login"
	AuditLoginFailed  = "login_failed"
	// Account events (auth.go, admin_users.go).
	AuditLogout               = "logout"
	AuditPasswordChange       = "password_change"
	AuditPasswordChangeFailed = "password_change_failed"
	AuditUnlock               = "unlock_user"
	// AuditRefused: a request refused with 403 or 404 (detail: method,
	// path and status), so probing shows in the log.
	AuditRefused = "refused"
)

// AuditEntry is one row of the audit log: who (user id, username, role),
// when (UTC), from which IP, what (action on target, e.g. "resident:res-001"
// or "alert:42") and a free detail.
type AuditEntry struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	UserID   int64     `json:"user_id"`
	Username string    `json:"username"`
	Role     string    `json:"role"`
	IP       string    `json:"ip"`
	Site     string    `json:"site"`
	Action   string    `json:"action"`
	Target   string    `json:"target"`
	Detail   string    `json:"detail"`
}

// AuditFilter selects audit rows: Target "" = all, Sites nil = all sites
// (non-nil: rows of those sites only), Since/Until zero = open, Limit 0 =
// 200 (at most 5000). Newest first.
type AuditFilter struct {
	Target string
	// Username and Action select one user's or one action's rows ("" =
	// all).
	Username, Action string
	Sites            []string
	Since, Until     time.Time
	Limit            int
}

// WriteAudit appends e to the audit log; e.At zero = now.
func (a *Accounts) WriteAudit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = a.now()
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	defer tx.Rollback()
	id, err := a.nextID(ctx, tx, "audit")
	if err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	if _, err := tx.ExecContext(ctx, a.db.Rebind(`INSERT INTO dashboard_audit
		(id, at_ms, user_id, username, role, ip, site_id, action, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		id, e.At.UnixMilli(), e.UserID, e.Username, e.Role, e.IP, e.Site, e.Action, e.Target, truncate(e.Detail, 500)); err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	return nil
}

// Audit returns the audit rows f selects, newest first.
func (a *Accounts) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	q := "SELECT id, at_ms, user_id, username, role, ip, site_id, action, target, detail FROM dashboard_audit"
	var where []string
	var args []any
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	if f.Username != "" {
		where, args = append(where, "username = ?"), append(args, f.Username)
	}
	if f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.Sites != nil {
		if len(f.Sites) == 0 {
			return nil, nil
		}
		where = append(where, "site_id IN (?"+strings.Repeat(", ?", len(f.Sites)-1)+")")
		for _, x := range f.Sites {
			args = append(args, x)
		}
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at_ms >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at_ms < ?"), append(args, f.Until.UnixMilli())
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Limit <= 0 {
		f.Limit = 200
	}
	q += " ORDER BY at_ms DESC, id DESC LIMIT " + strconv.Itoa(min(f.Limit, 5000))
	rows, err := a.db.QueryContext(ctx, a.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.UserID, &e.Username, &e.Role, &e.IP, &e.Site, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// audit records action on target by the logged-in user (or "api" for a
// bearer-token client) from the request's IP. A failure to write is logged
// and answered by the caller's normal response: the audit log must not
// block care, but the failure is visible in the log and in
// eldercare_dashboard_audit_errors_total.
func (s *Server) audit(c *fiber.Ctx, action, target, detail string) {
	e := AuditEntry{IP: c.IP(), Site: s.auditSite(c, target), Action: action, Target: target, Detail: detail, At: s.now()}
	if u, ok := userFrom(c); ok {
		e.UserID, e.Username, e.Role = u.ID, u.Username, u.Role
	} else if isAPI(c) {
		e.Username = "api"
	} else {
		e.Username = "-"
	}
	if err := s.deps.Accounts.WriteAudit(c.UserContext(), e); err != nil {
		s.mAuditErrors.Inc()
		s.log.Error("audit log write failed", "action", action, "target", target, "user", e.Username, "err", err)
	}
}

// auditSite returns the site of an audit target "resident:<id>",
// "alert:<id>", "device:<id>" or "site:<id>", "" for others or when it
// cannot be found.
func (s *Server) auditSite(c *fiber.Ctx, target string) string {
	kind, id, _ := strings.Cut(target, ":")
	switch kind {
	case "resident":
		rs, err := s.deps.Registry.Residents(c.UserContext(), "")
		if err != nil {
			return ""
		}
		for _, r := range rs {
			if r.ID == id {
				return r.SiteID
			}
		}
	case "site":
		// a handover note, a site's onboarding
		return id
	case "device":
		// a command, a binding, a device's onboarding: the device's site
		ds, err := s.deps.Registry.Devices(c.UserContext(), "")
		if err != nil {
			return ""
		}
		for _, d := range ds {
			if d.ID == id {
				return d.SiteID
			}
		}
	case "alert":
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return ""
		}
		if a, err := s.deps.Alerts.Get(c.UserContext(), n); err == nil {
			return a.Site
		}
	case "":
		// A view of many residents at once (board, alert list): the
		// site of a user who sees one site, so that site's managers read
		// it; otherwise no site, and only admins read it.
		if u, ok := userFrom(c); ok && len(u.Sites) == 1 {
			return u.Sites[0]
		}
	}
	return ""
}

// parseAuditFilter reads ?target=, ?since= and ?until= (RFC 3339) and
// ?limit=.
func parseAuditFilter(c *fiber.Ctx) (AuditFilter, error) {
	var f AuditFilter
	f.Target = c.Query("target")
	if err := checkText("target", f.Target, 100, false); err != nil {
		return f, fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := c.Query(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("%s %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", p.name, truncate(v, 40)))
			}
			*p.dst = t
		}
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			return f, fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to 5000", truncate(v, 16)))
		}
		f.Limit = n
	}
	return f, nil
}

// apiAudit is GET /api/v1/audit: {"entries":[AuditEntry...]} newest first.
func (s *Server) apiAudit(c *fiber.Ctx) error {
	f, err := parseAuditFilter(c)
	if err != nil {
		return err
	}
	es, err := s.deps.Accounts.Audit(c.UserContext(), f)
	if err != nil {
		return err
	}
	if es == nil {
		es = []AuditEntry{}
	}
	return c.JSON(fiber.Map{"entries": es})
}

// auditRow is an audit entry as the page shows it: the time in the
// site's zone (the row's site, else the viewer's first site, else UTC).
type auditRow struct {
	AuditEntry
	When, WhenISO, SiteName string
}

// auditPage is GET /manager/audit: managers read the rows of their sites,
// admins every row. Filters: user, action, target, site, and a date range
// (from, to: YYYY-MM-DD, both days included, in the chosen site's time
// zone). Times are shown in each row's site zone with its abbreviation.
func (s *Server) auditPage(c *fiber.Ctx) error {
	f, err := parseAuditFilter(c)
	if err != nil {
		return err
	}
	lang := langOf(c)
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	u, _ := userFrom(c)
	if u != nil && u.Role != RoleAdmin {
		f.Sites = append([]string{}, u.Sites...)
	}
	site := c.Query("site")
	defLoc := time.UTC
	if u != nil && len(u.Sites) > 0 {
		defLoc = d.loc(u.Sites[0])
	} else if len(d.sites) > 0 {
		defLoc = d.loc(d.sites[0].ID)
	}
	if site != "" {
		if f.Sites != nil && !slices.Contains(f.Sites, site) {
			f.Sites = []string{}
		} else {
			f.Sites = []string{site}
		}
		defLoc = d.loc(site)
	}
	f.Username = strings.TrimSpace(c.Query("user"))
	f.Action = strings.TrimSpace(c.Query("action"))
	errs := formErrors{}
	day := func(name string) (time.Time, bool) {
		v := c.Query(name)
		if v == "" {
			return time.Time{}, false
		}
		t, err := time.ParseInLocation("2006-01-02", v, defLoc)
		if err != nil {
			errs.add(name, trIn(lang, "audit.err.date"))
			return time.Time{}, false
		}
		return t, true
	}
	if t, ok := day("from"); ok {
		f.Since = t
	}
	if t, ok := day("to"); ok {
		f.Until = t.AddDate(0, 0, 1)
	}
	var es []AuditEntry
	if len(errs) == 0 {
		if es, err = s.deps.Accounts.Audit(ctx, f); err != nil {
			return err
		}
	}
	rows := make([]auditRow, len(es))
	for i, e := range es {
		loc := defLoc
		if e.Site != "" {
			loc = d.loc(e.Site)
		}
		rows[i] = auditRow{AuditEntry: e, When: e.At.In(loc).Format(timeFormat), WhenISO: e.At.Format(time.RFC3339), SiteName: e.Site}
		rows[i].Detail = auditDetail(lang, e.Detail)
		if x, ok := d.siteByID[e.Site]; ok && x.Name != "" {
			rows[i].SiteName = x.Name
		}
	}
	var sites []registry.Site
	for _, x := range d.sites {
		if u == nil || canSeeSite(u, x.ID) {
			sites = append(sites, x)
		}
	}
	code := 0
	if len(errs) > 0 {
		code = fiber.StatusBadRequest
	}
	return s.renderView(c, code, "account_audit", "auth.audit", map[string]any{
		"Entries": rows, "Target": f.Target, "User": f.Username, "Action": f.Action, "Site": site,
		"From": c.Query("from"), "To": c.Query("to"), "Sites": sites, "Actions": auditActions, "Errors": errs,
		"Zone": defLoc.String()})
}

// auditActions are the actions the audit page's filter offers.
var auditActions = []string{AuditLogin, AuditLoginFailed, AuditViewResident, AuditViewBoard, AuditViewAlerts, AuditViewList,
	AuditAcknowledge, AuditResolve, AuditCheckin, "add_user", "update_user", "disable_user", "enable_user", "reset_password",
	"end_sessions", "preferences", "policy", "roster", "bind", "unbind", "export_report", AuditViewVitals,
	AuditLogout, AuditPasswordChange, AuditPasswordChangeFailed, AuditUnlock, AuditRefused, "ack_link_refused",
	"add_api_client", "revoke_api_client", "contacts", AuditComment, AuditExportHistory, "command", "handover_note",
	"report_settings", "onboard_adopt", "onboard_device", "onboard_gateway", "onboard_site", "onboard_room", "onboard_bed",
	"onboard_resident", "onboard_card", "retire", "registry_site", "registry_room", "registry_bed", "registry_resident"}

// auditDetail renders the detail of an audit row in lang: a role or a
// role change ("caregiver -> nurse_lead") in words, the live feed in
// words; a path, id or note as written.
func auditDetail(lang, d string) string {
	role := func(r string) (string, bool) {
		if slices.Contains(Roles, r) {
			return trIn(lang, "role."+r), true
		}
		return r, false
	}
	if r, ok := role(d); ok {
		return r
	}
	if a, b, found := strings.Cut(d, " -> "); found {
		ra, oka := role(a)
		rb, okb := role(b)
		if oka && okb {
			return ra + " → " + rb
		}
	}
	if d == "live feed" {
		return trIn(lang, "audit.detail.live_feed")
	}
	return d
}
