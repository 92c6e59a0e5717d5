package registry_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// decodeResident decodes the resident keys y as a form would hand them
// over, without validating them.
func decodeResident(t *testing.T, y string) registry.Resident {
	t.Helper()
	var r registry.Resident
	if err := yaml.Unmarshal([]byte(y), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

const programmeYAML = `
sites:
  - id: home-1
    name: Home of Li
    timezone: Asia/Shanghai
    rooms:
      - id: home-1-r
        beds:
          - {id: home-1-bed, type: home_care}
  - id: station
    name: Station
    timezone: Europe/Berlin
    rooms:
      - id: st-r1
        beds:
          - {id: st-b1, nursing: true}
          - {id: st-b2}
residents:
  - id: li
    name: Li Guifang
    site: home-1
    bed: home-1-bed
    vulnerable: true
    visit_cadence_days: 14
    medication:
      - {time: "08:00", tolerance: 1h, medication: amlodipine 5 mg}
      - {time: "20:00", tolerance: 90m}
    safe_zones:   # the store returns zones by name and doses by time
      - name: day-park
        polygon: [{lat: 31.230, lon: 121.470}, {lat: 31.232, lon: 121.470}, {lat: 31.232, lon: 121.474}]
        from: "08:00"
        to: "18:00"
      - {name: home, center: {lat: 31.2304, lon: 121.4737}, radius_m: 150}
devices:
  - {id: gw-li, site: home-1, kind: gateway}
  - {id: valve-li, site: home-1, kind: valve, gateway: gw-li}
  - {id: fridge-1, site: station, kind: env_sensor, limits: [{field: appliance_temp_c, max: 8, sustain: 30m}]}
  - {id: co2-1, site: station, kind: env_sensor, limits: [{field: co2_ppm, max: 1500, sustain: 15m}]}
`

func TestProgrammeRoundTrip(t *testing.T) {
	doc, err := registry.ParseYAML(strings.NewReader(programmeYAML))
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		li, err := s.Resident(ctx, "li")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(li, doc.Residents[0]) {
			t.Errorf("resident read back\n%+v\nwant\n%+v", li, doc.Residents[0])
		}
		fridge, err := s.Device(ctx, "fridge-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(fridge.Limits) != 1 || *fridge.Limits[0].Max != 8 || fridge.Limits[0].Sustain != 30*time.Minute || fridge.Limits[0].Min != nil {
			t.Errorf("fridge limits %+v", fridge.Limits)
		}
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := snap.Resident("li"); len(r.SafeZones) != 2 || len(r.Medication) != 2 {
			t.Errorf("snapshot resident %+v", r)
		}
		if d, _ := snap.Device("co2-1"); len(d.Limits) != 1 {
			t.Errorf("snapshot device %+v", d)
		}
		beds, err := s.Beds(ctx, "station")
		if err != nil {
			t.Fatal(err)
		}
		if beds[0].Type != registry.BedNursing || !beds[0].Nursing || beds[1].Type != registry.BedOrdinary {
			t.Errorf("beds %+v", beds)
		}

		// Bed conversions keep their history.
		t1 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		if err := s.ChangeBedType(ctx, "st-b2", registry.BedNursing, "manager-wu", "fitted with a nursing bed and call system", t1); err != nil {
			t.Fatal(err)
		}
		if err := s.ChangeBedType(ctx, "home-1-bed", registry.BedHomeHospital, "dr-zhao", "home hospital admission", t1.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.ChangeBedType(ctx, "st-b2", registry.BedNursing, "manager-wu", "", t1.Add(2*time.Hour)); err == nil {
			t.Error("a change to the same type was accepted")
		}
		if err := s.ChangeBedType(ctx, "st-b9", registry.BedNursing, "manager-wu", "", t1); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("unknown bed: %v", err)
		}
		if err := s.ChangeBedType(ctx, "st-b2", "deluxe", "", "", t1); err == nil ||
			err.Error() != "bed.type: unknown bed type \"deluxe\" (want one of home_care, home_hospital, nursing, ordinary)\nbed.changed_by: required (who converts the bed)" {
			t.Errorf("bad change: %v", err)
		}
		hist, err := s.BedTypeHistory(ctx, "", t1, t1.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []registry.BedTypeChange{
			{BedID: "st-b2", At: t1, From: registry.BedOrdinary, To: registry.BedNursing, By: "manager-wu", Reason: "fitted with a nursing bed and call system"},
			{BedID: "home-1-bed", At: t1.Add(time.Hour), From: registry.BedHomeCare, To: registry.BedHomeHospital, By: "dr-zhao", Reason: "home hospital admission"},
		}
		if !reflect.DeepEqual(hist, want) {
			t.Errorf("history\n%+v\nwant\n%+v", hist, want)
		}
		if h, _ := s.BedTypeHistory(ctx, "st-b2", time.Time{}, time.Time{}); len(h) != 1 {
			t.Errorf("history of st-b2: %+v", h)
		}
		beds, _ = s.Beds(ctx, "station")
		if beds[1].Type != registry.BedNursing || !beds[1].Nursing {
			t.Errorf("st-b2 after conversion: %+v", beds[1])
		}
	})
}

// TestOneValidationPath: the YAML import and the store's PutResident (the
// admin form's path) refuse the same invalid resident with the same message
// after the path (residents[i] in a file, resident in a form).
func TestOneValidationPath(t *testing.T) {
	bad := []struct{ name, yaml, want string }{
		{"dose time", `medication: [{time: "25:00", tolerance: 1h}]`, `.medication[0].time: "25:00" is not a time of day HH:MM (00:00-23:59)`},
		{"dose tolerance", `medication: [{time: "08:00", tolerance: 24h}]`, `.medication[0].tolerance: 24h0m0s is outside 1m0s - 12h0m0s`},
		{"zone radius", `safe_zones: [{name: home, center: {lat: 31, lon: 121}, radius_m: 0}]`, `.safe_zones[0].radius_m: 0 is outside (0, 100000] m`},
		{"zone polygon", `safe_zones: [{name: park, polygon: [{lat: 31, lon: 121}, {lat: 31.1, lon: 121}]}]`, `.safe_zones[0].polygon: 2 vertices; a polygon needs at least 3`},
		{"zone hours", `safe_zones: [{name: home, center: {lat: 31, lon: 121}, radius_m: 50, from: "08:00"}]`, `.safe_zones[0]: from and to: give both or neither`},
		{"latitude", `safe_zones: [{name: home, center: {lat: 95, lon: 121}, radius_m: 50}]`, `.safe_zones[0].center.lat: 95 is outside [-90, 90] degrees`},
		{"cadence", `visit_cadence_days: 400`, `.visit_cadence_days: 400 is outside 0 (monthly) - 366 days`},
	}
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		base, err := registry.ParseYAML(strings.NewReader(programmeYAML))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Import(ctx, base); err != nil {
			t.Fatal(err)
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				y := "sites: [{id: s, name: S, timezone: UTC}]\nresidents:\n  - id: r\n    name: R\n    site: s\n    " + tc.yaml + "\n"
				_, yerr := registry.ParseYAML(strings.NewReader(y))
				if yerr == nil || yerr.Error() != "residents[0]"+tc.want {
					t.Errorf("YAML: %v\nwant residents[0]%s", yerr, tc.want)
				}
				// The same resident through the form's store call.
				r := decodeResident(t, tc.yaml)
				r.ID, r.Name, r.SiteID = "r", "R", "home-1"
				perr := s.PutResident(ctx, r)
				if perr == nil || perr.Error() != "resident"+tc.want {
					t.Errorf("PutResident: %v\nwant resident%s", perr, tc.want)
				}
				if _, err := s.Resident(ctx, "r"); !errors.Is(err, registry.ErrNotFound) {
					t.Errorf("a refused resident was written: %v", err)
				}
			})
		}
		// A valid resident through the form.
		ok := registry.Resident{ID: "zhang", Name: "Zhang Wei", SiteID: "home-1", Vulnerable: true,
			Medication: []registry.Dose{{Time: "07:30", Tolerance: 45 * time.Minute}}}
		if err := s.PutResident(ctx, ok); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Resident(ctx, "zhang"); err != nil || !reflect.DeepEqual(got, ok) {
			t.Errorf("PutResident read back %+v, %v", got, err)
		}
		if err := s.PutResident(ctx, registry.Resident{ID: "x", Name: "X", SiteID: "home-1", BedID: "home-1-bed"}); err == nil ||
			err.Error() != `resident.bed: bed "home-1-bed" already assigned to resident "li"` {
			t.Errorf("bed held by another: %v", err)
		}
	})
}

// TestOneValidationPathDevices: a device's kind, limits and references are
// refused by the YAML import and PutDevice with the same message.
func TestOneValidationPathDevices(t *testing.T) {
	bad := []struct{ name, yaml, want string }{
		{"kind", `kind: toaster`, `.kind: unknown kind "toaster" (want one of ` + strings.Join(registry.Kinds, ", ") + `)`},
		{"limit without bound", `limits: [{field: appliance_temp_c, sustain: 30m}]`, `.limits[0]: set min, max or both`},
		{"limit range", `limits: [{field: appliance_temp_c, max: 90}]`, `.limits[0]: 90 is outside the protocol's range of appliance_temp_c, [-60, 60] °C`},
		{"limit sustain", `limits: [{field: co2_ppm, max: 1500, sustain: 48h}]`, `.limits[0].sustain: 48h0m0s is outside 0 - 24h0m0s`},
		{"limit field", `limits: [{field: "CO2", max: 1500}]`, `.limits[0].field: "CO2" is not a reading field name (1-64 of [a-z0-9_], starting with a letter)`},
	}
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		base, err := registry.ParseYAML(strings.NewReader(programmeYAML))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Import(ctx, base); err != nil {
			t.Fatal(err)
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				kind := "kind: env_sensor\n"
				if strings.HasPrefix(tc.yaml, "kind:") {
					kind = ""
				}
				y := "sites: [{id: s, name: S, timezone: UTC}]\ndevices:\n  - id: d\n    site: s\n    " + strings.ReplaceAll(kind, "\n", "\n    ") + tc.yaml + "\n"
				_, yerr := registry.ParseYAML(strings.NewReader(y))
				if yerr == nil || yerr.Error() != "devices[0]"+tc.want {
					t.Errorf("YAML: %v\nwant devices[0]%s", yerr, tc.want)
				}
				var d registry.Device
				if err := yaml.Unmarshal([]byte(kind+tc.yaml), &d); err != nil {
					t.Fatal(err)
				}
				d.ID, d.SiteID = "d", "station"
				if perr := s.PutDevice(ctx, d); perr == nil || perr.Error() != "device"+tc.want {
					t.Errorf("PutDevice: %v\nwant device%s", perr, tc.want)
				}
				if _, err := s.Device(ctx, "d"); !errors.Is(err, registry.ErrNotFound) {
					t.Errorf("a refused device was written: %v", err)
				}
			})
		}
		max := 8.0
		ok := registry.Device{ID: "fridge-2", SiteID: "station", Kind: registry.KindEnvSensor, Name: "Cold store",
			Limits: []registry.Limit{{Field: "appliance_temp_c", Max: &max, Sustain: 20 * time.Minute}}}
		if err := s.PutDevice(ctx, ok); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Device(ctx, "fridge-2"); err != nil || !reflect.DeepEqual(got, ok) {
			t.Errorf("PutDevice read back %+v, %v", got, err)
		}
		if err := s.PutDevice(ctx, registry.Device{ID: "smoke-9", SiteID: "home-1", Kind: registry.KindSmokeAlarm, GatewayID: "valve-li"}); err == nil ||
			err.Error() != `device.gateway: device "valve-li" is a valve, not a gateway` {
			t.Errorf("gateway that is not a gateway: %v", err)
		}
	})
}
