package dashboard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Binder is the write side of the device registry the admin page uses;
// *registry.Store implements it.
type Binder interface {
	Bind(ctx context.Context, deviceID, residentID string, from time.Time) error
	Unbind(ctx context.Context, deviceID string, at time.Time) error
}

// PolicyStore is the part of *alerting.Manager the policy and roster forms
// use.
type PolicyStore interface {
	Settings(ctx context.Context) (alerting.Settings, error)
	PutPolicy(ctx context.Context, actor string, p alerting.Policy) error
	PutRoster(ctx context.Context, actor string, r alerting.Roster) error
}

// adminForms carries what the admin page shows after a POST: the form
// that failed, its values and field-level messages, or a saved notice.
type adminForms struct {
	Form   string // bind, unbind, policy, roster, user
	Values map[string]string
	Errors formErrors
	Saved  string
	// NewPassword is the generated password of a user just added (shown
	// once).
	NewPassword string
}

// adminPage is GET /admin: sites, rooms, beds, residents, devices with
// their current binding and bind/unbind forms, users (list and add),
// escalation policies and rosters with edit forms.
func (s *Server) adminPage(c *fiber.Ctx) error {
	return s.renderAdmin(c, 0, adminForms{Saved: c.Query("saved")})
}

func (s *Server) renderAdmin(c *fiber.Ctx, code int, f adminForms) error {
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	if f.Errors == nil {
		f.Errors = formErrors{}
	}
	if f.Values == nil {
		f.Values = map[string]string{}
	}
	now := s.now()
	bound := map[string]string{}
	for _, b := range d.bindings {
		if b.Contains(now) {
			bound[b.DeviceID] = b.ResidentID
		}
	}
	data := map[string]any{"Sites": d.sites, "Rooms": d.roomByID, "Beds": d.beds, "Residents": d.residents,
		"Devices": d.devices, "Bound": bound, "F": f, "CSRF": csrfOf(c),
		"RoomList": roomList(d), "CanEdit": s.importer() != nil,
		"CanBind": s.binder() != nil, "CanPolicy": s.policies() != nil, "CanUsers": s.deps.Accounts != nil, "Roles": rolesLeastFirst()}
	if ps := s.policies(); ps != nil {
		set, err := ps.Settings(ctx)
		if err != nil {
			return fmt.Errorf("read alert settings: %w", err)
		}
		data["Policies"], data["Rosters"] = set.Policies, set.Rosters
		data["Targets"], data["Staff"] = pickerData(set)
		data["Wards"] = wardChoices(d) // policyform.go
		data["Rows"], data["Weekdays"] = rowNums(), Weekdays
	}
	if s.deps.Accounts != nil {
		users, err := s.deps.Accounts.List(ctx)
		if err != nil {
			return err
		}
		data["Users"] = users
	}
	return s.renderView(c, code, "admin", "adm.title", data)
}

func (s *Server) binder() Binder {
	return s.deps.Binder
}

func (s *Server) policies() PolicyStore {
	return s.deps.Policies
}

// adminBind is POST /admin/bind (device, resident): binds from now.
func (s *Server) adminBind(c *fiber.Ctx) error {
	lang := langOf(c)
	dev, res := strings.TrimSpace(c.FormValue("device")), strings.TrimSpace(c.FormValue("resident"))
	f := adminForms{Form: "bind", Values: map[string]string{"device": dev, "resident": res}, Errors: formErrors{}}
	b := s.binder()
	if b == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	if _, ok := d.devByID[dev]; !ok {
		f.Errors.add("device", trIn(lang, "form.err.choose_a_registered_device"))
	}
	r, ok := d.resByID[res]
	if !ok {
		f.Errors.add("resident", trIn(lang, "form.err.choose_a_registered_resident"))
	} else if x, ok := d.devByID[dev]; ok && x.SiteID != r.SiteID {
		f.Errors.add("resident", trIn(lang, "form.err.the_resident_lives_on_another"))
	}
	if len(f.Errors) == 0 {
		if err := b.Bind(c.UserContext(), dev, res, s.now()); err != nil {
			if !errors.Is(err, registry.ErrOverlap) && !errors.Is(err, registry.ErrNotFound) {
				return err
			}
			f.Errors.add("device", err.Error())
		}
	}
	if len(f.Errors) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, f)
	}
	s.audit(c, "bind", "device:"+dev, "resident:"+res)
	return c.Redirect("/admin?saved=bind", fiber.StatusSeeOther)
}

// adminUnbind is POST /admin/unbind (device): closes its binding now.
func (s *Server) adminUnbind(c *fiber.Ctx) error {
	lang := langOf(c)
	dev := strings.TrimSpace(c.FormValue("device"))
	f := adminForms{Form: "unbind", Values: map[string]string{"device": dev}, Errors: formErrors{}}
	b := s.binder()
	if b == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	if err := device.ValidateID("device", dev); err != nil {
		f.Errors.add("device", trIn(lang, "form.err.choose_a_registered_device"))
	} else if err := b.Unbind(c.UserContext(), dev, s.now()); err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		f.Errors.add("device", trIn(lang, "form.err.this_device_is_not_bound"))
	}
	if len(f.Errors) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, f)
	}
	s.audit(c, "unbind", "device:"+dev, "")
	return c.Redirect("/admin?saved=unbind", fiber.StatusSeeOther)
}

// parsePolicy reads the policy form: id, steps (one a line: "<delay>
// <target>[,<target>...]", e.g. "3m role:nurse_lead"), repeat ("" = 0).
func parsePolicy(lang, id, steps, repeat string) (alerting.Policy, formErrors) {
	errs := formErrors{}
	p := alerting.Policy{ID: id}
	if err := device.ValidateID("policy", id); err != nil {
		errs.add("id", trIn(lang, "form.err.1_64_letters_digits_or"))
	}
	for i, line := range strings.Split(strings.ReplaceAll(steps, "\r", ""), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.Fields(line)
		after, err := time.ParseDuration(parts[0])
		if err != nil || len(parts) != 2 {
			errs.add("steps", trf(lang, "form.err.steps_line", "n", fmt.Sprint(i+1)))
			continue
		}
		p.Steps = append(p.Steps, alerting.Step{After: alerting.Duration(after), Targets: strings.Split(parts[1], ",")})
	}
	if repeat = strings.TrimSpace(repeat); repeat != "" {
		d, err := time.ParseDuration(repeat)
		if err != nil {
			errs.add("repeat", trIn(lang, "form.err.a_duration_such_as_5m"))
		}
		p.Repeat = alerting.Duration(d)
	}
	if len(errs) == 0 {
		if err := p.Validate(); err != nil {
			errs.add("steps", err.Error())
		}
	}
	return p, errs
}

// adminPolicy is POST /admin/policy: creates or replaces an escalation
// policy through alerting.Manager.PutPolicy.
func (s *Server) adminPolicy(c *fiber.Ctx) error {
	lang := langOf(c)
	ps := s.policies()
	if ps == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	if structured(c) {
		return s.adminPolicyRows(c, ps) // policyform.go
	}
	id, steps, repeat := strings.TrimSpace(c.FormValue("id")), c.FormValue("steps"), c.FormValue("repeat")
	p, errs := parsePolicy(lang, id, steps, repeat)
	if len(errs) == 0 {
		if err := ps.PutPolicy(c.UserContext(), actorOf(c), p); err != nil {
			errs.add("steps", err.Error())
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "policy", Errors: errs,
			Values: map[string]string{"id": id, "steps": steps, "repeat": repeat}})
	}
	s.audit(c, "policy", "policy:"+id, "")
	return c.Redirect("/admin?saved=policy", fiber.StatusSeeOther)
}

// parseRoster reads the roster form: site, zone, shifts (one a line:
// "<name> <HH:MM> <HH:MM> <id>[,<id>...]").
func parseRoster(lang, site, zone, shifts string) (alerting.Roster, formErrors) {
	errs := formErrors{}
	r := alerting.Roster{Site: site, Zone: zone}
	if err := device.ValidateID("site", site); err != nil {
		errs.add("site", trIn(lang, "form.err.a_site_id"))
	}
	if _, err := time.LoadLocation(zone); err != nil || zone == "" {
		errs.add("zone", trIn(lang, "form.err.an_iana_time_zone_such"))
	}
	for i, line := range strings.Split(strings.ReplaceAll(shifts, "\r", ""), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func() {
			errs.add("shifts", trf(lang, "form.err.shifts_line", "n", fmt.Sprint(i+1)))
		}
		if len(f) != 4 {
			bad()
			continue
		}
		st, err1 := alerting.ParseClock(f[1])
		en, err2 := alerting.ParseClock(f[2])
		if err1 != nil || err2 != nil {
			bad()
			continue
		}
		r.Shifts = append(r.Shifts, alerting.Shift{Name: f[0], Start: st, End: en, OnDuty: strings.Split(f[3], ",")})
	}
	if len(errs) == 0 {
		if err := r.Validate(); err != nil {
			errs.add("shifts", err.Error())
		}
	}
	return r, errs
}

// adminRoster is POST /admin/roster: creates or replaces a site's roster
// through alerting.Manager.PutRoster.
func (s *Server) adminRoster(c *fiber.Ctx) error {
	lang := langOf(c)
	ps := s.policies()
	if ps == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	if structured(c) {
		return s.adminRosterRows(c, ps) // policyform.go
	}
	site, zone, shifts := strings.TrimSpace(c.FormValue("site")), strings.TrimSpace(c.FormValue("zone")), c.FormValue("shifts")
	r, errs := parseRoster(lang, site, zone, shifts)
	if len(errs) == 0 {
		if err := ps.PutRoster(c.UserContext(), actorOf(c), r); err != nil {
			errs.add("shifts", err.Error())
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "roster", Errors: errs,
			Values: map[string]string{"site": site, "zone": zone, "shifts": shifts}})
	}
	s.audit(c, "roster", "roster:"+site, "")
	return c.Redirect("/admin?saved=roster", fiber.StatusSeeOther)
}

// adminUser is POST /admin/users: adds an account with a generated
// password, shown once on the page.
func (s *Server) adminUser(c *fiber.Ctx) error {
	lang := langOf(c)
	if s.deps.Accounts == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	vals := map[string]string{}
	for _, k := range []string{"username", "name", "role", "lang", "sites", "residents"} {
		vals[k] = strings.TrimSpace(c.FormValue(k))
	}
	sites := formList(c, "sites")
	if len(sites) == 0 {
		sites = strings.Fields(strings.ReplaceAll(vals["sites"], ",", " "))
	}
	u := User{Username: vals["username"], Name: vals["name"], Role: vals["role"], Lang: vals["lang"],
		Sites: sites, Residents: strings.Fields(strings.ReplaceAll(vals["residents"], ",", " "))}
	pw := GeneratePassword()
	errs := formErrors{}
	added, err := s.deps.Accounts.Add(c.UserContext(), u, pw)
	if err != nil {
		if errors.Is(err, ErrUserExists) {
			errs.add("username", trIn(lang, "form.err.this_username_is_taken"))
		} else if verr := u.Validate(); verr != nil {
			for _, line := range strings.Split(verr.Error(), "\n") {
				field := "username"
				for _, k := range []string{"name", "role", "language", "sites", "site", "residents", "resident"} {
					if strings.HasPrefix(line, k) {
						field = map[string]string{"language": "lang", "site": "sites", "resident": "residents"}[k]
						if field == "" {
							field = k
						}
						break
					}
				}
				errs.add(field, line)
			}
		} else {
			return err
		}
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "user", Values: vals, Errors: errs})
	}
	s.audit(c, "add_user", "user:"+added.Username, added.Role)
	return s.renderAdmin(c, 0, adminForms{Saved: "user", NewPassword: pw, Values: map[string]string{"created": added.Username}})
}

// roomList is the rooms of d by id.
func roomList(d *directory) []registry.Room {
	out := make([]registry.Room, 0, len(d.roomByID))
	for _, r := range d.roomByID {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b registry.Room) int { return strings.Compare(a.ID, b.ID) })
	return out
}
