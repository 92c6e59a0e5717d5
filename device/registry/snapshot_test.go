package registry_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func TestResidentAtNoStore(t *testing.T) {
	t0 := utc("2026-01-01T00:00:00Z")
	sn := registry.NewSnapshot(time.Now(),
		[]registry.Site{{ID: "s", Name: "S", TimeZone: "Asia/Shanghai"}},
		nil,
		[]registry.Resident{{ID: "a", SiteID: "s", Name: "A"}, {ID: "b", SiteID: "s", Name: "B"}},
		[]registry.Device{{ID: "d", SiteID: "s", Kind: registry.KindBedSensor}},
		nil,
		// Out of order on purpose: NewSnapshot sorts.
		[]registry.Binding{
			{DeviceID: "d", ResidentID: "b", From: t0.Add(2 * time.Hour)},
			{DeviceID: "d", ResidentID: "a", From: t0, To: ptr(t0.Add(time.Hour))},
			{DeviceID: "d", ResidentID: "ghost", From: t0.Add(-2 * time.Hour), To: ptr(t0.Add(-time.Hour))},
		})
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"before all", t0.Add(-3 * time.Hour), ""},
		{"binding to an unknown resident", t0.Add(-90 * time.Minute), ""},
		{"at from", t0, "a"},
		{"at to", t0.Add(time.Hour), ""},
		{"gap", t0.Add(90 * time.Minute), ""},
		{"open from", t0.Add(2 * time.Hour), "b"},
		{"far future", t0.AddDate(100, 0, 0), "b"},
		{"zero time", time.Time{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := sn.ResidentAt("d", tt.at)
			got := ""
			if ok {
				got = r.ID
			}
			if got != tt.want {
				t.Errorf("ResidentAt(%v) = %q, want %q", tt.at, got, tt.want)
			}
		})
	}
	var nilSnap *registry.Snapshot
	if _, ok := nilSnap.ResidentAt("d", t0); ok {
		t.Error("nil snapshot has a resident")
	}
	if nilSnap.Location("s") != time.UTC {
		t.Error("nil snapshot location is not UTC")
	}
}

// benchSnapshot builds a registry of n devices with k bindings each.
func benchSnapshot(n, k int) (*registry.Snapshot, time.Time) {
	t0 := utc("2026-01-01T00:00:00Z")
	var res []registry.Resident
	var devs []registry.Device
	var bs []registry.Binding
	for i := range n {
		id := fmt.Sprintf("d%05d", i)
		devs = append(devs, registry.Device{ID: id, SiteID: "s", Kind: registry.KindVitalsMonitor})
		for j := range k {
			rid := fmt.Sprintf("r%05d-%d", i, j)
			res = append(res, registry.Resident{ID: rid, SiteID: "s", Name: rid})
			from := t0.Add(time.Duration(j) * 24 * time.Hour)
			b := registry.Binding{DeviceID: id, ResidentID: rid, From: from}
			if j < k-1 {
				b.To = ptr(from.Add(24 * time.Hour))
			}
			bs = append(bs, b)
		}
	}
	return registry.NewSnapshot(time.Now(), []registry.Site{{ID: "s", Name: "S", TimeZone: "UTC"}}, nil, res, devs, nil, bs),
		t0.Add(time.Duration(k/2)*24*time.Hour + time.Hour)
}

// TestResidentAtAllocs pins the hot path at zero allocations.
func TestResidentAtAllocs(t *testing.T) {
	sn, at := benchSnapshot(100, 16)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := sn.ResidentAt("d00042", at); !ok {
			t.Fatal("not bound")
		}
		sn.Device("d00042")
		sn.Location("s")
	})
	if allocs != 0 {
		t.Errorf("ResidentAt allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkResidentAt(b *testing.B) {
	for _, size := range []struct{ devices, bindings int }{{100, 1}, {1000, 16}, {10000, 64}} {
		sn, at := benchSnapshot(size.devices, size.bindings)
		ids := make([]string, size.devices)
		for i := range ids {
			ids[i] = fmt.Sprintf("d%05d", i)
		}
		b.Run(fmt.Sprintf("devices=%d/bindings=%d", size.devices, size.bindings), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := sn.ResidentAt(ids[i%len(ids)], at); !ok {
					b.Fatal("not bound")
				}
				i++
			}
		})
	}
}

// ExampleParseYAML shows the registry file and the lookups ingest makes.
func ExampleParseYAML() {
	doc, err := registry.ParseYAML(strings.NewReader(`
sites:
  - id: demo-station
    name: Sunshine Community Care Station
    timezone: Asia/Shanghai
    rooms:
      - id: r101
        name: Room 101
        beds:
          - {id: b101-1, name: "Bed 1", nursing: true}
residents:
  - {id: res-001, name: "Wang Xiuying", site: demo-station, bed: b101-1, birth_year: 1938, vulnerable: true}
devices:
  - {id: vm-101, site: demo-station, kind: vitals_monitor, name: "Vitals monitor 101-1", bed: b101-1}
cards:
  - {id: "04A1B2C3", resident: res-001}
bindings:
  - {device: vm-101, resident: res-001, from: 2026-01-01T00:00:00Z}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	sn := registry.NewSnapshot(time.Now(), doc.SiteList(), doc.BedList(), doc.Residents, doc.Devices, doc.Cards, doc.Bindings)
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	r, _ := sn.ResidentAt("vm-101", at)
	bed, _ := sn.BedOf(r.ID)
	fmt.Println(r.Name, bed.Name, at.In(sn.Location(r.SiteID)).Format("15:04"))
	_, bound := sn.ResidentAt("vm-101", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC))
	fmt.Println("bound before from:", bound)
	// Output:
	// Wang Xiuying Bed 1 16:00
	// bound before from: false
}

// ExampleLoadFile loads a registry file into a SQLite store, moves a device
// to another resident and reads the result through a snapshot.
func ExampleLoadFile() {
	dir, err := os.MkdirTemp("", "registry-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, "eldercare.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	store, err := registry.Open(ctx, db)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := registry.LoadFile(ctx, store, "testdata/demo.yaml"); err != nil {
		fmt.Println(err)
		return
	}
	moved := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	if err := store.Bind(ctx, "vm-101", "res-002", moved); err != nil {
		fmt.Println(err)
		return
	}
	cache := registry.NewCache(store, time.Minute)
	if err := cache.Refresh(ctx); err != nil {
		fmt.Println(err)
		return
	}
	sn := cache.Current()
	for _, at := range []time.Time{moved.Add(-time.Millisecond), moved} {
		r, _ := sn.ResidentAt("vm-101", at)
		fmt.Println(at.Format(time.RFC3339Nano), r.ID)
	}
	// Output:
	// 2026-05-01T09:29:59.999Z res-001
	// 2026-05-01T09:30:00Z res-002
}

func TestCardHolders(t *testing.T) {
	sn := registry.NewSnapshot(time.Now(),
		[]registry.Site{{ID: "s", Name: "S", TimeZone: "UTC"}, {ID: "h", Name: "H", TimeZone: "UTC"}},
		nil,
		[]registry.Resident{{ID: "a", SiteID: "s", Name: "A"}, {ID: "b", SiteID: "h", Name: "B"}, {ID: "c", SiteID: "s", Name: "C"}},
		nil,
		[]registry.MealCard{{ID: "c1", ResidentID: "a"}, {ID: "c2", ResidentID: "b"}, {ID: "c3", ResidentID: "ghost"}},
		nil)
	got := sn.CardHolders()
	want := map[string]string{"a": "s", "b": "h"}
	if len(got) != len(want) || got["a"] != "s" || got["b"] != "h" {
		t.Fatalf("CardHolders = %v, want %v (c has no card; the ghost card's holder is unknown)", got, want)
	}
	var nilSnap *registry.Snapshot
	if len(nilSnap.CardHolders()) != 0 {
		t.Fatal("a nil snapshot has card holders")
	}
}
