package dashboard

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// The resident page's map (issue 13 item 4) when the site configures a
// tile server (Config.MapTiles): the same safe zones and track as
// zoneSVG, drawn in Web Mercator over the server's 256-pixel raster tiles
// ("slippy map" tile names, as OpenStreetMap and most tile servers use:
// https://wiki.openstreetmap.org/wiki/Slippy_map_tilenames). Without a
// tile server the page keeps the plain drawing of zoneSVG. The map is
// server-rendered SVG with <image> tiles: no script, no external library,
// and the browser fetches tiles from that server only (the page's
// Content-Security-Policy names its origin in img-src).

// tileSize is the edge of one raster tile, in pixels.
const tileSize = 256

// maxTileZoom is the deepest zoom level used (street level).
const maxTileZoom = 19

// ParseTileURL checks a tile URL template: http or https with a host, and
// the placeholders {z}, {x} and {y} (for example
// https://tiles.example.org/{z}/{x}/{y}.png). It returns the origin
// (scheme://host[:port]) the Content-Security-Policy must allow.
func ParseTileURL(tmpl string) (origin string, err error) {
	for _, p := range []string{"{z}", "{x}", "{y}"} {
		if !strings.Contains(tmpl, p) {
			return "", fmt.Errorf("map tiles %q: no %s placeholder (want for example https://tiles.example.org/{z}/{x}/{y}.png)", tmpl, p)
		}
	}
	u, err := url.Parse(strings.NewReplacer("{z}", "0", "{x}", "0", "{y}", "0").Replace(tmpl))
	if err != nil {
		return "", fmt.Errorf("map tiles %q: %w", tmpl, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("map tiles %q: want an http or https URL with a host", tmpl)
	}
	if u.User != nil {
		return "", errors.New("map tiles: the URL must not carry a user name or password (every browser would see it)")
	}
	return u.Scheme + "://" + u.Host, nil
}

// mercator returns the Web Mercator world position of (lat, lon) at zoom
// z, in pixels of 256-pixel tiles. Latitudes are clamped to ±85.05113°.
func mercator(lat, lon float64, z int) (x, y float64) {
	lat = math.Max(-85.05113, math.Min(85.05113, lat))
	n := float64(tileSize) * math.Exp2(float64(z))
	x = (lon + 180) / 360 * n
	phi := lat * math.Pi / 180
	y = (1 - math.Log(math.Tan(phi)+1/math.Cos(phi))/math.Pi) / 2 * n
	return x, y
}

// metresPerPixel is the ground size of one pixel at latitude lat and zoom z
// (equatorial circumference 40,075,016.686 m over 256·2^z pixels).
func metresPerPixel(lat float64, z int) float64 {
	return 40_075_016.686 * math.Cos(lat*math.Pi/180) / (float64(tileSize) * math.Exp2(float64(z)))
}

// zoneTileSVG draws zones and track over the tiles of tileURL in a square
// viewBox of 320 units: the deepest zoom at which everything fits, centred.
// It returns "" when there is nothing to draw. title labels the drawing
// for screen readers; attribution (the tile server's required credit) is
// drawn in its corner.
func zoneTileSVG(zones []registry.SafeZone, track []TrackPoint, title, tileURL, attribution string) template.HTML {
	const size, pad = 320.0, 16.0
	track, box, ok := zoneExtent(zones, track)
	if !ok {
		return ""
	}
	minLat, maxLat, minLon, maxLon := box.minLat, box.maxLat, box.minLon, box.maxLon
	// The deepest zoom whose pixel span of the box fits the drawing.
	z := maxTileZoom
	for ; z > 0; z-- {
		x0, y0 := mercator(maxLat, minLon, z)
		x1, y1 := mercator(minLat, maxLon, z)
		if x1-x0 <= size-2*pad && y1-y0 <= size-2*pad {
			break
		}
	}
	x0, y0 := mercator(maxLat, minLon, z)
	x1, y1 := mercator(minLat, maxLon, z)
	cx, cy := (x0+x1)/2, (y0+y1)/2
	left, top := cx-size/2, cy-size/2 // world pixel of the drawing's corner
	x := func(lat, lon float64) (float64, float64) {
		wx, wy := mercator(lat, lon, z)
		return wx - left, wy - top
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="zones map" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg" data-zoom="%d">`,
		size, size, template.HTMLEscapeString(title), z)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="#f4f7f6"/>`, size, size)
	n := int(math.Exp2(float64(z)))
	for ty := int(math.Floor(top / tileSize)); float64(ty*tileSize) < top+size; ty++ {
		if ty < 0 || ty >= n {
			continue
		}
		for tx := int(math.Floor(left / tileSize)); float64(tx*tileSize) < left+size; tx++ {
			wrapped := ((tx % n) + n) % n // the antimeridian
			href := strings.NewReplacer("{z}", strconv.Itoa(z), "{x}", strconv.Itoa(wrapped), "{y}", strconv.Itoa(ty)).Replace(tileURL)
			fmt.Fprintf(&b, `<image class="tile" href="%s" x="%.1f" y="%.1f" width="%d" height="%d"/>`,
				template.HTMLEscapeString(href), float64(tx*tileSize)-left, float64(ty*tileSize)-top, tileSize, tileSize)
		}
	}
	for _, zn := range zones {
		name := template.HTMLEscapeString(zn.Name)
		switch {
		case zn.Center != nil:
			px, py := x(zn.Center.Lat, zn.Center.Lon)
			r := zn.RadiusM / metresPerPixel(zn.Center.Lat, z)
			fmt.Fprintf(&b, `<circle data-zone="%s" cx="%.1f" cy="%.1f" r="%.1f" fill="#2e7d32" fill-opacity=".2" stroke="#1b5e20" stroke-width="2"><title>%s</title></circle>`,
				name, px, py, r, name)
		case len(zn.Polygon) > 0:
			var pts []string
			for _, p := range zn.Polygon {
				px, py := x(p.Lat, p.Lon)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			}
			fmt.Fprintf(&b, `<polygon data-zone="%s" points="%s" fill="#2e7d32" fill-opacity=".2" stroke="#1b5e20" stroke-width="2"><title>%s</title></polygon>`,
				name, strings.Join(pts, " "), name)
		}
	}
	if len(track) > 0 {
		var pts []string
		for _, p := range track {
			px, py := x(p.Lat, p.Lon)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
		}
		fmt.Fprintf(&b, `<polyline class="track" points="%s" fill="none" stroke="#0d47a1" stroke-width="3"/>`, strings.Join(pts, " "))
		last := track[len(track)-1]
		px, py := x(last.Lat, last.Lon)
		fmt.Fprintf(&b, `<circle class="last" cx="%.1f" cy="%.1f" r="7" fill="#c62828" stroke="#fff" stroke-width="2"/>`, px, py)
	}
	if attribution != "" {
		fmt.Fprintf(&b, `<text class="attribution" x="%g" y="%g" text-anchor="end" font-size="9" fill="#222" stroke="#fff" stroke-width="2" paint-order="stroke">%s</text>`,
			size-4, size-4, template.HTMLEscapeString(attribution))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
