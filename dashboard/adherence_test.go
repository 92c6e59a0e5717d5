package dashboard

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestAdherenceWeeks: doses fall into Monday-to-Sunday weeks of the site's
// zone, across a DST change and midnight; shares and family words.
func TestAdherenceWeeks(t *testing.T) {
	t.Parallel()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Sunday 2026-03-29 is the spring DST change in Berlin.
	now := time.Date(2026, 3, 31, 12, 0, 0, 0, loc) // Tuesday
	recs := []alerting.DoseRecord{
		{Due: time.Date(2026, 3, 30, 0, 30, 0, 0, loc), State: alerting.DoseTaken}, // Monday: this week
		{Due: time.Date(2026, 3, 31, 8, 0, 0, 0, loc), State: alerting.DoseMissed}, // this week
		{Due: time.Date(2026, 3, 29, 23, 30, 0, 0, loc), State: alerting.DoseLate}, // Sunday (after DST): last week
		{Due: time.Date(2026, 3, 29, 2, 30, 0, 0, loc), State: alerting.DoseTaken}, // the DST gap's instant, Sunday
		{Due: time.Date(2026, 3, 1, 8, 0, 0, 0, loc), State: alerting.DoseTaken},   // out of range
	}
	w := adherenceWeeks(recs, loc, now, 2)
	if w[0].Week != "2026-03-30" || w[0].Taken != 1 || w[0].Missed != 1 || w[0].Rate != "50 %" {
		t.Errorf("this week %+v", w[0])
	}
	if w[1].Week != "2026-03-23" || w[1].Taken != 1 || w[1].Late != 1 || w[1].Missed != 0 || w[1].Rate != "100 %" || w[1].OnTime || !w[1].AllTaken {
		t.Errorf("last week %+v", w[1])
	}
	if got := familyAdherence(LangEN, w[0]); got != "This week 1 of 2 doses were taken (0 late); 1 missed." {
		t.Errorf("en: %q", got)
	}
	if got := familyAdherence(LangZH, w[1]); got != "本周应服 2 次，已服 2 次（其中延后 1 次），漏服 0 次。" {
		t.Errorf("zh: %q", got)
	}
	if got := familyAdherence(LangEN, weekAdherence{}); !strings.Contains(got, "No scheduled dose") {
		t.Errorf("none: %q", got)
	}
}

// TestResidentFormParsing: the medication and safe-zone lines of the
// resident form, with a message naming the bad line.
func TestResidentFormParsing(t *testing.T) {
	t.Parallel()
	errs := formErrors{}
	r, err := residentFromForm(LangEN, map[string]string{"id": "r1", "site": "s", "name": "X",
		"medication": "08:00 30m amlodipine 5 mg\r\n\n20:00 1h",
		"safe_zones": "home circle 31.2304 121.4737 150\n花园 多边形 31.23,121.47 31.24,121.47 31.24,121.48 20:00-07:00"}, errs)
	if err != nil || len(errs) > 0 {
		t.Fatalf("%v %v", err, errs)
	}
	if len(r.Medication) != 2 || r.Medication[0].Medication != "amlodipine 5 mg" || r.Medication[1].Tolerance != time.Hour {
		t.Errorf("medication %+v", r.Medication)
	}
	if len(r.SafeZones) != 2 || r.SafeZones[0].RadiusM != 150 || len(r.SafeZones[1].Polygon) != 3 || r.SafeZones[1].From != "20:00" || r.SafeZones[1].To != "07:00" {
		t.Errorf("zones %+v", r.SafeZones)
	}
	for _, tc := range []struct{ field, value, want string }{
		{"medication", "08:00 30m x\n08:00 soon", "Line 2"},
		{"safe_zones", "home square 1 2 3", "Line 1"},
		{"safe_zones", "home circle 31.2 abc 150", "Line 1"},
		{"birth_year", "nineteen", "a year such as"},
	} {
		errs := formErrors{}
		if _, err := residentFromForm(LangEN, map[string]string{tc.field: tc.value}, errs); err == nil || !strings.Contains(errs[tc.field], tc.want) {
			t.Errorf("%s %q: %v %q", tc.field, tc.value, err, errs[tc.field])
		}
	}
}

// TestZoneSVG: zones and track are drawn inside the square; the last
// position is marked; a hostile zone name is escaped.
func TestZoneSVG(t *testing.T) {
	t.Parallel()
	zones := []registry.SafeZone{
		{Name: "home", Center: &registry.Point{Lat: 31.2304, Lon: 121.4737}, RadiusM: 300},
		{Name: `<b>park</b>`, Polygon: []registry.Point{{Lat: 31.232, Lon: 121.476}, {Lat: 31.234, Lon: 121.476}, {Lat: 31.234, Lon: 121.478}}},
	}
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	track := []TrackPoint{{T: t0, Lat: 31.2304, Lon: 121.4737}, {T: t0.Add(time.Minute), Lat: 31.2330, Lon: 121.4770}, {T: t0.Add(2 * time.Minute), Lat: 31.2400, Lon: 121.4800}}
	svg := string(zoneSVG(zones, track, "Zones"))
	for _, want := range []string{`data-zone="home"`, `data-zone="&lt;b&gt;park&lt;/b&gt;"`, `class="track"`, `class="last"`, `aria-label="Zones"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %s", want)
		}
	}
	if strings.Contains(svg, "<b>") {
		t.Error("zone name not escaped")
	}
	for _, num := range regexp.MustCompile(`-?\d+\.\d`).FindAllString(svg, -1) {
		if f, _ := strconv.ParseFloat(num, 64); f < -1 || f > 321 {
			t.Errorf("coordinate %s outside the drawing", num)
		}
	}
	if zoneSVG(nil, nil, "x") != "" {
		t.Error("an empty drawing")
	}
	// Fixes that are not places (NaN, infinite, out of range) are left out
	// rather than turning the drawing into NaN; a title is escaped.
	bad := append(slices.Clone(track), TrackPoint{T: t0, Lat: math.NaN(), Lon: 121}, TrackPoint{T: t0, Lat: 31, Lon: math.Inf(1)},
		TrackPoint{T: t0, Lat: 999, Lon: 121})
	svg = string(zoneSVG(zones, bad, `"><script>x</script>`))
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") || strings.Contains(svg, "<script>") || !strings.Contains(svg, `class="last"`) {
		t.Errorf("hostile track or title: %s", svg)
	}
	if zoneSVG(nil, []TrackPoint{{T: t0, Lat: math.NaN(), Lon: math.NaN()}}, "x") != "" {
		t.Error("a drawing of no valid point")
	}
}
