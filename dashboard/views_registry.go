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

// importer is the registry's upsert; *registry.Store implements it. Rows
// absent from the document are kept, so a document holding one new or
// changed row (plus the rows it refers to, unchanged) edits just that row.
type importer interface {
	Import(ctx context.Context, doc *registry.Document) error
}

var _ importer = (*registry.Store)(nil)

func (s *Server) importer() importer {
	i, _ := s.deps.Registry.(importer)
	return i
}

// registryForm builds the upsert document of the registry form (kind site,
// room, bed or resident; fields as the form names them) from the request
// and the current directory, with a message per wrong field.
func registryForm(lang string, d *directory, v map[string]string) (*registry.Document, formErrors) {
	errs := formErrors{}
	idMsg := msg(lang, "1-64 letters, digits, '.', '_' or '-'", "1-64 个字母、数字、'.'、'_' 或 '-'")
	checkID := func(field string) {
		if device.ValidateID(field, v[field]) != nil {
			errs.add(field, idMsg)
		}
	}
	checkName := func() {
		if strings.TrimSpace(v["name"]) == "" {
			errs.add("name", msg(lang, "required", "必填"))
		} else if err := checkText("name", v["name"], 100, false); err != nil {
			errs.add("name", msg(lang, "at most 100 characters, no control characters", "最多 100 个字符，不能包含控制字符"))
		}
	}
	siteSpec := func(id string) (registry.SiteSpec, bool) {
		x, ok := d.siteByID[id]
		if !ok {
			errs.add("site", msg(lang, "choose a registered site", "请选择已登记的站点"))
		}
		return registry.SiteSpec{ID: x.ID, Name: x.Name, TimeZone: x.TimeZone}, ok
	}
	doc := &registry.Document{}
	switch v["kind"] {
	case "site":
		checkID("id")
		checkName()
		if tz := v["timezone"]; tz == "" || tz == "Local" {
			errs.add("timezone", msg(lang, "an IANA time zone such as Asia/Shanghai", "请输入 IANA 时区，例如 Asia/Shanghai"))
		} else if _, err := time.LoadLocation(tz); err != nil {
			errs.add("timezone", msg(lang, "an IANA time zone such as Asia/Shanghai", "请输入 IANA 时区，例如 Asia/Shanghai"))
		}
		doc.Sites = []registry.SiteSpec{{ID: v["id"], Name: v["name"], TimeZone: v["timezone"]}}
	case "room":
		checkID("id")
		if r, ok := d.roomByID[v["id"]]; ok && r.SiteID != v["site"] {
			errs.add("id", msg(lang, "this room id is taken on another site", "该房间编号已在其他站点使用"))
		}
		site, _ := siteSpec(v["site"])
		site.Rooms = []registry.RoomSpec{{ID: v["id"], Name: strings.TrimSpace(v["name"])}}
		doc.Sites = []registry.SiteSpec{site}
	case "bed":
		checkID("id")
		site, ok := siteSpec(v["site"])
		room, rok := d.roomByID[v["room"]]
		if !rok || (ok && room.SiteID != site.ID) {
			errs.add("room", msg(lang, "choose a room of the site", "请选择该站点的房间"))
		}
		if b, ok := d.bedByID[v["id"]]; ok && b.RoomID != v["room"] {
			errs.add("id", msg(lang, "this bed id is taken in another room", "该床位编号已在其他房间使用"))
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
				errs.add("bed", msg(lang, "choose a bed of the site, or none", "请选择该站点的床位，或不选"))
			} else {
				for _, r := range d.residents {
					if r.BedID == bedID && r.ID != v["id"] {
						errs.add("bed", msg(lang, "this bed is taken by "+r.Name, "该床位已由 "+r.Name+" 使用"))
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
				errs.add("birth_year", msg(lang, "a year such as 1938, or empty", "请输入年份，例如 1938，或留空"))
			}
			year = n
		}
		doc.Sites = []registry.SiteSpec{site}
		doc.Residents = []registry.Resident{{ID: v["id"], SiteID: v["site"], BedID: v["bed"], Name: strings.TrimSpace(v["name"]),
			BirthYear: year, Vulnerable: v["vulnerable"] == "on"}}
	default:
		errs.add("form", msg(lang, "one of site, room, bed, resident", "应为 site、room、bed 或 resident"))
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
		if err := imp.Import(c.UserContext(), doc); err != nil {
			errs.add("form", err.Error())
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "registry-" + v["kind"], Values: v, Errors: errs})
	}
	s.audit(c, "registry_"+v["kind"], v["kind"]+":"+v["id"], "")
	return c.Redirect("/admin?saved="+v["kind"], fiber.StatusSeeOther)
}
