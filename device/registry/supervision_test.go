package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

const supervisionYAML = `
sites:
  - {id: s1, name: Site 1, timezone: Asia/Shanghai}
  - {id: s2, name: Site 2, timezone: Asia/Shanghai}
kinds:
  - {kind: env_sensor, report_interval: 2m}
devices:
  - {id: gw-1, site: s1, kind: gateway}
  - {id: vm-1, site: s1, kind: vitals_monitor, gateway: gw-1}
  - {id: sos-1, site: s1, kind: sos_button, power: battery, gateway: gw-1}
  - {id: plug-1, site: s1, kind: other, power: mains, gateway: gw-1}
  - {id: env-1, site: s1, kind: env_sensor, gateway: gw-1}
  - {id: env-2, site: s1, kind: env_sensor, report_interval: 45s}
  - {id: vm-2, site: s2, kind: vitals_monitor}
`

// TestReportIntervals checks the order device > kind setting > default, on
// both stores, and DevicesBehind.
func TestReportIntervals(t *testing.T) {
	doc, err := registry.ParseYAML(strings.NewReader(supervisionYAML))
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		sn, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			dev  string
			want time.Duration
		}{
			{"gw-1", device.GatewayInterval},
			{"vm-1", device.VitalsInterval},
			{"sos-1", 25 * time.Hour},
			{"plug-1", 10 * time.Minute},
			{"env-1", 2 * time.Minute},
			{"env-2", 45 * time.Second},
		} {
			got, ok := sn.ReportInterval(c.dev)
			if !ok || got != c.want {
				t.Errorf("ReportInterval(%s) = %s, %v; want %s", c.dev, got, ok, c.want)
			}
		}
		if _, ok := sn.ReportInterval("nope"); ok {
			t.Error("unknown device has an interval")
		}
		if got := strings.Join(sn.DevicesBehind("gw-1"), ","); got != "env-1,plug-1,sos-1,vm-1" {
			t.Errorf("DevicesBehind(gw-1) = %s", got)
		}
		dev, err := s.Device(ctx, "sos-1")
		if err != nil || dev.Power != "battery" {
			t.Errorf("device sos-1 = %+v, %v", dev, err)
		}
		ks, err := s.KindSettings(ctx)
		if err != nil || len(ks) != 1 || ks[0].ReportInterval != 2*time.Minute {
			t.Errorf("KindSettings = %+v, %v", ks, err)
		}
		// Import again with a changed interval: updated in place.
		doc2 := *doc
		doc2.Devices = append([]registry.Device(nil), doc.Devices...)
		doc2.Devices[5].ReportInterval = time.Minute
		if err := s.Import(ctx, &doc2); err != nil {
			t.Fatal(err)
		}
		sn, _ = s.Snapshot(ctx)
		if got, _ := sn.ReportInterval("env-2"); got != time.Minute {
			t.Errorf("after re-import env-2 = %s, want 1m", got)
		}
	})
}

func TestSupervisionValidation(t *testing.T) {
	bad := `
sites: [{id: s1, name: S, timezone: UTC}]
kinds:
  - {kind: nope, report_interval: 1m}
  - {kind: gateway}
  - {kind: sos_button, report_interval: 1h}
  - {kind: sos_button, report_interval: 500ms}
devices:
  - {id: d1, site: s1, kind: other, power: solar, report_interval: 960h}
`
	_, err := registry.ParseYAML(strings.NewReader(bad))
	if err == nil {
		t.Fatal("invalid document accepted")
	}
	for _, want := range []string{
		`kinds[0].kind: unknown kind "nope"`,
		`kinds[1].report_interval: required`,
		`kinds[3].kind: kind "sos_button" set twice`,
		`kinds[3].report_interval: 500ms is shorter than 1s`,
		`devices[0].power: unknown power "solar"`,
		`devices[0].report_interval: 960h0m0s is longer than 744h0m0s`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
