package registry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
)

const wardsYAML = `
sites:
  - id: s1
    name: Station
    timezone: Asia/Shanghai
    rooms:
      - id: r101
        name: Room 101
        ward: east
        names: {zh-CN: "101 室"}
        beds: [{id: b1, name: Bed 1}]
residents:
  - id: res-1
    site: s1
    bed: b1
    name: Li Xiuying
    names: {zh-CN: 李秀英}
devices:
  - id: fall-1
    site: s1
    kind: fall_detector
    bed: b1
    names: {zh-CN: 跌倒报警器, en: Fall sensor}
`

// TestWardsAndNames: a room's ward and the per-language display names of
// rooms, residents and devices survive the YAML import on both databases,
// and DisplayName falls back to the plain name.
func TestWardsAndNames(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		mustImport(t, s, wardsYAML)
		rooms, err := s.Rooms(ctx, "s1")
		if err != nil || len(rooms) != 1 {
			t.Fatalf("rooms %v, %v", rooms, err)
		}
		if rooms[0].Ward != "east" || registry.DisplayName(rooms[0].Names, "zh-CN", rooms[0].Name) != "101 室" {
			t.Errorf("room %+v", rooms[0])
		}
		r, err := s.Resident(ctx, "res-1")
		if err != nil {
			t.Fatal(err)
		}
		if got := registry.DisplayName(r.Names, "zh-CN", r.Name); got != "李秀英" {
			t.Errorf("zh-CN name %q", got)
		}
		if got := registry.DisplayName(r.Names, "en", r.Name); got != "Li Xiuying" {
			t.Errorf("en name %q (want the plain name)", got)
		}
		d, err := s.Device(ctx, "fall-1")
		if err != nil {
			t.Fatal(err)
		}
		if d.Names["en"] != "Fall sensor" || d.Names["zh-CN"] != "跌倒报警器" {
			t.Errorf("device names %v", d.Names)
		}
		sn, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rm, ok := sn.Room("r101"); !ok || rm.Ward != "east" || rm.Names["zh-CN"] != "101 室" {
			t.Errorf("snapshot room %+v, %v", rm, ok)
		}
	})
}

// TestNamesRefused: a bad language tag, a blank name and an over-long ward
// are refused with their path.
func TestNamesRefused(t *testing.T) {
	bad := strings.NewReplacer(`ward: east`, `ward: "`+strings.Repeat("w", 41)+`"`,
		`{zh-CN: 李秀英}`, `{"not a tag!": 李秀英}`,
		`{zh-CN: 跌倒报警器, en: Fall sensor}`, `{zh-CN: "  "}`).Replace(wardsYAML)
	_, err := registry.ParseYAML(strings.NewReader(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`sites[0].rooms[0].ward: longer than 40 characters`,
		`residents[0].names: "not a tag!" is not a language tag`,
		`devices[0].names.zh-CN: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}
