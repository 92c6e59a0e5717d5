package dashboard

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// severityRank orders severities, most urgent first.
func severityRank(s string) int {
	switch s {
	case alerting.SeverityCritical:
		return 0
	case alerting.SeverityHigh:
		return 1
	case alerting.SeverityWarning:
		return 2
	}
	return 3
}

// sortAlerts sorts by severity (critical first), then age (oldest first),
// then id.
func sortAlerts(as []alerting.Alert) {
	sort.SliceStable(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if ra, rb := severityRank(a.Severity), severityRank(b.Severity); ra != rb {
			return ra < rb
		}
		if !a.OpenedAt.Equal(b.OpenedAt) {
			return a.OpenedAt.Before(b.OpenedAt)
		}
		return a.ID < b.ID
	})
}

// directory is the registry as one request sees it.
type directory struct {
	sites     []registry.Site
	siteByID  map[string]registry.Site
	locs      map[string]*time.Location
	roomByID  map[string]registry.Room
	beds      []registry.Bed
	bedByID   map[string]registry.Bed
	residents []registry.Resident
	resByID   map[string]registry.Resident
	devices   []registry.Device
	devByID   map[string]registry.Device
	bindings  []registry.Binding
}

func (s *Server) directory(ctx context.Context) (*directory, error) {
	r := s.deps.Registry
	d := &directory{siteByID: map[string]registry.Site{}, locs: map[string]*time.Location{}, roomByID: map[string]registry.Room{},
		bedByID: map[string]registry.Bed{}, resByID: map[string]registry.Resident{}, devByID: map[string]registry.Device{}}
	var err error
	if d.sites, err = r.Sites(ctx); err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	rooms, err := r.Rooms(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	if d.beds, err = r.Beds(ctx, ""); err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	if d.residents, err = r.Residents(ctx, ""); err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	if d.devices, err = r.Devices(ctx, ""); err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	if d.bindings, err = r.Bindings(ctx, ""); err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	for _, x := range d.sites {
		d.siteByID[x.ID] = x
		d.locs[x.ID] = siteLocation(x.TimeZone)
	}
	for _, x := range rooms {
		d.roomByID[x.ID] = x
	}
	for _, x := range d.beds {
		d.bedByID[x.ID] = x
	}
	for _, x := range d.residents {
		d.resByID[x.ID] = x
	}
	for _, x := range d.devices {
		d.devByID[x.ID] = x
	}
	return d, nil
}

// directoryIn is [Server.directory] with residents, rooms and devices named
// in lang (see [directory.localize]): for the pages that show names to a
// viewer. Forms that edit the registry use the plain directory.
func (s *Server) directoryIn(ctx context.Context, lang string) (*directory, error) {
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	d.localize(lang)
	return d, nil
}

// localize sets the Name of every resident, room and device to its display
// name in lang ([registry.DisplayName]: Names[lang], else the plain Name).
// It is the one place a page's names follow the viewer's language; the
// ids, and Names itself, stay as the registry has them.
// The slices are copied first: a registry may hand out its own.
func (d *directory) localize(lang string) {
	d.residents, d.devices = slices.Clone(d.residents), slices.Clone(d.devices)
	for i, x := range d.residents {
		x.Name = registry.DisplayName(x.Names, lang, x.Name)
		d.residents[i] = x
		d.resByID[x.ID] = x
	}
	for id, x := range d.roomByID {
		x.Name = registry.DisplayName(x.Names, lang, x.Name)
		d.roomByID[id] = x
	}
	for i, x := range d.devices {
		x.Name = registry.DisplayName(x.Names, lang, x.Name)
		d.devices[i] = x
		d.devByID[x.ID] = x
	}
}

// siteLocation loads an IANA zone; "" or an unknown zone is UTC.
func siteLocation(tz string) *time.Location {
	if tz == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.UTC
	}
	return loc
}

// siteInfo is what the page script knows of a site: its name and IANA
// time zone, with the zone's current abbreviation and UTC offset (seconds)
// as Go prints them.
type siteInfo struct {
	Name   string `json:"name"`
	TZ     string `json:"tz"`
	Abbr   string `json:"abbr"`
	Offset int    `json:"offset"`
}

// siteInfos maps site id to siteInfo at now.
func (d *directory) siteInfos(now time.Time) map[string]siteInfo {
	out := make(map[string]siteInfo, len(d.sites))
	for _, x := range d.sites {
		loc := d.loc(x.ID)
		abbr, off := now.In(loc).Zone()
		out[x.ID] = siteInfo{Name: x.Name, TZ: loc.String(), Abbr: abbr, Offset: off}
	}
	return out
}

// loc returns the site's time zone; UTC for an unknown site.
func (d *directory) loc(site string) *time.Location {
	if l, ok := d.locs[site]; ok {
		return l
	}
	return time.UTC
}

// residentAtBed returns the resident whose bed is bedID.
func (d *directory) residentAtBed(bedID string) (registry.Resident, bool) {
	for _, r := range d.residents {
		if r.BedID == bedID {
			return r, true
		}
	}
	return registry.Resident{}, false
}

// devicesOf returns the devices installed at bedID and those bound to
// residentID at now, without duplicates, by id.
func (d *directory) devicesOf(bedID, residentID string, now time.Time) []registry.Device {
	var ids []string
	for _, x := range d.devices {
		if bedID != "" && x.BedID == bedID {
			ids = append(ids, x.ID)
		}
	}
	for _, b := range d.bindings {
		if residentID != "" && b.ResidentID == residentID && b.Contains(now) {
			ids = append(ids, b.DeviceID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]registry.Device, 0, len(ids))
	for _, id := range ids {
		if x, ok := d.devByID[id]; ok {
			out = append(out, x)
		} else {
			out = append(out, registry.Device{ID: id})
		}
	}
	return out
}

// roomName returns the room and bed names of bedID.
func (d *directory) bedLabel(bedID string) (room, bed string) {
	b, ok := d.bedByID[bedID]
	if !ok {
		return "", ""
	}
	room = b.RoomID
	if r, ok := d.roomByID[b.RoomID]; ok && r.Name != "" {
		room = r.Name
	}
	bed = b.Name
	if bed == "" {
		bed = b.ID
	}
	return room, bed
}

// deviceView is a device with its live state.
type deviceView struct {
	ID, Name, Kind string
	State          string
}

// vitalView is the latest value of one vital.
type vitalView struct {
	Field, Label, Unit string
	Value              string // "" when unknown
	At                 string // RFC 3339 device time, "" when unknown
	// Lo and Hi are the resident's alert range (NaN = no bound; see
	// markVitals); Abnormal marks a value outside it.
	Lo, Hi   float64
	HasRange bool
	Abnormal bool
}

// alertRow is an alert ready for a template: the alert as the store holds
// it and the names and times to show, built by directory.row.
type alertRow struct {
	alerting.Alert
	ResidentName string
	ResidentID   string
	// ResidentGone: the resident is no longer in the registry (retired);
	// the lists show the id without a link to their page.
	ResidentGone bool
	SiteName     string // the site's name, or its id when the registry has no such site
	Opened       string // in the site's time zone, with the zone's abbreviation
	OpenedClock  string // "15:04 CST"
	OpenedISO    string
	Resolved     string
}

// timeFormat is a full date and time with the zone abbreviation.
const (
	timeFormat  = "2006-01-02 15:04:05 MST"
	clockFormat = "15:04 MST"
)

// bedCard is one card of the live board.
type bedCard struct {
	Key        string // bed id, or "res:<id>" for a resident without bed
	SiteName   string
	Room, Bed  string
	Resident   *registry.Resident
	Devices    []deviceView
	DeviceIDs  string
	Occupancy  string // in, out, unknown
	OccupiedAt string
	Vitals     []vitalView
	Alerts     []alertRow
}

var boardVitals = []string{"hr_bpm", "spo2_pct", "resp_per_min"}

func formatValue(field string, v float64) string {
	if field == "spo2_pct" || strings.HasSuffix(field, "_bpm") || field == "resp_per_min" {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// liveSummary merges the live states of devices: newest sample of each
// vital and newest occupancy.
func (s *Server) liveSummary(devs []registry.Device) (views []deviceView, vitals []vitalView, occ string, occAt string) {
	latest := map[string]Sample{}
	var inBed *bool
	var inBedAt time.Time
	for _, dv := range devs {
		st, ok := s.deps.Live.Device(dv.ID)
		state := "unknown"
		if ok {
			state = string(st.State)
			for k, v := range st.Latest {
				if old, ok := latest[k]; !ok || v.At.After(old.At) {
					latest[k] = v
				}
			}
			if st.InBed != nil && (inBed == nil || st.InBedAt.After(inBedAt)) {
				inBed, inBedAt = st.InBed, *st.InBedAt
			}
		}
		name := dv.Name
		if name == "" {
			name = dv.ID
		}
		views = append(views, deviceView{ID: dv.ID, Name: name, Kind: dv.Kind, State: state})
	}
	for _, f := range boardVitals {
		v := vitalView{Field: f, Label: tr("vital." + f), Unit: tr("unit." + f)}
		if smp, ok := latest[f]; ok {
			v.Value, v.At = formatValue(f, smp.V), smp.At.UTC().Format(time.RFC3339)
		}
		vitals = append(vitals, v)
	}
	occ = "unknown"
	if inBed != nil {
		occ = "out"
		if *inBed {
			occ = "in"
		}
		occAt = inBedAt.UTC().Format(time.RFC3339)
	}
	return views, vitals, occ, occAt
}

func (d *directory) row(a alerting.Alert) alertRow {
	r := alertRow{Alert: a, OpenedISO: a.OpenedAt.UTC().Format(time.RFC3339), SiteName: a.Site}
	if x, ok := d.siteByID[a.Site]; ok && x.Name != "" {
		r.SiteName = x.Name
	}
	loc := d.loc(a.Site)
	r.Opened = a.OpenedAt.In(loc).Format(timeFormat)
	r.OpenedClock = a.OpenedAt.In(loc).Format(clockFormat)
	if a.ResolvedAt != nil {
		r.Resolved = a.ResolvedAt.In(loc).Format(timeFormat)
	}
	if a.Resident != nil {
		r.ResidentID = *a.Resident
		r.ResidentName = *a.Resident
		if res, ok := d.resByID[*a.Resident]; ok {
			r.ResidentName = res.Name
		} else {
			r.ResidentGone = true
		}
	}
	return r
}

// activeAlerts lists open and acknowledged alerts (at most MaxAlertLimit;
// the store orders by severity first, so critical alerts are never the
// ones cut), sorted.
func (s *Server) activeAlerts(ctx context.Context, f alerting.Filter) ([]alerting.Alert, error) {
	f.Status = []string{alerting.StatusOpen, alerting.StatusAcknowledged}
	if f.Limit == 0 {
		f.Limit = MaxAlertLimit
	}
	as, err := s.deps.Alerts.List(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	if len(as) >= f.Limit {
		s.log.Warn("dashboard: more active alerts than the list limit; the least urgent are not shown", "limit", f.Limit)
	}
	sortAlerts(as)
	return as, nil
}

// boardModel builds the live board: one card per bed (and per resident
// without a bed), and the unassigned alerts no card claims, with names in
// lang.
func (s *Server) boardModel(ctx context.Context, lang string) (cards []bedCard, unassigned []alertRow, sites map[string]siteInfo, err error) {
	d, err := s.directoryIn(ctx, lang)
	if err != nil {
		return nil, nil, nil, err
	}
	alerts, err := s.activeAlerts(ctx, alerting.Filter{})
	if err != nil {
		return nil, nil, nil, err
	}
	now := s.now()
	claimed := map[int64]bool{}
	build := func(key, siteID, bedID string, res *registry.Resident) bedCard {
		c := bedCard{Key: key, SiteName: d.siteByID[siteID].Name, Resident: res}
		c.Room, c.Bed = d.bedLabel(bedID)
		resID := ""
		if res != nil {
			resID = res.ID
		}
		devs := d.devicesOf(bedID, resID, now)
		ids := make([]string, len(devs))
		for i, x := range devs {
			ids[i] = x.ID
		}
		c.DeviceIDs = strings.Join(ids, " ")
		c.Devices, c.Vitals, c.Occupancy, c.OccupiedAt = s.liveSummary(devs)
		for _, a := range alerts {
			mine := (a.Resident != nil && *a.Resident == resID && resID != "") ||
				(a.Resident == nil && slices.Contains(ids, a.Device))
			if mine {
				c.Alerts = append(c.Alerts, d.row(a))
				claimed[a.ID] = true
			}
		}
		return c
	}
	for _, b := range d.beds {
		var res *registry.Resident
		if r, ok := d.residentAtBed(b.ID); ok {
			res = &r
		}
		cards = append(cards, build(b.ID, b.SiteID, b.ID, res))
	}
	for _, r := range d.residents {
		if r.BedID == "" {
			cards = append(cards, build("res:"+r.ID, r.SiteID, "", &r))
		}
	}
	for _, a := range alerts {
		if !claimed[a.ID] {
			unassigned = append(unassigned, d.row(a))
		}
	}
	return cards, unassigned, d.siteInfos(now), nil
}
