package dashboard

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// The resident page's safe zones and recent track (issue 13 item 4): a
// plain SVG drawing (no tile server): the zones as circles and polygons,
// the locator's positions of the last hours as a line with the last one
// marked. Positions come from InfluxDB (fields lat_deg, lon_deg of the
// resident's readings).

// TrackPoint is one position of a resident, WGS 84 degrees.
type TrackPoint struct {
	T        time.Time
	Lat, Lon float64
}

// TrackReader reads a resident's positions; *FluxVitals implements it.
type TrackReader interface {
	ResidentTrack(ctx context.Context, residentID string, from, to time.Time) ([]TrackPoint, error)
}

var _ TrackReader = (*FluxVitals)(nil)

// maxTrackPoints bounds the positions drawn.
const maxTrackPoints = 500

// ResidentTrack implements TrackReader: the resident's lat_deg/lon_deg
// readings in [from, to), oldest first, at most maxTrackPoints (the
// newest). Errors: an invalid id, InfluxDB's error wrapped with the bucket.
func (f *FluxVitals) ResidentTrack(ctx context.Context, residentID string, from, to time.Time) ([]TrackPoint, error) {
	if err := device.ValidateID("resident", residentID); err != nil {
		return nil, fmt.Errorf("query track: %w", err)
	}
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "readings" and r.resident == %s and (r._field == "lat_deg" or r._field == "lon_deg"))
  |> group()
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: %d)`, fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano),
		fluxString(residentID), maxTrackPoints)
	res, err := f.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query track of %s from bucket %s: %w", residentID, f.bucket, err)
	}
	defer res.Close()
	var out []TrackPoint
	for res.Next() {
		r := res.Record()
		lat, ok1 := toFloat(r.ValueByKey("lat_deg"))
		lon, ok2 := toFloat(r.ValueByKey("lon_deg"))
		if ok1 && ok2 {
			out = append(out, TrackPoint{T: r.Time(), Lat: lat, Lon: lon})
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read track of %s from bucket %s: %w", residentID, f.bucket, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T.Before(out[j].T) })
	return out, nil
}

// zoneSVG draws zones and track in a square viewBox of size px. Latitude
// and longitude are projected equirectangularly around the drawing's
// centre (good to a few metres over a neighbourhood). It returns "" when
// there is nothing to draw. title labels the drawing for screen readers.
func zoneSVG(zones []registry.SafeZone, track []TrackPoint, title string) template.HTML {
	const size, pad = 320.0, 16.0
	track, box, ok := zoneExtent(zones, track)
	if !ok {
		return ""
	}
	minLat, maxLat, minLon, maxLon := box.minLat, box.maxLat, box.minLon, box.maxLon
	kx := math.Cos((minLat + maxLat) / 2 * math.Pi / 180) // metres per degree of longitude, relative
	w, h := (maxLon-minLon)*kx, maxLat-minLat
	span := math.Max(math.Max(w, h), 1e-6)
	scale := (size - 2*pad) / span
	x := func(lon float64) float64 { return pad + ((lon-minLon)*kx+(span-w)/2)*scale }
	y := func(lat float64) float64 { return pad + ((maxLat-lat)+(span-h)/2)*scale }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="zones" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, size, size, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="#f4f7f6" stroke="#c9d3d0"/>`, size, size)
	for _, z := range zones {
		name := template.HTMLEscapeString(z.Name)
		switch {
		case z.Center != nil:
			r := z.RadiusM / 111_320 * scale
			fmt.Fprintf(&b, `<circle data-zone="%s" cx="%.1f" cy="%.1f" r="%.1f" fill="#2e7d32" fill-opacity=".15" stroke="#2e7d32" stroke-width="2"><title>%s</title></circle>`,
				name, x(z.Center.Lon), y(z.Center.Lat), r, name)
		case len(z.Polygon) > 0:
			var pts []string
			for _, p := range z.Polygon {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Lon), y(p.Lat)))
			}
			fmt.Fprintf(&b, `<polygon data-zone="%s" points="%s" fill="#2e7d32" fill-opacity=".15" stroke="#2e7d32" stroke-width="2"><title>%s</title></polygon>`,
				name, strings.Join(pts, " "), name)
		}
	}
	if len(track) > 0 {
		var pts []string
		for _, p := range track {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Lon), y(p.Lat)))
		}
		fmt.Fprintf(&b, `<polyline class="track" points="%s" fill="none" stroke="#1565c0" stroke-width="2"/>`, strings.Join(pts, " "))
		last := track[len(track)-1]
		fmt.Fprintf(&b, `<circle class="last" cx="%.1f" cy="%.1f" r="6" fill="#c62828"/>`, x(last.Lon), y(last.Lat))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// residentMap is the resident page's drawing ("" without zones or track).
func (s *Server) residentMap(ctx context.Context, lang string, res registry.Resident, now time.Time) template.HTML {
	var track []TrackPoint
	if tr := s.deps.Tracks; tr != nil {
		var err error
		if track, err = tr.ResidentTrack(ctx, res.ID, now.Add(-6*time.Hour), now); err != nil {
			s.log.Warn("resident page: track unavailable", "resident", res.ID, "err", err)
		}
	}
	if len(res.SafeZones) == 0 && len(track) == 0 {
		return ""
	}
	if s.cfg.MapTiles != "" {
		return zoneTileSVG(res.SafeZones, track, trIn(lang, "zone.title"), s.cfg.MapTiles, s.cfg.MapAttribution)
	}
	return zoneSVG(res.SafeZones, track, trIn(lang, "zone.title"))
}

// extent is a box of WGS 84 degrees.
type extent struct{ minLat, maxLat, minLon, maxLon float64 }

// zoneExtent returns track without the fixes that are not places on Earth
// (NaN, infinite, out of range: they would turn every coordinate of a
// drawing into NaN) and the box around the zones (circles by their radius)
// and the remaining track; false when there is nothing to draw.
func zoneExtent(zones []registry.SafeZone, track []TrackPoint) ([]TrackPoint, extent, bool) {
	track = slices.DeleteFunc(slices.Clone(track), func(p TrackPoint) bool {
		return !(math.Abs(p.Lat) <= 90 && math.Abs(p.Lon) <= 180)
	})
	type pt struct{ lat, lon float64 }
	var all []pt
	for _, z := range zones {
		if z.Center != nil {
			dLat := z.RadiusM / 111_320
			dLon := dLat / math.Max(math.Cos(z.Center.Lat*math.Pi/180), 0.01)
			all = append(all, pt{z.Center.Lat - dLat, z.Center.Lon - dLon}, pt{z.Center.Lat + dLat, z.Center.Lon + dLon})
		}
		for _, p := range z.Polygon {
			all = append(all, pt{p.Lat, p.Lon})
		}
	}
	for _, p := range track {
		all = append(all, pt{p.Lat, p.Lon})
	}
	if len(all) == 0 {
		return track, extent{}, false
	}
	e := extent{all[0].lat, all[0].lat, all[0].lon, all[0].lon}
	for _, p := range all {
		e.minLat, e.maxLat = math.Min(e.minLat, p.lat), math.Max(e.maxLat, p.lat)
		e.minLon, e.maxLon = math.Min(e.minLon, p.lon), math.Max(e.maxLon, p.lon)
	}
	return track, e, true
}
