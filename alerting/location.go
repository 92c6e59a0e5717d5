// Location and safe zones (issue 13 item 4): a locator's position readings
// (lat_deg, lon_deg, accuracy_m; WGS 84) are checked against the safe zones
// of the resident it is bound to (registry.Resident.SafeZones: circles and
// polygons, optionally by local time of day in the site's zone). A position
// outside every zone that applies at that moment raises `wandering` with the
// last positions; a position back inside resolves it. An SOS carries the
// last known position.

package alerting

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// TypeWandering: a resident's locator reports a position outside every safe
// zone that applies at that moment. High.
const TypeWandering = "wandering"

// trackLen is how many positions per resident the wandering alert and an
// SOS carry.
const trackLen = 5

type position struct {
	at       time.Time
	lat, lon float64
	acc      float64 // m; 0 unknown
}

func (p position) String() string {
	s := fmt.Sprintf("%.5f,%.5f", p.lat, p.lon)
	if p.acc > 0 {
		s += fmt.Sprintf(" ±%gm", p.acc)
	}
	return s + " at " + p.at.UTC().Format("15:04:05Z")
}

// positions applies the position readings of a bound locator.
func (s *Service) positions(ctx context.Context, t device.Topic, tel *device.Telemetry) error {
	for _, r := range tel.Readings {
		lat, ok1 := r.Values["lat_deg"]
		lon, ok2 := r.Values["lon_deg"]
		if !ok1 || !ok2 {
			continue
		}
		at := r.Time()
		p := position{at: at, lat: lat, lon: lon, acc: r.Values["accuracy_m"]}
		s.cmds.mu.Lock()
		tr := append(s.cmds.tracks[t.Device], p)
		if len(tr) > trackLen {
			tr = tr[len(tr)-trackLen:]
		}
		s.cmds.tracks[t.Device] = tr
		track := append([]position(nil), tr...)
		s.cmds.mu.Unlock()
		if s.residents == nil {
			continue
		}
		res, ok := s.residents.ResidentAt(t.Device, at)
		if ok && len(res.SafeZones) == 0 {
			if d, isDir := s.directory().(residentByID); isDir {
				if full, found := d.Resident(res.ID); found {
					res = full
				}
			}
		}
		if !ok || len(res.SafeZones) == 0 {
			continue
		}
		inside, applies := InSafeZone(res.SafeZones, lat, lon, at.In(s.location(t.Site)))
		if !applies {
			continue
		}
		id := res.ID
		var err error
		if inside {
			err = s.autoResolve(ctx, alertKey(&id, t.Device, TypeWandering), "cleared: back inside a safe zone at "+p.String())
		} else {
			err = s.raiseFor(ctx, openSpec{Site: t.Site, Resident: &id, Device: t.Device, Type: TypeWandering, Severity: SeverityHigh, At: at,
				Detail: "outside every safe zone; last positions: " + trackText(track)})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// residentByID is implemented by a Directory that looks residents up by id
// (a *registry.Snapshot), with their safe zones.
type residentByID interface {
	Resident(id string) (registry.Resident, bool)
}

func trackText(tr []position) string {
	parts := make([]string, len(tr))
	for i, p := range tr {
		parts[len(tr)-1-i] = p.String() // newest first
	}
	return strings.Join(parts, "; ")
}

// sosWhere returns the position an SOS carries (its own lat_deg/lon_deg
// attributes, else the device's last known position) as text for the
// alert's detail, "" when none is known; and its location attribute.
func (s *Service) sosWhere(t device.Topic, e *device.Event) string {
	var out string
	if loc, ok := e.Attrs["location"].(string); ok && loc != "" {
		out += " in the " + loc
	}
	lat, ok1 := e.Attrs["lat_deg"].(float64)
	lon, ok2 := e.Attrs["lon_deg"].(float64)
	if ok1 && ok2 {
		acc, _ := e.Attrs["accuracy_m"].(float64)
		return out + "; position " + position{at: e.Time(), lat: lat, lon: lon, acc: acc}.String()
	}
	s.cmds.mu.Lock()
	tr := s.cmds.tracks[t.Device]
	s.cmds.mu.Unlock()
	if len(tr) > 0 {
		out += "; last known position " + tr[len(tr)-1].String()
	}
	return out
}

// InSafeZone reports whether (lat, lon) (WGS 84 degrees) is inside one of
// zones that applies at local (a time in the site's zone), and whether any
// zone applies at all. A zone with From/To applies from From up to To
// (wrapping midnight when To < From); a circle uses the great-circle
// (haversine, mean Earth radius 6371 km) distance; a polygon the
// even-odd rule on plain lat/lon (areas of a city's size).
func InSafeZone(zones []registry.SafeZone, lat, lon float64, local time.Time) (inside, applies bool) {
	mins := local.Hour()*60 + local.Minute()
	for _, z := range zones {
		if z.From != "" && z.To != "" {
			from, err1 := registry.ParseClock(z.From)
			to, err2 := registry.ParseClock(z.To)
			if err1 != nil || err2 != nil {
				continue
			}
			in := mins >= from && mins < to
			if to < from {
				in = mins >= from || mins < to
			}
			if !in {
				continue
			}
		}
		applies = true
		switch {
		case z.Center != nil:
			if haversineM(lat, lon, z.Center.Lat, z.Center.Lon) <= z.RadiusM {
				return true, true
			}
		case len(z.Polygon) >= 3:
			if inPolygon(z.Polygon, lat, lon) {
				return true, true
			}
		}
	}
	return false, applies
}

func haversineM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371000.0
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

func inPolygon(poly []registry.Point, lat, lon float64) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.Lat > lat) != (b.Lat > lat) && lon < (b.Lon-a.Lon)*(lat-a.Lat)/(b.Lat-a.Lat)+a.Lon {
			in = !in
		}
	}
	return in
}
