package registry_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func parseFile(t *testing.T, name string) (*registry.Document, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return registry.ParseYAML(bytes.NewReader(b))
}

func TestParseYAMLDemo(t *testing.T) {
	doc, err := parseFile(t, "demo.yaml")
	if err != nil {
		t.Fatalf("ParseYAML(demo.yaml): %v", err)
	}
	if got, want := len(doc.Sites), 2; got != want {
		t.Fatalf("sites = %d, want %d", got, want)
	}
	if s := doc.Sites[0]; s.ID != "demo-station" || s.TimeZone != "Asia/Shanghai" || len(s.Rooms) != 2 {
		t.Errorf("sites[0] = %+v", s)
	}
	beds := doc.BedList()
	if len(beds) != 3 {
		t.Fatalf("beds = %d, want 3", len(beds))
	}
	if want := (registry.Bed{ID: "b101-1", RoomID: "r101", SiteID: "demo-station", Name: "Bed 1", Nursing: true, Type: "nursing"}); beds[0] != want {
		t.Errorf("beds[0] = %+v, want %+v", beds[0], want)
	}
	if want := (registry.Resident{ID: "res-001", SiteID: "demo-station", BedID: "b101-1", Name: "Wang Xiuying", BirthYear: 1938, Vulnerable: true}); !reflect.DeepEqual(doc.Residents[0], want) {
		t.Errorf("residents[0] = %+v, want %+v", doc.Residents[0], want)
	}
	if got := doc.Devices[1].GatewayID; got != "gw-station" {
		t.Errorf("devices[1].gateway = %q", got)
	}
	if got := doc.Cards[0]; got.ID != "04A1B2C3" || got.ResidentID != "res-001" {
		t.Errorf("cards[0] = %+v", got)
	}
	// A quoted timestamp with an offset is the same instant in UTC.
	if got, want := doc.Bindings[2].From, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("bindings[2].from = %v, want %v", got, want)
	}
	if doc.Bindings[0].To == nil || doc.Bindings[1].To != nil {
		t.Errorf("bindings to = %v, %v; want set, nil", doc.Bindings[0].To, doc.Bindings[1].To)
	}
}

// TestParseYAMLInvalidGolden checks that one file with many mistakes reports
// every one of them, in order, with its path.
func TestParseYAMLInvalidGolden(t *testing.T) {
	_, err := parseFile(t, "invalid.yaml")
	if err == nil {
		t.Fatal("ParseYAML(invalid.yaml) succeeded")
	}
	golden := filepath.Join("testdata", "invalid.golden")
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("errors differ from %s (run with -update to accept)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

func TestParseYAMLDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // exact error text; "" = success
		wantDoc func(t *testing.T, d *registry.Document)
	}{
		{name: "empty", in: "", wantDoc: func(t *testing.T, d *registry.Document) {
			if len(d.Sites)+len(d.Residents)+len(d.Devices) != 0 {
				t.Errorf("doc = %+v, want empty", d)
			}
		}},
		{name: "comment only", in: "# nothing yet\n"},
		{name: "unknown top-level key", in: "sites: []\nresidnets: []\n",
			want: `line 2: unknown key "residnets"`},
		{name: "unknown nested keys all reported", in: `sites:
  - id: s
    name: S
    timezone: UTC
    rooms:
      - id: r
        beds:
          - {id: b, colour: red}
residents:
  - {id: x, name: X, site: s, room: r}
`, want: "line 8: unknown key \"colour\" in sites[0].rooms[0].beds[0]\nline 10: unknown key \"room\" in residents[0]"},
		{name: "snake case only", in: "residents:\n  - {id: x, name: X, site: s, birthYear: 1940}\n",
			want: `line 2: unknown key "birthYear" in residents[0]`},
		{name: "wrong type", in: "residents:\n  - {id: x, name: X, site: s, birth_year: old}\n",
			want: "parse registry: yaml: unmarshal errors:\n  line 2: cannot unmarshal !!str `old` into int"},
		{name: "bad time", in: "bindings:\n  - {device: d, resident: r, from: yesterday}\n",
			want: `line 2: bindings[0].from: invalid time "yesterday" (want RFC 3339, for example 2026-01-01T08:00:00+08:00)`},
		{name: "null to is open", in: `sites: [{id: s, name: S, timezone: UTC}]
residents: [{id: a, name: A, site: s}]
devices: [{id: d, site: s, kind: other}]
bindings: [{device: d, resident: a, from: 2026-03-01T00:00:00Z, to: null}]
`, wantDoc: func(t *testing.T, d *registry.Document) {
			if d.Bindings[0].To != nil {
				t.Errorf("to = %v, want nil", d.Bindings[0].To)
			}
		}},
		{name: "syntax", in: "sites: [\n", want: "parse registry: yaml: line 1: did not find expected node content"},
		{name: "two documents", in: "sites: []\n---\nsites: []\n", want: "parse registry: line 2: more than one YAML document"},
		{name: "not a mapping", in: "- 1\n- 2\n", want: "parse registry: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into registry.Document"},
		{name: "merge key allowed", in: `sites:
  - &s {id: s, name: S, timezone: UTC}
residents:
  - {id: a, name: A, site: s}
devices:
  - &dev {id: d1, site: s, kind: other}
  - {<<: *dev, id: d2}
`, wantDoc: func(t *testing.T, d *registry.Document) {
			if len(d.Devices) != 2 || d.Devices[1].ID != "d2" || d.Devices[1].Kind != "other" {
				t.Errorf("devices = %+v", d.Devices)
			}
		}},
		{name: "merge key checked", in: "devices:\n  - {<<: {colour: red}, id: d}\n",
			want: `line 2: unknown key "colour" in devices[0]`},
		{name: "merge list checked", in: "devices:\n  - {<<: [{id: d}, {colour: red}]}\n",
			want: `line 2: unknown key "colour" in devices[0]`},
		{name: "date-only from is midnight UTC", in: `sites: [{id: s, name: S, timezone: UTC}]
residents: [{id: a, name: A, site: s}]
devices: [{id: d, site: s, kind: other}]
bindings: [{device: d, resident: a, from: 2026-03-01}]
`, wantDoc: func(t *testing.T, d *registry.Document) {
			if want := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC); !d.Bindings[0].From.Equal(want) {
				t.Errorf("from = %v, want %v", d.Bindings[0].From, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := registry.ParseYAML(strings.NewReader(tt.in))
			if tt.want != "" {
				if err == nil {
					t.Fatalf("ParseYAML succeeded, want error %q", tt.want)
				}
				if err.Error() != tt.want {
					t.Fatalf("error:\n%s\nwant:\n%s", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseYAML: %v", err)
			}
			if tt.wantDoc != nil {
				tt.wantDoc(t, doc)
			}
		})
	}
}

// baseDoc returns a small valid document that each validation case breaks
// in exactly one way.
func baseDoc() *registry.Document {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &registry.Document{
		Sites: []registry.SiteSpec{
			{ID: "s1", Name: "Station", TimeZone: "Asia/Shanghai", Rooms: []registry.RoomSpec{
				{ID: "r1", Name: "Room 1", Beds: []registry.BedSpec{{ID: "b1"}, {ID: "b2"}}},
			}},
			{ID: "s2", Name: "Home", TimeZone: "Europe/Berlin", Rooms: []registry.RoomSpec{
				{ID: "r2", Beds: []registry.BedSpec{{ID: "b3"}}},
			}},
		},
		Residents: []registry.Resident{
			{ID: "res1", SiteID: "s1", BedID: "b1", Name: "A", BirthYear: 1940},
			{ID: "res2", SiteID: "s1", Name: "B"},
			{ID: "res3", SiteID: "s2", Name: "C"},
		},
		Devices: []registry.Device{
			{ID: "gw1", SiteID: "s1", Kind: registry.KindGateway},
			{ID: "vm1", SiteID: "s1", Kind: registry.KindVitalsMonitor, BedID: "b1", GatewayID: "gw1"},
			{ID: "gw2", SiteID: "s2", Kind: registry.KindGateway},
		},
		Cards:    []registry.MealCard{{ID: "C1", ResidentID: "res1"}},
		Bindings: []registry.Binding{{DeviceID: "vm1", ResidentID: "res1", From: from, To: ptr(from.Add(24 * time.Hour))}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name   string
		mutate func(d *registry.Document)
		want   string // exact text of errors.Join; "" = valid
	}{
		{name: "valid", mutate: func(d *registry.Document) {}},
		{name: "site id required", mutate: func(d *registry.Document) { d.Sites[0].ID = "" },
			want: "sites[0].id: required\nresidents[0].site: unknown site \"s1\"\nresidents[1].site: unknown site \"s1\"\ndevices[0].site: unknown site \"s1\"\ndevices[1].site: unknown site \"s1\""},
		{name: "site id with slash", mutate: func(d *registry.Document) {
			d.Sites[1].ID = "a/b"
			d.Residents[2].SiteID = "a/b"
			d.Devices[2].SiteID = "a/b"
		},
			want: `sites[1].id: invalid id "a/b": no spaces, control characters, '/', '+' or '#'`},
		{name: "invalid id does not cascade", mutate: func(d *registry.Document) {
			d.Residents[0].ID = "res#1"
			d.Cards[0].ResidentID = "res#1"
			d.Bindings[0].ResidentID = "res#1"
		}, want: `residents[0].id: invalid id "res#1": no spaces, control characters, '/', '+' or '#'`},
		{name: "id too long", mutate: func(d *registry.Document) { d.Cards[0].ID = strings.Repeat("x", 129) },
			want: `cards[0].id: id "` + strings.Repeat("x", 129) + `" longer than 128 bytes`},
		{name: "duplicate site", mutate: func(d *registry.Document) { d.Sites[1].ID = "s1" },
			want: "sites[1].id: duplicate id \"s1\" (first at sites[0].id)\nresidents[2].site: unknown site \"s2\"\ndevices[2].site: unknown site \"s2\""},
		{name: "site name required", mutate: func(d *registry.Document) { d.Sites[0].Name = " " },
			want: "sites[0].name: required"},
		{name: "timezone typo", mutate: func(d *registry.Document) { d.Sites[0].TimeZone = "Asia/Shangai" },
			want: `sites[0].timezone: unknown IANA zone "Asia/Shangai"`},
		{name: "timezone Local", mutate: func(d *registry.Document) { d.Sites[0].TimeZone = "Local" },
			want: `sites[0].timezone: unknown IANA zone "Local"`},
		{name: "timezone required", mutate: func(d *registry.Document) { d.Sites[1].TimeZone = "" },
			want: "sites[1].timezone: required"},
		{name: "duplicate room across sites", mutate: func(d *registry.Document) { d.Sites[1].Rooms[0].ID = "r1" },
			want: `sites[1].rooms[0].id: duplicate id "r1" (first at sites[0].rooms[0].id)`},
		{name: "duplicate bed", mutate: func(d *registry.Document) { d.Sites[0].Rooms[0].Beds[1].ID = "b1" },
			want: `sites[0].rooms[0].beds[1].id: duplicate id "b1" (first at sites[0].rooms[0].beds[0].id)`},
		{name: "duplicate resident", mutate: func(d *registry.Document) { d.Residents[1].ID = "res1" },
			want: `residents[1].id: duplicate id "res1" (first at residents[0].id)`},
		{name: "resident name required", mutate: func(d *registry.Document) { d.Residents[1].Name = "" },
			want: "residents[1].name: required"},
		{name: "resident site required", mutate: func(d *registry.Document) { d.Residents[1].SiteID = "" },
			want: "residents[1].site: required"},
		{name: "resident unknown site", mutate: func(d *registry.Document) { d.Residents[1].SiteID = "s9" },
			want: `residents[1].site: unknown site "s9"`},
		{name: "resident unknown bed", mutate: func(d *registry.Document) { d.Residents[1].BedID = "b9" },
			want: `residents[1].bed: unknown bed "b9"`},
		{name: "resident bed on another site", mutate: func(d *registry.Document) { d.Residents[1].BedID = "b3" },
			want: `residents[1].bed: bed "b3" is on site "s2", not "s1"`},
		{name: "bed held twice", mutate: func(d *registry.Document) { d.Residents[1].BedID = "b1" },
			want: `residents[1].bed: bed "b1" already assigned to residents[0] ("res1")`},
		{name: "birth year too early", mutate: func(d *registry.Document) { d.Residents[0].BirthYear = 1800 },
			want: "residents[0].birth_year: 1800 is before 1880"},
		{name: "birth year in the future", mutate: func(d *registry.Document) { d.Residents[0].BirthYear = 3000 },
			want: "residents[0].birth_year: 3000 is in the future"},
		{name: "device kind required", mutate: func(d *registry.Document) { d.Devices[1].Kind = "" },
			want: "devices[1].kind: required"},
		{name: "device kind unknown", mutate: func(d *registry.Document) { d.Devices[1].Kind = "toaster" },
			want: `devices[1].kind: unknown kind "toaster" (want one of vitals_monitor, fall_detector, bed_sensor, sos_button, meal_terminal, gateway, env_sensor, other, smoke_alarm, gas_alarm, water_leak_sensor, contact_sensor, motion_sensor, call_button, smart_mattress, siren, valve, pill_box, locator, card_reader)`},
		{name: "duplicate device", mutate: func(d *registry.Document) { d.Devices[2].ID = "gw1"; d.Devices[2].SiteID = "s1" },
			want: `devices[2].id: duplicate id "gw1" (first at devices[0].id)`},
		{name: "device site required", mutate: func(d *registry.Document) { d.Devices[2].SiteID = "" },
			want: "devices[2].site: required"},
		{name: "device unknown bed", mutate: func(d *registry.Document) { d.Devices[1].BedID = "b9" },
			want: `devices[1].bed: unknown bed "b9"`},
		{name: "device bed on another site", mutate: func(d *registry.Document) { d.Devices[1].BedID = "b3" },
			want: `devices[1].bed: bed "b3" is on site "s2", not "s1"`},
		{name: "unknown gateway", mutate: func(d *registry.Document) { d.Devices[1].GatewayID = "gw9" },
			want: `devices[1].gateway: unknown device "gw9"`},
		{name: "gateway is not a gateway", mutate: func(d *registry.Document) { d.Devices[0].GatewayID = "vm1" },
			want: `devices[0].gateway: device "vm1" is a vitals_monitor, not a gateway`},
		{name: "own gateway", mutate: func(d *registry.Document) { d.Devices[0].GatewayID = "gw1" },
			want: `devices[0].gateway: device "gw1" cannot be its own gateway`},
		{name: "gateway on another site", mutate: func(d *registry.Document) { d.Devices[1].GatewayID = "gw2" },
			want: `devices[1].gateway: gateway "gw2" is on site "s2", not "s1"`},
		{name: "duplicate card", mutate: func(d *registry.Document) {
			d.Cards = append(d.Cards, registry.MealCard{ID: "C1", ResidentID: "res2"})
		}, want: `cards[1].id: duplicate id "C1" (first at cards[0].id)`},
		{name: "card resident required", mutate: func(d *registry.Document) { d.Cards[0].ResidentID = "" },
			want: "cards[0].resident: required"},
		{name: "card unknown resident", mutate: func(d *registry.Document) { d.Cards[0].ResidentID = "res9" },
			want: `cards[0].resident: unknown resident "res9"`},
		{name: "binding unknown device", mutate: func(d *registry.Document) { d.Bindings[0].DeviceID = "vm9" },
			want: `bindings[0].device: unknown device "vm9"`},
		{name: "binding device required", mutate: func(d *registry.Document) { d.Bindings[0].DeviceID = "" },
			want: "bindings[0].device: required"},
		{name: "binding unknown resident", mutate: func(d *registry.Document) { d.Bindings[0].ResidentID = "res9" },
			want: `bindings[0].resident: unknown resident "res9"`},
		{name: "binding resident required", mutate: func(d *registry.Document) { d.Bindings[0].ResidentID = "" },
			want: "bindings[0].resident: required"},
		{name: "binding across sites", mutate: func(d *registry.Document) { d.Bindings[0].ResidentID = "res3" },
			want: `bindings[0].resident: resident "res3" is on site "s2", device "vm1" on site "s1"`},
		{name: "binding from required", mutate: func(d *registry.Document) { d.Bindings[0].From = time.Time{} },
			want: "bindings[0].from: required"},
		{name: "binding to not after from", mutate: func(d *registry.Document) { d.Bindings[0].To = ptr(day(1)) },
			want: "bindings[0].to: 2026-01-01T00:00:00Z is not after from 2026-01-01T00:00:00Z"},
		{name: "binding adjacent is fine", mutate: func(d *registry.Document) {
			d.Bindings = append(d.Bindings, registry.Binding{DeviceID: "vm1", ResidentID: "res2", From: day(2)})
		}},
		{name: "binding overlap", mutate: func(d *registry.Document) {
			d.Bindings = append(d.Bindings, registry.Binding{DeviceID: "vm1", ResidentID: "res2", From: day(1).Add(time.Hour)})
		}, want: `bindings[1]: overlaps bindings[0] for device "vm1"`},
		{name: "binding same from", mutate: func(d *registry.Document) {
			d.Bindings = append(d.Bindings, registry.Binding{DeviceID: "vm1", ResidentID: "res1", From: day(1)})
		}, want: `bindings[1]: overlaps bindings[0] for device "vm1"`},
		{name: "two open bindings", mutate: func(d *registry.Document) {
			d.Bindings[0].To = nil
			d.Bindings = append(d.Bindings, registry.Binding{DeviceID: "vm1", ResidentID: "res2", From: day(5)})
		}, want: `bindings[1]: overlaps bindings[0] for device "vm1"`},
		{name: "open binding before a closed one", mutate: func(d *registry.Document) {
			d.Bindings = append([]registry.Binding{{DeviceID: "vm1", ResidentID: "res2", From: day(1).Add(-time.Hour)}}, d.Bindings...)
		}, want: `bindings[1]: overlaps bindings[0] for device "vm1"`},
		{name: "many problems are all reported", mutate: func(d *registry.Document) {
			d.Sites[0].TimeZone = "Mars/Olympus"
			d.Residents[2].BedID = "b9"
			d.Devices[1].Kind = ""
		}, want: "sites[0].timezone: unknown IANA zone \"Mars/Olympus\"\nresidents[2].bed: unknown bed \"b9\"\ndevices[1].kind: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := baseDoc()
			tt.mutate(d)
			err := d.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// TestParseYAMLValidates checks that ParseYAML runs Validate and that each
// problem is a separate joined error.
func TestParseYAMLValidates(t *testing.T) {
	_, err := registry.ParseYAML(strings.NewReader(`sites:
  - {id: s, name: S, timezone: Asia/Shangai}
residents:
  - {id: a, name: A, site: s, bed: b9}
`))
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("error = %v, want 2 joined errors", err)
	}
	if got, want := err.Error(), "sites[0].timezone: unknown IANA zone \"Asia/Shangai\"\nresidents[0].bed: unknown bed \"b9\""; got != want {
		t.Errorf("error:\n%s\nwant:\n%s", got, want)
	}
}

// TestNames: display names are valid UTF-8, without control characters, at
// most MaxNameLen characters; rooms, beds and devices may leave them out.
func TestNames(t *testing.T) {
	doc := func(room, bed, res string) string {
		return "sites:\n  - id: s\n    name: S\n    timezone: UTC\n    rooms:\n      - id: r\n        name: " + room +
			"\n        beds:\n          - {id: b, name: " + bed + "}\nresidents:\n  - {id: a, name: " + res + ", site: s, bed: b}\n"
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"fine", doc(`"Room 1"`, `"床 1"`, `"王秀英"`), ""},
		{"control character", doc(`"a\x01b"`, `"B"`, `"A"`), "sites[0].rooms[0].name: contains a control character"},
		{"escape sequence", doc(`"R"`, `"\e[31mred"`, `"A"`), "sites[0].rooms[0].beds[0].name: contains a control character"},
		{"too long", doc(`"R"`, `"B"`, `"`+strings.Repeat("x", 101)+`"`), "residents[0].name: longer than 100 characters"},
		{"right-to-left override", doc(`"R"`, `"B"`, `"Wang \u202Egnaw"`), "residents[0].name: contains an invisible direction or line control (U+202E)"},
		{"direction isolate", doc(`"R\u2066x"`, `"B"`, `"A"`), "sites[0].rooms[0].name: contains an invisible direction or line control (U+2066)"},
		{"line separator", doc(`"R"`, `"B\u2028"`, `"A"`), "sites[0].rooms[0].beds[0].name: contains an invisible direction or line control (U+2028)"},
		{"right-to-left mark", doc(`"R"`, `"B"`, `"\u200Fשרה"`), ""},
		{"resident blank", doc(`"R"`, `"B"`, `" "`), "residents[0].name: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := registry.ParseYAML(strings.NewReader(tc.yaml))
			if err == nil {
				err = d.Validate()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
