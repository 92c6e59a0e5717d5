package registry

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
	"gopkg.in/yaml.v3"
)

// Document is the registry file: sites with their rooms and beds nested,
// then residents, devices, meal cards and bindings that refer to them by id.
//
//	sites:
//	  - id: demo-station
//	    name: Sunshine Community Care Station
//	    timezone: Asia/Shanghai
//	    rooms:
//	      - id: r101
//	        name: Room 101
//	        beds:
//	          - {id: b101-1, name: "Bed 1", nursing: true}
//	residents:
//	  - {id: res-001, name: "Wang Xiuying", site: demo-station, bed: b101-1, birth_year: 1938, vulnerable: true}
//	kinds:                                  # optional: report intervals per kind
//	  - {kind: vitals_monitor, report_interval: 15s}
//	devices:
//	  - {id: vm-101, site: demo-station, kind: vitals_monitor, name: "Vitals monitor 101-1", bed: b101-1}
//	  - {id: sos-1, site: demo-station, kind: sos_button, power: battery, report_interval: 25h, gateway: gw-1}
//	cards:
//	  - {id: "04A1B2C3", resident: res-001}
//	bindings:
//	  - {device: vm-101, resident: res-001, from: 2026-01-01T00:00:00Z}   # `to` optional
//	credentials:
//	  - {username: gw-station, password_hash: "$7$101$...$..."}          # mosquitto_passwd format
type Document struct {
	Sites     []SiteSpec `json:"sites,omitempty" yaml:"sites,omitempty"`
	Residents []Resident `json:"residents,omitempty" yaml:"residents,omitempty"`
	// Kinds overrides the default report interval of device kinds.
	Kinds    []KindSetting `json:"kinds,omitempty" yaml:"kinds,omitempty"`
	Devices  []Device      `json:"devices,omitempty" yaml:"devices,omitempty"`
	Cards    []MealCard    `json:"cards,omitempty" yaml:"cards,omitempty"`
	Bindings []Binding     `json:"bindings,omitempty" yaml:"bindings,omitempty"`
	// Credentials are MQTT logins of devices (usually gateways); see
	// [Credential].
	Credentials []Credential `json:"credentials,omitempty" yaml:"credentials,omitempty"`
}

// SiteSpec is a site as written in a [Document], with its rooms nested.
type SiteSpec struct {
	ID       string     `json:"id" yaml:"id"`
	Name     string     `json:"name" yaml:"name"`
	TimeZone string     `json:"timezone" yaml:"timezone"`
	Rooms    []RoomSpec `json:"rooms,omitempty" yaml:"rooms,omitempty"`
}

// RoomSpec is a room as written in a [Document], with its beds nested.
type RoomSpec struct {
	ID    string    `json:"id" yaml:"id"`
	Name  string    `json:"name" yaml:"name"`
	Ward  string    `json:"ward,omitempty" yaml:"ward,omitempty"`
	Names Names     `json:"names,omitempty" yaml:"names,omitempty"`
	Beds  []BedSpec `json:"beds,omitempty" yaml:"beds,omitempty"`
}

// BedSpec is a bed as written in a [Document].
//
// Type is one of [BedTypes]; "" is nursing when Nursing is set, else
// ordinary. Nursing: true with another type is refused.
type BedSpec struct {
	ID      string `json:"id" yaml:"id"`
	Name    string `json:"name" yaml:"name"`
	Nursing bool   `json:"nursing,omitempty" yaml:"nursing,omitempty"`
	Type    string `json:"type,omitempty" yaml:"type,omitempty"`
}

// bedType returns the spec's effective type.
func (b BedSpec) bedType() string {
	switch {
	case b.Type != "":
		return b.Type
	case b.Nursing:
		return BedNursing
	}
	return BedOrdinary
}

// SiteList returns the document's sites without their rooms.
func (d *Document) SiteList() []Site {
	out := make([]Site, 0, len(d.Sites))
	for _, s := range d.Sites {
		out = append(out, Site{ID: s.ID, Name: s.Name, TimeZone: s.TimeZone})
	}
	return out
}

// RoomList returns every room of every site, with SiteID filled in.
func (d *Document) RoomList() []Room {
	var out []Room
	for _, s := range d.Sites {
		for _, r := range s.Rooms {
			out = append(out, Room{ID: r.ID, SiteID: s.ID, Name: r.Name, Ward: r.Ward, Names: r.Names})
		}
	}
	return out
}

// BedList returns every bed of every room, with RoomID and SiteID filled in.
func (d *Document) BedList() []Bed {
	var out []Bed
	for _, s := range d.Sites {
		for _, r := range s.Rooms {
			for _, b := range r.Beds {
				t := b.bedType()
				out = append(out, Bed{ID: b.ID, RoomID: r.ID, SiteID: s.ID, Name: b.Name, Nursing: t == BedNursing, Type: t})
			}
		}
	}
	return out
}

// ParseYAML decodes a registry [Document] strictly and validates it.
//
// A key the format does not know is an error naming the key, where it is and
// its line, for example `line 12: unknown key "colour" in residents[0]`; every
// unknown key is reported. A document that decodes is then checked with
// [Document.Validate], and all of its problems are returned together. An empty
// input is an empty, valid document.
func ParseYAML(r io.Reader) (*Document, error) {
	dec := yaml.NewDecoder(r)
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &Document{}, nil
		}
		return nil, fmt.Errorf("parse registry: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("parse registry: %w", err)
		}
		return nil, fmt.Errorf("parse registry: line %d: more than one YAML document", extra.Line)
	}
	var kc keyChecker
	kc.check(&root, reflect.TypeFor[Document](), "", 0)
	if len(kc.errs) > 0 {
		return nil, errors.Join(kc.errs...)
	}
	var doc Document
	if err := root.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse registry: %w", err)
	}
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return &doc, nil
}

var timeType = reflect.TypeFor[time.Time]()

// keyChecker walks a YAML node tree against the yaml tags of Go types and
// reports every mapping key the type does not declare, and every timestamp
// that does not parse, with its line and path.
type keyChecker struct {
	errs []error
	// seen holds anchored nodes already checked against a type, so an
	// alias is walked once: the walk stays linear in the input even when
	// aliases fan out ("billion laughs").
	seen map[aliasKey]bool
}

type aliasKey struct {
	n *yaml.Node
	t reflect.Type
}

// check walks n against t. path is the location of n, as in
// "residents[2].bed".
func (c *keyChecker) check(n *yaml.Node, t reflect.Type, path string, depth int) {
	if n == nil || depth > 64 {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, child := range n.Content {
			c.check(child, t, path, depth+1)
		}
		return
	case yaml.AliasNode:
		k := aliasKey{n.Alias, t}
		if c.seen[k] {
			return
		}
		if c.seen == nil {
			c.seen = map[aliasKey]bool{}
		}
		c.seen[k] = true
		c.check(n.Alias, t, path, depth+1)
		return
	}
	switch {
	case t == timeType:
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			var tm time.Time
			if err := n.Decode(&tm); err != nil {
				c.errs = append(c.errs, fmt.Errorf("line %d: %s: invalid time %q (want RFC 3339, for example 2026-01-01T08:00:00+08:00)", n.Line, path, n.Value))
			}
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				if v.Kind == yaml.SequenceNode { // <<: [*a, *b]
					for _, m := range v.Content {
						c.check(m, t, path, depth+1)
					}
				} else {
					c.check(v, t, path, depth+1)
				}
				continue
			}
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				where := ""
				if path != "" {
					where = " in " + path
				}
				c.errs = append(c.errs, fmt.Errorf("line %d: unknown key %q%s", k.Line, k.Value, where))
				continue
			}
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			c.check(v, f.Type, child, depth+1)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, child := range n.Content {
			c.check(child, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	}
	// Any other shape mismatch (a list where a mapping belongs, ...) is
	// left to the decoder, which reports it with its line.
}

// fieldByTag finds the field of struct type t whose yaml name is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		if tag == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// minBirthYear is the earliest accepted birth year.
const minBirthYear = 1880

// maxIDLen bounds every id, in bytes.
const maxIDLen = 128

// checkID validates an id used as an MQTT topic level and InfluxDB tag value.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("required")
	case len(id) > maxIDLen:
		return fmt.Errorf("id %q longer than %d bytes", id, maxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("id %q is not valid UTF-8", id)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == '+' || r == '#' {
			return fmt.Errorf("invalid id %q: no spaces, control characters, '/', '+' or '#'", id)
		}
	}
	return nil
}

// validator collects every problem of a Document.
type validator struct {
	errs []error
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// id checks an id and its uniqueness within seen, which maps ids to the path
// that first declared them. It reports whether the id is usable.
func (v *validator) id(path, id string, seen map[string]string) bool {
	if first, dup := seen[id]; dup && id != "" {
		v.addf(path, "duplicate id %q (first at %s)", id, first)
		return false
	}
	if err := checkID(id); err != nil {
		if id != "" {
			// Record it anyway so references to it do not cascade.
			seen[id] = path
		}
		v.addf(path, "%v", err)
		return false
	}
	if first, dup := seen[id]; dup {
		v.addf(path, "duplicate id %q (first at %s)", id, first)
		return false
	}
	seen[id] = path
	return true
}

// Validate checks the document and returns every problem joined with
// errors.Join, each prefixed with its path, for example
// `residents[2].bed: unknown bed "b9"` or
// `sites[0].timezone: unknown IANA zone "Asia/Shangai"`. It checks: ids are
// present, unique within their kind (rooms and beds across all sites) and free
// of spaces, '/', '+' and '#'; sites have a name and a loadable IANA zone;
// residents have a name and refer to a known site and, if any, a bed on that
// site that no other resident holds; birth years (if set) lie between 1880 and this year;
// devices have a known kind and refer to a known site, bed and gateway on that
// site, have a power of mains or battery if any and a report interval
// between 1 s and 31 days if any; kinds are known, set once each, with a
// report interval in the same bounds; cards refer to a known resident; bindings refer to a known device and
// resident on one site, have from set and to after from, and no two bindings
// of one device overlap; credentials name a known device at most once and
// carry a well-formed "$7$" password hash.
func (d *Document) Validate() error {
	c := docCheck{d: d, v: &validator{},
		siteIDs: map[string]string{}, beds: map[string]place{},
		residents: map[string]place{}, devices: map[string]Device{}}
	c.sites()
	c.residentsAndBeds()
	c.kinds()
	c.devicesAndGateways()
	c.cards()
	byDevice := c.bindings()
	c.credentials()
	c.overlaps(byDevice)
	return errors.Join(c.v.errs...)
}

// place is where a bed or resident was declared: its site and its path in
// the document.
type place struct {
	site string
	path string
}

// docCheck is one run of Document.Validate: the document, the problems
// found so far and the ids each section declared, for the references of
// the sections after it. The sections run in document order, so the
// problems come out in that order.
type docCheck struct {
	d *Document
	v *validator
	// siteIDs maps a site id to the path that declared it.
	siteIDs map[string]string
	// beds and residents map an id to the first place declaring it.
	beds, residents map[string]place
	// devices maps a device id to the first device declaring it.
	devices map[string]Device
}

// sites checks sites, their rooms and beds, and records the beds.
func (c *docCheck) sites() {
	v := c.v
	roomIDs := map[string]string{}
	bedIDs := map[string]string{}
	for i, s := range c.d.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		v.id(p+".id", s.ID, c.siteIDs)
		v.name(p+".name", s.Name, true)
		switch s.TimeZone {
		case "":
			v.addf(p+".timezone", "required")
		case "Local":
			v.addf(p+".timezone", "unknown IANA zone %q", s.TimeZone)
		default:
			if _, err := time.LoadLocation(s.TimeZone); err != nil {
				v.addf(p+".timezone", "unknown IANA zone %q", s.TimeZone)
			}
		}
		for j, r := range s.Rooms {
			rp := fmt.Sprintf("%s.rooms[%d]", p, j)
			v.id(rp+".id", r.ID, roomIDs)
			v.name(rp+".name", r.Name, false)
			v.ward(rp+".ward", r.Ward)
			v.names(rp+".names", r.Names)
			for k, b := range r.Beds {
				bp := fmt.Sprintf("%s.beds[%d]", rp, k)
				v.id(bp+".id", b.ID, bedIDs)
				v.name(bp+".name", b.Name, false)
				v.bedType(bp+".type", b.bedType())
				if b.Nursing && b.bedType() != BedNursing {
					v.addf(bp+".nursing", "true, but the type is %s", b.Type)
				}
				if _, dup := c.beds[b.ID]; !dup && b.ID != "" {
					c.beds[b.ID] = place{site: s.ID, path: bp}
				}
			}
		}
	}
}

// residentsAndBeds checks residents, their site and bed (on their site,
// held by nobody else), and records the residents.
func (c *docCheck) residentsAndBeds() {
	v := c.v
	residentIDs := map[string]string{}
	bedHolder := map[string]string{} // bed id -> path of the resident
	for i, r := range c.d.Residents {
		p := fmt.Sprintf("residents[%d]", i)
		v.id(p+".id", r.ID, residentIDs)
		if _, dup := c.residents[r.ID]; !dup && r.ID != "" {
			c.residents[r.ID] = place{site: r.SiteID, path: p}
		}
		v.residentFields(p, r)
		v.siteRef(p+".site", r.SiteID, c.siteIDs)
		if r.BedID == "" {
			continue
		}
		b, ok := c.beds[r.BedID]
		switch {
		case !ok:
			v.addf(p+".bed", "unknown bed %q", r.BedID)
		case r.SiteID != "" && b.site != "" && b.site != r.SiteID:
			v.addf(p+".bed", "bed %q is on site %q, not %q", r.BedID, b.site, r.SiteID)
		default:
			if holder, taken := bedHolder[r.BedID]; taken {
				v.addf(p+".bed", "bed %q already assigned to %s", r.BedID, holder)
			} else {
				bedHolder[r.BedID] = fmt.Sprintf("%s (%q)", p, r.ID)
			}
		}
	}
}

// kinds checks the per-kind settings: known kinds, each set once, with a
// report interval.
func (c *docCheck) kinds() {
	v := c.v
	kindSeen := map[string]string{}
	for i, k := range c.d.Kinds {
		p := fmt.Sprintf("kinds[%d]", i)
		switch first, dup := kindSeen[k.Kind]; {
		case k.Kind == "":
			v.addf(p+".kind", "required")
		case !ValidKind(k.Kind):
			v.addf(p+".kind", "unknown kind %q (want one of %s)", k.Kind, strings.Join(Kinds, ", "))
		case dup:
			v.addf(p+".kind", "kind %q set twice (first at %s)", k.Kind, first)
		default:
			kindSeen[k.Kind] = p
		}
		if k.ReportInterval == 0 {
			v.addf(p+".report_interval", "required (for example 10m)")
		} else {
			v.interval(p+".report_interval", k.ReportInterval)
		}
	}
}

// devicesAndGateways records the devices, then checks each: its fields, its
// site, its bed (on its site) and its gateway (a gateway on its site, not
// itself). Devices are recorded first because a device may name a gateway
// declared after it.
func (c *docCheck) devicesAndGateways() {
	v := c.v
	for _, dev := range c.d.Devices {
		if _, dup := c.devices[dev.ID]; !dup && dev.ID != "" {
			c.devices[dev.ID] = dev
		}
	}
	deviceIDs := map[string]string{}
	for i, dev := range c.d.Devices {
		p := fmt.Sprintf("devices[%d]", i)
		v.id(p+".id", dev.ID, deviceIDs)
		v.deviceFields(p, dev)
		v.siteRef(p+".site", dev.SiteID, c.siteIDs)
		if dev.BedID != "" {
			b, ok := c.beds[dev.BedID]
			switch {
			case !ok:
				v.addf(p+".bed", "unknown bed %q", dev.BedID)
			case dev.SiteID != "" && b.site != "" && b.site != dev.SiteID:
				v.addf(p+".bed", "bed %q is on site %q, not %q", dev.BedID, b.site, dev.SiteID)
			}
		}
		if dev.GatewayID == "" {
			continue
		}
		gw, ok := c.devices[dev.GatewayID]
		switch {
		case dev.GatewayID == dev.ID:
			v.addf(p+".gateway", "device %q cannot be its own gateway", dev.ID)
		case !ok:
			v.addf(p+".gateway", "unknown device %q", dev.GatewayID)
		case gw.Kind != KindGateway:
			v.addf(p+".gateway", "device %q is a %s, not a gateway", gw.ID, gw.Kind)
		case dev.SiteID != "" && gw.SiteID != "" && gw.SiteID != dev.SiteID:
			v.addf(p+".gateway", "gateway %q is on site %q, not %q", gw.ID, gw.SiteID, dev.SiteID)
		}
	}
}

// cards checks meal cards: unique ids, a known resident.
func (c *docCheck) cards() {
	v := c.v
	cardIDs := map[string]string{}
	for i, card := range c.d.Cards {
		p := fmt.Sprintf("cards[%d]", i)
		v.id(p+".id", card.ID, cardIDs)
		switch _, ok := c.residents[card.ResidentID]; {
		case card.ResidentID == "":
			v.addf(p+".resident", "required")
		case !ok:
			v.addf(p+".resident", "unknown resident %q", card.ResidentID)
		}
	}
}

// bindings checks each binding on its own (known device and resident on
// one site, from set, to after from) and returns, per device id, the
// indexes of the well-formed ones for the overlap check.
func (c *docCheck) bindings() map[string][]int {
	v := c.v
	byDevice := map[string][]int{}
	for i, b := range c.d.Bindings {
		p := fmt.Sprintf("bindings[%d]", i)
		ok := true
		dev, devOK := c.devices[b.DeviceID]
		switch {
		case b.DeviceID == "":
			v.addf(p+".device", "required")
			ok = false
		case !devOK:
			v.addf(p+".device", "unknown device %q", b.DeviceID)
			ok = false
		}
		res, resOK := c.residents[b.ResidentID]
		switch {
		case b.ResidentID == "":
			v.addf(p+".resident", "required")
		case !resOK:
			v.addf(p+".resident", "unknown resident %q", b.ResidentID)
		case devOK && dev.SiteID != "" && res.site != "" && dev.SiteID != res.site:
			v.addf(p+".resident", "resident %q is on site %q, device %q on site %q", b.ResidentID, res.site, dev.ID, dev.SiteID)
		}
		if b.From.IsZero() {
			v.addf(p+".from", "required")
			ok = false
		}
		if b.To != nil && !b.From.IsZero() && b.To.UnixMilli() <= b.From.UnixMilli() {
			v.addf(p+".to", "%s is not after from %s", b.To.UTC().Format(time.RFC3339Nano), b.From.UTC().Format(time.RFC3339Nano))
			ok = false
		}
		if ok {
			byDevice[b.DeviceID] = append(byDevice[b.DeviceID], i)
		}
	}
	return byDevice
}

// credentials checks gateway credentials: a known device, named once, with
// a well-formed password hash.
func (c *docCheck) credentials() {
	v := c.v
	credIDs := map[string]string{}
	for i, cr := range c.d.Credentials {
		p := fmt.Sprintf("credentials[%d]", i)
		switch _, ok := c.devices[cr.Username]; {
		case cr.Username == "":
			v.addf(p+".username", "required")
		case !ok:
			v.addf(p+".username", "unknown device %q (the username is a device id)", cr.Username)
		default:
			v.id(p+".username", cr.Username, credIDs)
		}
		if err := ParsePasswordHash(cr.PasswordHash); err != nil {
			v.addf(p+".password_hash", "%v", err)
		}
	}
}

// overlaps reports every pair of well-formed bindings of one device whose
// periods overlap, ordered by the later binding's index, then the
// earlier's.
func (c *docCheck) overlaps(byDevice map[string][]int) {
	devIDs := make([]string, 0, len(byDevice))
	for id := range byDevice {
		devIDs = append(devIDs, id)
	}
	slices.Sort(devIDs)
	type pair struct{ later, earlier int }
	var found []pair
	for _, id := range devIDs {
		idx := byDevice[id]
		for a := 1; a < len(idx); a++ {
			for b := 0; b < a; b++ {
				if c.d.Bindings[idx[a]].overlaps(c.d.Bindings[idx[b]]) {
					found = append(found, pair{idx[a], idx[b]})
				}
			}
		}
	}
	slices.SortFunc(found, func(x, y pair) int {
		if x.later != y.later {
			return x.later - y.later
		}
		return x.earlier - y.earlier
	})
	for _, o := range found {
		c.v.addf(fmt.Sprintf("bindings[%d]", o.later), "overlaps bindings[%d] for device %q", o.earlier, c.d.Bindings[o.later].DeviceID)
	}
}

// residentFields checks what a resident says of itself (no references):
// name, birth year, and the programme settings (see care). The YAML import
// and [Store.PutResident] both call it.
func (v *validator) residentFields(p string, r Resident) {
	v.name(p+".name", r.Name, true)
	v.names(p+".names", r.Names)
	switch y := r.BirthYear; {
	case y != 0 && y < minBirthYear:
		v.addf(p+".birth_year", "%d is before %d", y, minBirthYear)
	case y > time.Now().Year():
		v.addf(p+".birth_year", "%d is in the future", y)
	}
	v.care(p, r)
}

// deviceFields checks what a device says of itself (no references): name,
// kind, power, report interval and limits. The YAML import and
// [Store.PutDevice] both call it.
func (v *validator) deviceFields(p string, dev Device) {
	v.name(p+".name", dev.Name, false)
	v.names(p+".names", dev.Names)
	switch {
	case dev.Kind == "":
		v.addf(p+".kind", "required")
	case !ValidKind(dev.Kind):
		v.addf(p+".kind", "unknown kind %q (want one of %s)", dev.Kind, strings.Join(Kinds, ", "))
	}
	switch dev.Power {
	case "", PowerMains, PowerBattery:
	default:
		v.addf(p+".power", "unknown power %q (want mains or battery)", dev.Power)
	}
	if dev.ReportInterval != 0 {
		v.interval(p+".report_interval", dev.ReportInterval)
	}
	v.limits(p, dev)
}

// siteRef checks a required reference to a site.
// MaxNameLen is the longest display name (site, room, bed, resident,
// device), in characters.
const MaxNameLen = 100

// name checks a display name: valid UTF-8, no control characters, at most
// MaxNameLen characters, and not blank when required.
func (v *validator) name(path, s string, required bool) {
	switch {
	case strings.TrimSpace(s) == "":
		if required {
			v.addf(path, "required")
		}
	case !utf8.ValidString(s):
		v.addf(path, "not valid UTF-8")
	case utf8.RuneCountInString(s) > MaxNameLen:
		v.addf(path, "longer than %d characters", MaxNameLen)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		v.addf(path, "contains a control character")
	case strings.IndexFunc(s, IsSpoofingFormat) >= 0:
		r := []rune(s)[slices.IndexFunc([]rune(s), IsSpoofingFormat)]
		v.addf(path, "contains an invisible direction or line control (U+%04X)", r)
	}
}

// IsSpoofingFormat reports whether r is an invisible character that
// changes how the text around it is shown: the bidirectional embeddings,
// overrides and isolates (U+202A-U+202E, U+2066-U+2069, which can make a
// name read backwards, "Trojan Source") and the line and paragraph
// separators (U+2028, U+2029). Display names refuse them; the marks
// U+200E and U+200F that right-to-left text needs are allowed.
func IsSpoofingFormat(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x2028 || r == 0x2029
}

// MaxWardLen is the longest ward name, in characters.
const MaxWardLen = 40

// ward checks a ward name: optional, a display name of at most MaxWardLen
// characters.
func (v *validator) ward(path, s string) {
	if s != "" && strings.TrimSpace(s) == "" {
		v.addf(path, "blank")
		return
	}
	if utf8.RuneCountInString(s) > MaxWardLen {
		v.addf(path, "longer than %d characters", MaxWardLen)
		return
	}
	v.name(path, s, false)
}

// names checks display names by language: each tag a well-formed BCP 47
// tag (golang.org/x/text/language), each name a valid display name.
func (v *validator) names(path string, n Names) {
	for _, tag := range slices.Sorted(maps.Keys(n)) {
		if _, err := language.Parse(tag); err != nil || tag == "" {
			v.addf(path, "%q is not a language tag (want for example zh-CN or en)", tag)
			continue
		}
		v.name(path+"."+tag, n[tag], true)
	}
}

// interval checks a report interval against its bounds.
func (v *validator) interval(path string, d time.Duration) {
	switch {
	case d < MinReportInterval:
		v.addf(path, "%s is shorter than %s", d, MinReportInterval)
	case d > MaxReportInterval:
		v.addf(path, "%s is longer than %s", d, MaxReportInterval)
	}
}

func (v *validator) siteRef(path, id string, sites map[string]string) {
	switch _, ok := sites[id]; {
	case id == "":
		v.addf(path, "required")
	case !ok:
		v.addf(path, "unknown site %q", id)
	}
}
