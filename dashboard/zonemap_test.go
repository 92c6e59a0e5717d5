package dashboard

import (
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestMercator: tile numbers of known places (the OpenStreetMap wiki's
// slippy-map example, Berlin at zoom 16: tile 35203/21494; Shanghai's
// People's Square at zoom 16: 54881/26778, computed independently).
func TestMercator(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		lat, lon float64
		z        int
		tx, ty   int
	}{{52.516, 13.377, 16, 35203, 21494}, {31.2304, 121.4737, 16, 54881, 26778}, {0, 0, 1, 1, 1}} {
		x, y := mercator(c.lat, c.lon, c.z)
		if int(x/tileSize) != c.tx || int(y/tileSize) != c.ty {
			t.Errorf("(%v, %v) at zoom %d: tile %d/%d, want %d/%d", c.lat, c.lon, c.z, int(x/tileSize), int(y/tileSize), c.tx, c.ty)
		}
	}
	// 1 pixel at the equator at zoom 0 is 156,543 m.
	if m := metresPerPixel(0, 0); m < 156_543 || m > 156_544 {
		t.Errorf("metres per pixel %v", m)
	}
}

func TestParseTileURL(t *testing.T) {
	t.Parallel()
	if o, err := ParseTileURL("https://tiles.example.org:8443/osm/{z}/{x}/{y}.png"); err != nil || o != "https://tiles.example.org:8443" {
		t.Errorf("origin %q, %v", o, err)
	}
	for _, bad := range []string{"tiles/{z}/{x}/{y}.png", "https://t.example/{z}/{x}.png", "javascript:alert(1)//{z}{x}{y}", "ftp://t.example/{z}/{x}/{y}", "https://u:p@t.example/{z}/{x}/{y}.png"} {
		if _, err := ParseTileURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestZoneTileSVG: a 300 m zone and a track around People's Square are
// drawn at a street-level zoom over the tiles that cover the drawing (the
// tile of the zone's centre among them), with the attribution, and a
// hostile zone name is escaped.
func TestZoneTileSVG(t *testing.T) {
	t.Parallel()
	zones := []registry.SafeZone{{Name: `home<script>`, Center: &registry.Point{Lat: 31.2304, Lon: 121.4737}, RadiusM: 300}}
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	track := []TrackPoint{{T: t0, Lat: 31.2304, Lon: 121.4737}, {T: t0.Add(time.Minute), Lat: 31.2320, Lon: 121.4750}}
	svg := string(zoneTileSVG(zones, track, "Zones", "https://tiles.example.org/{z}/{x}/{y}.png", "© OpenStreetMap contributors"))
	zoom := regexp.MustCompile(`data-zoom="(\d+)"`).FindStringSubmatch(svg)
	if zoom == nil || zoom[1] != "15" {
		t.Fatalf("zoom %v, want 15 (a 600 m circle is about 380 px at 16, 190 px at 15)", zoom)
	}
	if !strings.Contains(svg, `href="https://tiles.example.org/15/27440/13389.png"`) {
		t.Errorf("no tile of the centre (15/27440/13389):\n%s", svg)
	}
	tiles := strings.Count(svg, `class="tile"`)
	if tiles < 1 || tiles > 4 {
		t.Errorf("%d tiles for a 320 px drawing, want 1-4", tiles)
	}
	for _, want := range []string{`class="track"`, `class="last"`, "© OpenStreetMap contributors", `data-zone="home&lt;script&gt;"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %s", want)
		}
	}
	if strings.Contains(svg, "<script>") {
		t.Error("zone name not escaped")
	}
	// The circle's radius: 300 m at 31.23° N, zoom 15 = 300 / 4.085 m per px.
	r := regexp.MustCompile(`<circle data-zone="[^"]*" cx="[\d.]+" cy="[\d.]+" r="([\d.]+)"`).FindStringSubmatch(svg)
	if r == nil || r[1] != "73.4" {
		t.Errorf("radius %v, want 73.4 px", r)
	}
	if zoneTileSVG(nil, nil, "x", "https://t.example/{z}/{x}/{y}", "") != "" {
		t.Error("an empty drawing")
	}
}

// TestResidentPageMap: with --map-tiles the resident page draws the safe
// zone over the tile server's tiles and the Content-Security-Policy lets
// the browser load images from that origin only; without it the page keeps
// the plain drawing and the policy names no other origin. A tile URL
// without placeholders is refused at start.
func TestResidentPageMap(t *testing.T) {
	t.Parallel()
	withZone := func(_ *Config, d *Deps) {
		r := testRegistry()
		r.residents[0].SafeZones = []registry.SafeZone{{Name: "home", Center: &registry.Point{Lat: 31.2304, Lon: 121.4737}, RadiusM: 150}}
		d.Registry = r
	}
	ts := newTestServer(t, func(c *Config, d *Deps) {
		withZone(c, d)
		c.MapTiles = "https://tiles.example.org/{z}/{x}/{y}.png"
		c.MapAttribution = "© OpenStreetMap contributors"
	})
	cookie, _ := ts.login(t)
	resp, body := ts.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `class="tile" href="https://tiles.example.org/`) || !strings.Contains(body, `data-zone="home"`) || !strings.Contains(body, "OpenStreetMap") {
		t.Errorf("no map with tiles and zone on the resident page")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' https://tiles.example.org") || !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}

	plain := newTestServer(t, withZone)
	cookie, _ = plain.login(t)
	resp, body = plain.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie})
	if strings.Contains(body, `class="tile"`) || !strings.Contains(body, `data-zone="home"`) {
		t.Errorf("without tiles: want the plain drawing")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "img-src") {
		t.Errorf("CSP without tiles names images: %q", csp)
	}

	reg := prometheus.NewRegistry()
	_, err := New(Config{HTTPAddr: "127.0.0.1:0", APIToken: testToken, Root: "t", MQTTURL: "tcp://x:1883", ClientID: "x", InfluxURL: "http://x:8086",
		MapTiles: "https://tiles.example.org/tile.png"}, withCapabilities(Deps{Alerts: newFakeAlerts(time.Now), Registry: testRegistry(), Accounts: testAccounts(t, time.Now)}), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "no {z} placeholder") {
		t.Errorf("bad tile URL: %v", err)
	}
}

// TestZoneTileSVGDropsBadFixes: a NaN or out-of-range fix is left out of
// the map as of the plain drawing; no NaN reaches the markup.
func TestZoneTileSVGDropsBadFixes(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	track := []TrackPoint{{T: t0, Lat: 31.2304, Lon: 121.4737}, {T: t0.Add(time.Minute), Lat: math.NaN(), Lon: 121.4}, {T: t0.Add(2 * time.Minute), Lat: 95, Lon: 500}}
	svg := string(zoneTileSVG(nil, track, "Zones", "https://tiles.example.org/{z}/{x}/{y}.png", ""))
	if svg == "" || strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Fatalf("map with bad fixes: %s", svg)
	}
	if zoneTileSVG(nil, track[1:], "Zones", "https://tiles.example.org/{z}/{x}/{y}.png", "") != "" {
		t.Error("only bad fixes: want no drawing")
	}
}
