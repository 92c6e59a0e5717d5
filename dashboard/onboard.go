package dashboard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Onboarding from the admin pages (issue 13): /admin/onboard adds, edits
// and retires sites, rooms, beds, residents, devices, meal cards and
// gateways, binds devices to residents, and adopts devices that send data
// but are not registered. Every write goes through the registry store's
// admin writes (device/registry/store_admin.go), which check it with the
// YAML import's validation; the page shows the same messages the import
// gives, next to the field they concern.

// OnboardStore is the registry's write side the onboarding page uses;
// *registry.Store implements it.
type OnboardStore interface {
	PutSite(ctx context.Context, x registry.Site) error
	PutRoom(ctx context.Context, x registry.Room) error
	PutBed(ctx context.Context, x registry.Bed, by, reason string, at time.Time) error
	PutResident(ctx context.Context, r registry.Resident) error
	PutDevice(ctx context.Context, dev registry.Device) error
	AddDevice(ctx context.Context, dev registry.Device) error
	PutGateway(ctx context.Context, dev registry.Device) (string, error)
	PutCard(ctx context.Context, x registry.MealCard) error
	SetNames(ctx context.Context, table, id string, n registry.Names) error
	Retire(ctx context.Context, kind, id, by, reason string, at time.Time) error
	Cards(ctx context.Context) ([]registry.MealCard, error)
	Bind(ctx context.Context, deviceID, residentID string, from time.Time) error
}

var _ OnboardStore = (*registry.Store)(nil)

// UnknownDevices lists the devices heard from but not registered, for
// adoption; *alerting.Manager implements it (table alert_unknown_devices,
// written by the alerting service, so it works with the dashboard in its
// own process).
type UnknownDevices interface {
	UnknownDevices(ctx context.Context) ([]alerting.UnknownDevice, error)
	ForgetUnknownDevice(ctx context.Context, dev string) error
}

var _ UnknownDevices = (*alerting.Manager)(nil)

func (s *Server) onboardStore() OnboardStore {
	return s.deps.Onboard
}

func (s *Server) unknownDevices() UnknownDevices { return s.deps.Unknown }

// onboardRoutes registers the onboarding page and its forms (admin only).
func (s *Server) onboardRoutes(web fiber.Router) {
	admin := requireRole(RoleAdmin)
	web.Get("/admin/onboard", admin, s.onboardPage)
	web.Post("/admin/onboard/:kind", admin, s.onboardPost)
	web.Get("/manager/adherence", requireRole(RoleAdmin, RoleManager, RoleNurseLead), s.managerAdherence) // adherence.go
	web.Post("/residents/:id/command", requireRole(RoleAdmin, RoleManager, RoleNurseLead, RoleCaregiver), s.scopeResident, s.residentCommand)
}

// onboardFields are the form fields read per kind.
var onboardFields = map[string][]string{
	"device":   {"id", "site", "kind", "name", "name_zh", "name_en", "bed", "gateway", "power", "report_interval", "resident"},
	"gateway":  {"id", "site", "name"},
	"site":     {"id", "name", "timezone"},
	"room":     {"id", "site", "name", "name_zh", "name_en", "ward"},
	"bed":      {"id", "room", "name", "type", "reason"},
	"resident": {"id", "site", "bed", "name", "name_zh", "name_en", "birth_year", "vulnerable", "visit_cadence_days", "medication", "safe_zones", "notes"},
	"card":     {"id", "resident"},
	"retire":   {"kind", "id", "reason"},
}

func init() { onboardFields["adopt"] = onboardFields["device"] }

// onboardForm is what the page shows after a POST, or prefilled for edit.
type onboardForm struct {
	Form     string
	Values   map[string]string
	Errors   formErrors
	Saved    string
	Password string // a new gateway's password, shown once
}

// onboardPage is GET /admin/onboard (?edit=<kind>&id=<id> prefills a form;
// ?adopt=<device> the adopt form).
func (s *Server) onboardPage(c *fiber.Ctx) error {
	f := onboardForm{Saved: c.Query("saved"), Values: map[string]string{}, Errors: formErrors{}}
	if k, id := c.Query("edit"), c.Query("id"); k != "" && id != "" {
		d, err := s.directory(c.UserContext())
		if err != nil {
			return err
		}
		f.Form, f.Values = k, editValues(d, k, id)
	}
	if dev := c.Query("adopt"); dev != "" {
		f.Form = "adopt"
		f.Values = map[string]string{"id": dev, "site": c.Query("site"), "kind": c.Query("kind")}
	}
	return s.renderOnboard(c, 0, f)
}

// editValues are the form values of an existing row.
func editValues(d *directory, kind, id string) map[string]string {
	v := map[string]string{"id": id}
	switch kind {
	case "site":
		if x, ok := d.siteByID[id]; ok {
			v["name"], v["timezone"] = x.Name, x.TimeZone
		}
	case "room":
		if x, ok := d.roomByID[id]; ok {
			v["site"], v["name"], v["ward"], v["name_zh"], v["name_en"] = x.SiteID, x.Name, x.Ward, x.Names[LangZH], x.Names[LangEN]
		}
	case "bed":
		if x, ok := d.bedByID[id]; ok {
			v["room"], v["name"], v["type"] = x.RoomID, x.Name, x.Type
		}
	case "resident":
		if x, ok := d.resByID[id]; ok {
			v["site"], v["bed"], v["name"], v["name_zh"], v["name_en"], v["notes"] = x.SiteID, x.BedID, x.Name, x.Names[LangZH], x.Names[LangEN], x.Notes
			if x.BirthYear != 0 {
				v["birth_year"] = strconv.Itoa(x.BirthYear)
			}
			if x.Vulnerable {
				v["vulnerable"] = "on"
			}
			if x.VisitCadenceDays != 0 {
				v["visit_cadence_days"] = strconv.Itoa(x.VisitCadenceDays)
			}
			v["medication"], v["safe_zones"] = formatDoses(x.Medication), formatZones(x.SafeZones)
		}
	case "device", "gateway":
		if x, ok := d.devByID[id]; ok {
			v["site"], v["kind"], v["name"], v["bed"], v["gateway"], v["power"] = x.SiteID, x.Kind, x.Name, x.BedID, x.GatewayID, x.Power
			v["name_zh"], v["name_en"] = x.Names[LangZH], x.Names[LangEN]
			if x.ReportInterval != 0 {
				v["report_interval"] = x.ReportInterval.String()
			}
		}
	}
	return v
}

func (s *Server) renderOnboard(c *fiber.Ctx, code int, f onboardForm) error {
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	data := map[string]any{"Sites": d.sites, "Rooms": roomList(d), "Beds": d.beds, "Residents": d.residents,
		"Devices": d.devices, "F": f, "CSRF": csrfOf(c), "Kinds": deviceFormKinds(), "BedTypes": registry.BedTypes,
		"RetireKinds": registry.RetireKinds, "CanEdit": s.onboardStore() != nil, "Lang": langOf(c),
		// V and E are the values and messages of the form shown (by kind).
		"V": map[string]map[string]string{f.Form: f.Values}, "E": map[string]formErrors{f.Form: f.Errors}}
	var gateways []registry.Device
	for _, x := range d.devices {
		if x.Kind == registry.KindGateway {
			gateways = append(gateways, x)
		}
	}
	data["Gateways"] = gateways
	now := s.now()
	bound := map[string]string{}
	for _, b := range d.bindings {
		if b.Contains(now) {
			bound[b.DeviceID] = b.ResidentID
		}
	}
	data["Bound"] = bound
	if o := s.onboardStore(); o != nil {
		cards, err := o.Cards(ctx)
		if err != nil {
			return err
		}
		data["Cards"] = cards
	}
	if u := s.unknownDevices(); u != nil {
		xs, err := u.UnknownDevices(ctx)
		if err != nil {
			return err
		}
		type row struct {
			alerting.UnknownDevice
			Ago string
		}
		var rows []row
		for _, x := range xs {
			if _, registered := d.devByID[x.Device]; registered {
				continue // adopted since its last message
			}
			rows = append(rows, row{x, agoText(langOf(c), now.Sub(x.LastSeen))})
		}
		data["Unknown"], data["CanAdopt"] = rows, true
	}
	return s.renderView(c, code, "onboard", "onb.title", data)
}

// onboardPost is POST /admin/onboard/:kind: one form of the page. A
// refused write shows the form again with a message per field (400);
// each accepted write is audited.
func (s *Server) onboardPost(c *fiber.Ctx) error {
	lang := langOf(c)
	kind := c.Params("kind")
	fields, ok := onboardFields[kind]
	if !ok {
		return fiber.ErrNotFound
	}
	o := s.onboardStore()
	if o == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	v := map[string]string{}
	for _, k := range fields {
		v[k] = strings.TrimSpace(c.FormValue(k))
	}
	f := onboardForm{Form: kind, Values: v, Errors: formErrors{}}
	ctx := c.UserContext()
	actor := actorOf(c)
	now := s.now()
	var err error
	target, detail := kind+":"+v["id"], ""
	if err := s.checkDeviceIdentity(c, kind, v, f.Errors); err != nil {
		return err
	}
	if len(f.Errors) > 0 {
		return s.renderOnboard(c, fiber.StatusBadRequest, f)
	}
	switch kind {
	case "site":
		err = o.PutSite(ctx, registry.Site{ID: v["id"], Name: v["name"], TimeZone: v["timezone"]})
	case "room":
		err = o.PutRoom(ctx, registry.Room{ID: v["id"], SiteID: v["site"], Name: v["name"], Ward: v["ward"], Names: names(v)})
	case "bed":
		t := v["type"]
		err = o.PutBed(ctx, registry.Bed{ID: v["id"], RoomID: v["room"], Name: v["name"], Type: t}, actor, v["reason"], now)
		detail = "type " + t
	case "resident":
		var r registry.Resident
		r, err = residentFromForm(lang, v, f.Errors)
		if err == nil {
			err = o.PutResident(ctx, r)
		}
	case "device", "adopt":
		var dev registry.Device
		dev, err = deviceFromForm(lang, v, f.Errors)
		if err == nil {
			// The form has no limits: an edit keeps the device's (PutDevice
			// replaces them as a whole).
			if d, derr := s.directory(ctx); derr != nil {
				return derr
			} else if old, ok := d.devByID[dev.ID]; ok {
				dev.Limits = old.Limits
			}
			if kind == "adopt" {
				// insert only: a second adoption of the same device,
				// even at the same moment, is refused
				err = o.AddDevice(ctx, dev)
			} else {
				err = o.PutDevice(ctx, dev)
			}
		}
		if err == nil && len(dev.Names) > 0 {
			err = o.SetNames(ctx, "devices", dev.ID, dev.Names)
		}
		if err == nil && v["resident"] != "" {
			if berr := o.Bind(ctx, dev.ID, v["resident"], now); berr != nil {
				f.Errors.add("resident", registryText(lang, berr.Error()))
				err = errForm
			} else {
				detail = "bound to resident:" + v["resident"]
			}
		}
		if err == nil && kind == "adopt" {
			target = "device:" + v["id"]
			if u := s.unknownDevices(); u != nil {
				if ferr := u.ForgetUnknownDevice(ctx, dev.ID); ferr != nil {
					s.log.Warn("dashboard: forget adopted device", "device", dev.ID, "err", ferr)
				}
			}
		}
	case "gateway":
		f.Password, err = o.PutGateway(ctx, registry.Device{ID: v["id"], SiteID: v["site"], Name: v["name"], Kind: registry.KindGateway})
		detail = "new credential"
	case "card":
		err = o.PutCard(ctx, registry.MealCard{ID: v["id"], ResidentID: v["resident"]})
		detail = "resident:" + v["resident"]
	case "retire":
		err = o.Retire(ctx, v["kind"], v["id"], actor, v["reason"], now)
		target, detail = v["kind"]+":"+v["id"], v["reason"]
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInUse) {
			f.Errors.add("id", registryText(lang, err.Error()))
			err = errForm
		}
	}
	if err != nil && !errors.Is(err, errForm) {
		fe := registry.FieldErrors(err)
		if len(fe) == 0 {
			return err
		}
		for _, e := range fe {
			field := e.Field
			if field == "names" {
				field = "name_zh"
			}
			if !slices.Contains(fields, field) {
				field = "form"
			}
			f.Errors.add(field, registryText(lang, e.Message))
		}
	}
	if len(f.Errors) > 0 {
		return s.renderOnboard(c, fiber.StatusBadRequest, f)
	}
	action := "onboard_" + kind
	if kind == "retire" {
		action = "retire"
	}
	s.audit(c, action, target, detail)
	if kind == "gateway" {
		f.Saved, f.Values = kind, map[string]string{"created": v["id"]}
		return s.renderOnboard(c, 0, f) // the password is shown on this page only
	}
	return c.Redirect("/admin/onboard?saved="+kind, fiber.StatusSeeOther)
}

// errForm marks a write refused with messages already in the form's
// errors.
var errForm = errors.New("form errors")

// names reads the per-language display names of a form.
func names(v map[string]string) registry.Names {
	n := registry.Names{}
	if x := v["name_zh"]; x != "" {
		n[LangZH] = x
	}
	if x := v["name_en"]; x != "" {
		n[LangEN] = x
	}
	if len(n) == 0 {
		return nil
	}
	return n
}

// deviceFromForm reads the device (and adopt) form. Values that do not
// parse (a report interval that is not a duration) are form errors (and
// errForm); the rest is checked by the registry.
func deviceFromForm(lang string, v map[string]string, errs formErrors) (registry.Device, error) {
	dev := registry.Device{ID: v["id"], SiteID: v["site"], Kind: v["kind"], Name: v["name"], BedID: v["bed"],
		GatewayID: v["gateway"], Power: v["power"], Names: names(v)}
	if ri := v["report_interval"]; ri != "" {
		d, err := time.ParseDuration(ri)
		if err != nil {
			errs.add("report_interval", trIn(lang, "form.err.a_duration_such_as_5m"))
			return dev, errForm
		}
		dev.ReportInterval = d
	}
	return dev, nil
}

// residentFromForm reads the resident form: medication one dose a line
// ("08:00 30m aspirin": time, tolerance, medication), safe zones one a
// line ("home circle 31.2304 121.4737 150 [20:00-07:00]" or "garden
// polygon 31.23,121.47 31.24,121.47 31.24,121.48 [from-to]"; 圆 and 多边形
// are accepted for circle and polygon).
func residentFromForm(lang string, v map[string]string, errs formErrors) (registry.Resident, error) {
	r := registry.Resident{ID: v["id"], SiteID: v["site"], BedID: v["bed"], Name: v["name"], Names: names(v),
		Vulnerable: v["vulnerable"] == "on", Notes: v["notes"]}
	bad := false
	if y := v["birth_year"]; y != "" {
		n, err := strconv.Atoi(y)
		if err != nil {
			errs.add("birth_year", trIn(lang, "form.err.a_year_such_as_1938"))
			bad = true
		}
		r.BirthYear = n
	}
	if y := v["visit_cadence_days"]; y != "" {
		n, err := strconv.Atoi(y)
		if err != nil {
			errs.add("visit_cadence_days", trIn(lang, "onb.err.days"))
			bad = true
		}
		r.VisitCadenceDays = n
	}
	doses, err := parseDoses(v["medication"])
	if err != nil {
		errs.add("medication", trf(lang, "onb.err.medication_line", "n", err.Error()))
		bad = true
	}
	r.Medication = doses
	zones, err := parseZones(v["safe_zones"])
	if err != nil {
		errs.add("safe_zones", trf(lang, "onb.err.zone_line", "n", err.Error()))
		bad = true
	}
	r.SafeZones = zones
	if bad {
		return r, errForm
	}
	return r, nil
}

// lineError names the line (1-based) that does not parse.
type lineError int

func (e lineError) Error() string { return strconv.Itoa(int(e)) }

func lines(s string) []string { return strings.Split(strings.ReplaceAll(s, "\r", ""), "\n") }

func parseDoses(s string) ([]registry.Dose, error) {
	var out []registry.Dose
	for i, line := range lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, lineError(i + 1)
		}
		tol, err := time.ParseDuration(f[1])
		if err != nil {
			return nil, lineError(i + 1)
		}
		out = append(out, registry.Dose{Time: f[0], Tolerance: tol, Medication: strings.Join(f[2:], " ")})
	}
	return out, nil
}

func formatDoses(ds []registry.Dose) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s %s %s\n", d.Time, d.Tolerance, d.Medication)
	}
	return strings.TrimSpace(b.String())
}

func parseZones(s string) ([]registry.SafeZone, error) {
	var out []registry.SafeZone
	for i, line := range lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := lineError(i + 1)
		if len(f) < 3 {
			return nil, bad
		}
		z := registry.SafeZone{Name: f[0]}
		rest := f[2:]
		if last := rest[len(rest)-1]; strings.Count(last, ":") == 2 && strings.Contains(last, "-") {
			z.From, z.To, _ = strings.Cut(last, "-")
			rest = rest[:len(rest)-1]
		}
		switch f[1] {
		case "circle", "圆":
			if len(rest) != 3 {
				return nil, bad
			}
			var nums [3]float64
			for j := range nums {
				x, err := strconv.ParseFloat(rest[j], 64)
				if err != nil {
					return nil, bad
				}
				nums[j] = x
			}
			z.Center, z.RadiusM = &registry.Point{Lat: nums[0], Lon: nums[1]}, nums[2]
		case "polygon", "多边形":
			for _, p := range rest {
				a, b, ok := strings.Cut(p, ",")
				lat, err1 := strconv.ParseFloat(a, 64)
				lon, err2 := strconv.ParseFloat(b, 64)
				if !ok || err1 != nil || err2 != nil {
					return nil, bad
				}
				z.Polygon = append(z.Polygon, registry.Point{Lat: lat, Lon: lon})
			}
		default:
			return nil, bad
		}
		out = append(out, z)
	}
	return out, nil
}

func formatZones(zs []registry.SafeZone) string {
	var b strings.Builder
	for _, z := range zs {
		if z.Center != nil {
			fmt.Fprintf(&b, "%s circle %g %g %g", z.Name, z.Center.Lat, z.Center.Lon, z.RadiusM)
		} else {
			fmt.Fprintf(&b, "%s polygon", z.Name)
			for _, p := range z.Polygon {
				fmt.Fprintf(&b, " %g,%g", p.Lat, p.Lon)
			}
		}
		if z.From != "" {
			fmt.Fprintf(&b, " %s-%s", z.From, z.To)
		}
		b.WriteByte('\n')
	}
	return strings.TrimSpace(b.String())
}

// checkDeviceIdentity refuses, as a message on the id field, a form that
// would change what an existing device is: adopting a device that is
// registered already (a second adoption, or a double submit, would
// overwrite the first one's site, bed and names), a gateway form naming a
// device of another kind (it would turn that sensor into a gateway), and a
// device form naming a gateway (it would turn the gateway into a sensor
// while its MQTT credential stays). A device or adoption form refuses kind
// gateway (only the gateway form issues its credential) and a resident to
// bind who is unknown or on another site, before anything is written; a
// device bound to a resident cannot be moved to another site.
func (s *Server) checkDeviceIdentity(c *fiber.Ctx, kind string, v map[string]string, errs formErrors) error {
	if kind != "adopt" && kind != "gateway" && kind != "device" && kind != "resident" {
		return nil
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	lang := langOf(c)
	if kind == "resident" {
		// The same for a resident moved to another site while a device of
		// the old site is bound to them.
		if old, ok := d.resByID[v["id"]]; ok && old.SiteID != v["site"] {
			now := s.now()
			for _, b := range d.bindings {
				if b.ResidentID != old.ID || !b.Contains(now) {
					continue
				}
				if x, ok := d.devByID[b.DeviceID]; ok && x.SiteID != v["site"] {
					errs.add("site", trf(lang, "onb.err.device_elsewhere", "id", old.ID, "device", x.ID, "site", x.SiteID))
					break
				}
			}
		}
		return nil
	}
	if kind != "gateway" {
		if v["kind"] == registry.KindGateway {
			errs.add("kind", trIn(lang, "onb.err.use_gateway_form"))
		}
		// The binding is checked before anything is written, so a refused
		// form leaves no device behind.
		if res := v["resident"]; res != "" {
			if r, ok := d.resByID[res]; !ok {
				errs.add("resident", trf(lang, "onb.err.unknown_resident", "id", res))
			} else if r.SiteID != v["site"] {
				errs.add("resident", trf(lang, "onb.err.resident_site", "id", res, "site", r.SiteID))
			}
		}
	}
	old, ok := d.devByID[v["id"]]
	if !ok {
		return nil
	}
	switch {
	case kind == "adopt":
		errs.add("id", trf(lang, "onb.err.registered", "id", old.ID))
	case kind == "gateway" && old.Kind != registry.KindGateway:
		errs.add("id", trf(lang, "onb.err.not_gateway", "id", old.ID, "kind", trIn(lang, "kind."+old.Kind)))
	case kind == "device" && old.Kind == registry.KindGateway && v["kind"] != registry.KindGateway:
		errs.add("id", trf(lang, "onb.err.is_gateway", "id", old.ID))
	case kind == "device" && v["site"] != old.SiteID:
		// Moving a device to another site while it is bound to a
		// resident of its old site would file that resident's alerts
		// under the new site (seen by its staff, not the resident's).
		now := s.now()
		for _, b := range d.bindings {
			if b.DeviceID != old.ID || !b.Contains(now) {
				continue
			}
			if r, ok := d.resByID[b.ResidentID]; ok && r.SiteID != v["site"] {
				errs.add("site", trf(lang, "onb.err.bound_elsewhere", "id", old.ID, "resident", b.ResidentID, "site", r.SiteID))
				break
			}
		}
	}
	return nil
}

// deviceFormKinds are the kinds the device and adoption forms offer: every
// kind but the gateway, which has its own form (it issues the password).
func deviceFormKinds() []string {
	return slices.DeleteFunc(slices.Clone(registry.Kinds), func(k string) bool { return k == registry.KindGateway })
}
