package dashboard

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Importer is the registry's upsert; *registry.Store implements it. Rows
// absent from the document are kept, so a document holding one new or
// changed row (plus the rows it refers to, unchanged) edits just that row.
type Importer interface {
	Import(ctx context.Context, doc *registry.Document) error
}

var _ Importer = (*registry.Store)(nil)

func (s *Server) importer() Importer {
	return s.deps.Importer
}

// registryForm builds the upsert document of the registry form (kind site,
// room, bed or resident; fields as the form names them) from the request
// and the current directory, with a message per wrong field.
func registryForm(lang string, d *directory, v map[string]string) (*registry.Document, formErrors) {
	errs := formErrors{}
	idMsg := trIn(lang, "form.err.1_64_letters_digits_or")
	checkID := func(field string) {
		if device.ValidateID(field, v[field]) != nil {
			errs.add(field, idMsg)
		}
	}
	checkName := func() {
		if strings.TrimSpace(v["name"]) == "" {
			errs.add("name", trIn(lang, "form.err.required"))
		} else if err := checkText("name", v["name"], 100, false); err != nil {
			errs.add("name", trIn(lang, "form.err.at_most_100_characters_no"))
		}
	}
	siteSpec := func(id string) (registry.SiteSpec, bool) {
		x, ok := d.siteByID[id]
		if !ok {
			errs.add("site", trIn(lang, "form.err.choose_a_registered_site"))
		}
		return registry.SiteSpec{ID: x.ID, Name: x.Name, TimeZone: x.TimeZone}, ok
	}
	doc := &registry.Document{}
	switch v["kind"] {
	case "site":
		checkID("id")
		checkName()
		if tz := v["timezone"]; tz == "" || tz == "Local" {
			errs.add("timezone", trIn(lang, "form.err.an_iana_time_zone_such"))
		} else if _, err := time.LoadLocation(tz); err != nil {
			errs.add("timezone", trIn(lang, "form.err.an_iana_time_zone_such"))
		}
		doc.Sites = []registry.SiteSpec{{ID: v["id"], Name: v["name"], TimeZone: v["timezone"]}}
	case "room":
		checkID("id")
		if r, ok := d.roomByID[v["id"]]; ok && r.SiteID != v["site"] {
			errs.add("id", trIn(lang, "form.err.this_room_id_is_taken"))
		}
		site, _ := siteSpec(v["site"])
		site.Rooms = []registry.RoomSpec{{ID: v["id"], Name: strings.TrimSpace(v["name"])}}
		doc.Sites = []registry.SiteSpec{site}
	case "bed":
		checkID("id")
		site, ok := siteSpec(v["site"])
		room, rok := d.roomByID[v["room"]]
		if !rok || (ok && room.SiteID != site.ID) {
			errs.add("room", trIn(lang, "form.err.choose_a_room_of_the"))
		}
		if b, ok := d.bedByID[v["id"]]; ok && b.RoomID != v["room"] {
			errs.add("id", trIn(lang, "form.err.this_bed_id_is_taken"))
		}
		site.Rooms = []registry.RoomSpec{{ID: room.ID, Name: room.Name, Beds: []registry.BedSpec{{ID: v["id"], Name: strings.TrimSpace(v["name"]), Nursing: v["nursing"] == "on"}}}}
		doc.Sites = []registry.SiteSpec{site}
	case "resident":
		checkID("id")
		checkName()
		site, ok := siteSpec(v["site"])
		if bedID := v["bed"]; bedID != "" {
			b, bok := d.bedByID[bedID]
			if !bok || (ok && b.SiteID != site.ID) {
				errs.add("bed", trIn(lang, "form.err.choose_a_bed_of_the"))
			} else {
				for _, r := range d.residents {
					if r.BedID == bedID && r.ID != v["id"] {
						errs.add("bed", trf(lang, "form.err.bed_taken", "name", r.Name))
					}
				}
				room := d.roomByID[b.RoomID]
				site.Rooms = []registry.RoomSpec{{ID: room.ID, Name: room.Name, Beds: []registry.BedSpec{{ID: b.ID, Name: b.Name, Nursing: b.Nursing}}}}
			}
		}
		year := 0
		if y := v["birth_year"]; y != "" {
			n, err := strconv.Atoi(y)
			if err != nil || n < 1900 || n > time.Now().Year() {
				errs.add("birth_year", trIn(lang, "form.err.a_year_such_as_1938"))
			}
			year = n
		}
		doc.Sites = []registry.SiteSpec{site}
		doc.Residents = []registry.Resident{{ID: v["id"], SiteID: v["site"], BedID: v["bed"], Name: strings.TrimSpace(v["name"]),
			BirthYear: year, Vulnerable: v["vulnerable"] == "on"}}
	default:
		errs.add("form", trIn(lang, "form.err.one_of_site_room_bed"))
	}
	if len(errs) == 0 {
		if err := doc.Validate(); err != nil {
			errs.add("form", err.Error())
		}
	}
	return doc, errs
}

// adminRegistry is POST /admin/registry: creates or changes one site,
// room, bed or resident (field "kind") through registry.Store.Import.
func (s *Server) adminRegistry(c *fiber.Ctx) error {
	lang := langOf(c)
	imp := s.importer()
	if imp == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "adm.readonly"))
	}
	v := map[string]string{}
	for _, k := range []string{"kind", "id", "name", "timezone", "site", "room", "bed", "birth_year", "nursing", "vulnerable"} {
		v[k] = strings.TrimSpace(c.FormValue(k))
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	doc, errs := registryForm(lang, d, v)
	if len(errs) == 0 {
		var err error
		if o := s.onboardStore(); v["kind"] == "bed" && o != nil {
			// A bed goes through PutBed, so a change of type keeps its
			// history (who, when, why) as on /admin/onboard.
			err = o.PutBed(c.UserContext(), bedFromForm(d, v), actorOf(c), "admin form", s.now())
		} else {
			err = imp.Import(c.UserContext(), doc)
		}
		if err != nil {
			errs.add("form", err.Error())
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "registry-" + v["kind"], Values: v, Errors: errs})
	}
	s.audit(c, "registry_"+v["kind"], v["kind"]+":"+v["id"], "")
	return c.Redirect("/admin?saved="+v["kind"], fiber.StatusSeeOther)
}

// bedFromForm is the bed of the /admin registry form: an existing bed keeps
// its type unless the nursing box changed; a new bed is nursing or
// ordinary.
func bedFromForm(d *directory, v map[string]string) registry.Bed {
	nursing := v["nursing"] == "on"
	typ := registry.BedOrdinary
	if nursing {
		typ = registry.BedNursing
	}
	if b, ok := d.bedByID[v["id"]]; ok && b.Nursing == nursing && b.Type != "" {
		typ = b.Type
	}
	return registry.Bed{ID: v["id"], RoomID: v["room"], Name: strings.TrimSpace(v["name"]), Type: typ}
}
