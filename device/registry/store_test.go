package registry_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// forEachStore runs fn against a fresh, migrated Store on SQLite (in
// t.TempDir()) and on PostgreSQL (in a schema of its own).
func forEachStore(t *testing.T, fn func(t *testing.T, s *registry.Store)) {
	t.Helper()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := registry.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, s)
	})
}

// mustImport parses the registry YAML text and imports it into s.
func mustImport(t *testing.T, s *registry.Store, text string) {
	t.Helper()
	doc, err := registry.ParseYAML(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Import(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
}

// dump is everything a Store holds, for comparisons.
type dump struct {
	Sites     []registry.Site
	Rooms     []registry.Room
	Beds      []registry.Bed
	Residents []registry.Resident
	Devices   []registry.Device
	Cards     []registry.MealCard
	Bindings  []registry.Binding
}

func dumpStore(t *testing.T, s *registry.Store) dump {
	t.Helper()
	ctx := context.Background()
	var d dump
	var err error
	check := func(e error) {
		t.Helper()
		if e != nil && err == nil {
			err = e
		}
	}
	d.Sites, err = s.Sites(ctx)
	var e error
	d.Rooms, e = s.Rooms(ctx, "")
	check(e)
	d.Beds, e = s.Beds(ctx, "")
	check(e)
	d.Residents, e = s.Residents(ctx, "")
	check(e)
	d.Devices, e = s.Devices(ctx, "")
	check(e)
	d.Cards, e = s.Cards(ctx)
	check(e)
	d.Bindings, e = s.Bindings(ctx, "")
	check(e)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustDemo(t *testing.T) *registry.Document {
	t.Helper()
	doc, err := parseFile(t, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestStoreImport(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		doc := mustDemo(t)
		if err := s.Import(ctx, doc); err != nil {
			t.Fatalf("Import: %v", err)
		}
		first := dumpStore(t, s)

		t.Run("contents", func(t *testing.T) {
			if got, want := first.Sites, []registry.Site{
				{ID: "demo-station", Name: "Sunshine Community Care Station", TimeZone: "Asia/Shanghai"},
				{ID: "home-li", Name: "Li family home", TimeZone: "Europe/Berlin"},
			}; !reflect.DeepEqual(got, want) {
				t.Errorf("Sites = %+v, want %+v", got, want)
			}
			if got, want := first.Beds, doc.BedList(); !reflect.DeepEqual(got, want) {
				t.Errorf("Beds = %+v, want %+v", got, want)
			}
			if got, want := first.Rooms, doc.RoomList(); !reflect.DeepEqual(got, want) {
				t.Errorf("Rooms = %+v, want %+v", got, want)
			}
			if got, want := first.Residents, doc.Residents; !reflect.DeepEqual(got, want) {
				t.Errorf("Residents = %+v, want %+v", got, want)
			}
			if len(first.Devices) != len(doc.Devices) || len(first.Cards) != len(doc.Cards) || len(first.Bindings) != len(doc.Bindings) {
				t.Errorf("counts: devices %d cards %d bindings %d", len(first.Devices), len(first.Cards), len(first.Bindings))
			}
			vm, err := s.Device(ctx, "vm-101")
			if err != nil {
				t.Fatal(err)
			}
			if want := (registry.Device{ID: "vm-101", SiteID: "demo-station", Kind: "vitals_monitor", Name: "Vitals monitor 101-1", BedID: "b101-1", GatewayID: "gw-station"}); !reflect.DeepEqual(vm, want) {
				t.Errorf("Device(vm-101) = %+v, want %+v", vm, want)
			}
			bs, err := s.Bindings(ctx, "vm-101")
			if err != nil {
				t.Fatal(err)
			}
			want := []registry.Binding{
				{DeviceID: "vm-101", ResidentID: "res-002", From: utc("2025-12-01T00:00:00Z"), To: ptr(utc("2026-01-01T00:00:00Z"))},
				{DeviceID: "vm-101", ResidentID: "res-001", From: utc("2026-01-01T00:00:00Z")},
			}
			if !reflect.DeepEqual(bs, want) {
				t.Errorf("Bindings(vm-101) = %+v, want %+v", bs, want)
			}
			res, err := s.Residents(ctx, "home-li")
			if err != nil || len(res) != 1 || res[0].ID != "res-003" || res[0].BedID != "" {
				t.Errorf("Residents(home-li) = %+v, %v", res, err)
			}
			devs, err := s.Devices(ctx, "home-li")
			if err != nil || len(devs) != 2 {
				t.Errorf("Devices(home-li) = %+v, %v", devs, err)
			}
			beds, err := s.Beds(ctx, "home-li")
			if err != nil || len(beds) != 0 {
				t.Errorf("Beds(home-li) = %+v, %v", beds, err)
			}
		})

		t.Run("idempotent", func(t *testing.T) {
			if err := s.Import(ctx, mustDemo(t)); err != nil {
				t.Fatalf("second Import: %v", err)
			}
			if again := dumpStore(t, s); !reflect.DeepEqual(again, first) {
				t.Errorf("second import changed the store:\n%+v\nwas\n%+v", again, first)
			}
		})

		t.Run("update in place", func(t *testing.T) {
			doc := mustDemo(t)
			doc.Residents[1].Name = "Zhang Wei (Sr.)"
			doc.Residents[1].BedID = ""
			doc.Bindings[0].ResidentID = "res-001" // same device and from: updated
			doc.Bindings[0].To = ptr(utc("2025-12-15T00:00:00Z"))
			if err := s.Import(ctx, doc); err != nil {
				t.Fatal(err)
			}
			r, err := s.Resident(ctx, "res-002")
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != "Zhang Wei (Sr.)" || r.BedID != "" {
				t.Errorf("Resident(res-002) = %+v", r)
			}
			bs, _ := s.Bindings(ctx, "vm-101")
			if len(bs) != 2 || bs[0].ResidentID != "res-001" || !bs[0].To.Equal(utc("2025-12-15T00:00:00Z")) {
				t.Errorf("Bindings(vm-101) = %+v", bs)
			}
		})

		t.Run("overlap with stored binding rolls back", func(t *testing.T) {
			before := dumpStore(t, s)
			doc := mustDemo(t)
			doc.Residents[0].Name = "must not be written"
			// vm-101 is open from 2026-01-01 in the store; this closed
			// binding at another from overlaps it.
			doc.Bindings[1] = registry.Binding{DeviceID: "vm-101", ResidentID: "res-002",
				From: utc("2026-02-01T00:00:00Z"), To: ptr(utc("2026-03-01T00:00:00Z"))}
			err := s.Import(ctx, doc)
			if !errors.Is(err, registry.ErrOverlap) {
				t.Fatalf("Import error = %v, want ErrOverlap", err)
			}
			if after := dumpStore(t, s); !reflect.DeepEqual(after, before) {
				t.Errorf("failed import changed the store")
			}
		})

		t.Run("invalid document", func(t *testing.T) {
			doc := mustDemo(t)
			doc.Devices[0].Kind = "toaster"
			err := s.Import(ctx, doc)
			if err == nil || !strings.Contains(err.Error(), `devices[0].kind: unknown kind "toaster"`) {
				t.Errorf("Import error = %v", err)
			}
		})
	})
}

func TestStoreNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		tests := []struct {
			name string
			call func() error
			want string
		}{
			{"site", func() error { _, err := s.Site(ctx, "nope"); return err }, `site "nope": not found`},
			{"resident", func() error { _, err := s.Resident(ctx, "nope"); return err }, `resident "nope": not found`},
			{"device", func() error { _, err := s.Device(ctx, "nope"); return err }, `device "nope": not found`},
			{"bind device", func() error { return s.Bind(ctx, "nope", "r", time.Now()) },
				`bind device "nope" to resident "r": device "nope": not found`},
			{"unbind", func() error { return s.Unbind(ctx, "nope", time.Now()) },
				`unbind device "nope": open binding of device "nope": not found`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("error = %v, want ErrNotFound", err)
				}
				if err.Error() != tt.want {
					t.Errorf("error = %q, want %q", err, tt.want)
				}
			})
		}
		if xs, err := s.Sites(ctx); err != nil || len(xs) != 0 {
			t.Errorf("Sites on empty store = %v, %v", xs, err)
		}
	})
}

// TestBindingTimes checks the [From, To) semantics end to end: written with
// Bind and Unbind, read back through a Snapshot.
func TestBindingTimes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		doc := mustDemo(t)
		doc.Bindings = nil
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		t0 := utc("2026-03-01T08:00:00Z")
		t1 := t0.Add(2 * time.Hour)
		t2 := t1.Add(3 * time.Hour)
		steps := []struct {
			name string
			op   func() error
		}{
			{"bind res-001 at t0", func() error { return s.Bind(ctx, "vm-101", "res-001", t0) }},
			{"bind again is a no-op", func() error { return s.Bind(ctx, "vm-101", "res-001", t0.Add(time.Minute)) }},
			{"rebind to res-002 at t1", func() error { return s.Bind(ctx, "vm-101", "res-002", t1) }},
			{"unbind at t2", func() error { return s.Unbind(ctx, "vm-101", t2) }},
		}
		for _, st := range steps {
			if err := st.op(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		sn, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			at   time.Time
			want string // resident id, "" = unbound
		}{
			{"before from", t0.Add(-time.Millisecond), ""},
			{"at from", t0, "res-001"},
			{"inside", t0.Add(time.Hour), "res-001"},
			{"last ms before to", t1.Add(-time.Millisecond), "res-001"},
			{"at to is exclusive, rebind starts", t1, "res-002"},
			{"inside rebind", t1.Add(time.Hour), "res-002"},
			{"at unbind", t2, ""},
			{"after unbind", t2.Add(24 * time.Hour), ""},
			{"sub-ms before from rounds to from's ms", t0.Add(500 * time.Microsecond), "res-001"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, ok := sn.ResidentAt("vm-101", tt.at)
				if got := map[bool]string{true: r.ID, false: ""}[ok]; got != tt.want {
					t.Errorf("ResidentAt(%s) = %q, want %q", tt.at.Format(time.RFC3339Nano), got, tt.want)
				}
			})
		}

		t.Run("open ended", func(t *testing.T) {
			t3 := t2.Add(time.Hour)
			if err := s.Bind(ctx, "vm-101", "res-001", t3); err != nil {
				t.Fatal(err)
			}
			sn, err := s.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []time.Time{t3, t3.AddDate(10, 0, 0)} {
				if r, ok := sn.ResidentAt("vm-101", at); !ok || r.ID != "res-001" {
					t.Errorf("ResidentAt(%v) = %v, %v; want res-001", at, r.ID, ok)
				}
			}
			if _, ok := sn.ResidentAt("vm-101", t2.Add(time.Minute)); ok {
				t.Errorf("gap between bindings is bound")
			}
			bs, _ := s.Bindings(ctx, "vm-101")
			if len(bs) != 3 || bs[2].To != nil || !bs[1].To.Equal(t2) || !bs[0].To.Equal(t1) {
				t.Errorf("Bindings = %+v", bs)
			}
		})

		t.Run("rebind at the same from replaces the resident", func(t *testing.T) {
			t4 := t2.Add(2 * time.Hour)
			if err := s.Bind(ctx, "vm-101", "res-002", t4); err != nil {
				t.Fatal(err)
			}
			if err := s.Bind(ctx, "vm-101", "res-001", t4); err != nil {
				t.Fatal(err)
			}
			bs, _ := s.Bindings(ctx, "vm-101")
			last := bs[len(bs)-1]
			if len(bs) != 4 || last.ResidentID != "res-001" || !last.From.Equal(t4) || last.To != nil {
				t.Errorf("Bindings = %+v", bs)
			}
		})

		t.Run("errors", func(t *testing.T) {
			tests := []struct {
				name string
				err  error
				is   error
				want string
			}{
				{"bind before the open binding", s.Bind(ctx, "vm-101", "res-002", t0.Add(-time.Hour)), registry.ErrOverlap, ""},
				{"bind a device with no bindings", s.Bind(ctx, "bs-101-2", "res-002", t0), nil, ""},
				{"bind unknown resident", s.Bind(ctx, "vm-101", "res-404", t2), registry.ErrNotFound, `resident "res-404": not found`},
				{"bind across sites", s.Bind(ctx, "fd-li", "res-001", t2), nil, `device is on site "home-li", resident on site "demo-station"`},
				{"unbind before from", s.Unbind(ctx, "vm-101", t0), nil, "is not after the binding's start"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if tt.is == nil && tt.want == "" {
						if tt.err != nil {
							t.Fatalf("error = %v, want success", tt.err)
						}
						return
					}
					if tt.err == nil {
						t.Fatal("succeeded, want error")
					}
					if tt.is != nil && !errors.Is(tt.err, tt.is) {
						t.Errorf("error = %v, want %v", tt.err, tt.is)
					}
					if !strings.Contains(tt.err.Error(), tt.want) {
						t.Errorf("error = %v, want it to contain %q", tt.err, tt.want)
					}
				})
			}
			// bs-101-2 is now open from t0; a closed binding that ends
			// after a new from is an overlap too.
			if err := s.Unbind(ctx, "bs-101-2", t1); err != nil {
				t.Fatal(err)
			}
			if err := s.Bind(ctx, "bs-101-2", "res-001", t0.Add(time.Minute)); !errors.Is(err, registry.ErrOverlap) {
				t.Errorf("Bind inside closed binding: %v, want ErrOverlap", err)
			}
		})
	})
}

func TestSnapshotLookups(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		if err := s.Import(ctx, mustDemo(t)); err != nil {
			t.Fatal(err)
		}
		sn, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		at := utc("2026-06-01T00:00:00Z")
		if r, ok := sn.ResidentAt("vm-101", at); !ok || r.ID != "res-001" || !r.Vulnerable {
			t.Errorf("ResidentAt(vm-101) = %+v, %v", r, ok)
		}
		if r, ok := sn.ResidentAt("vm-101", utc("2025-12-24T00:00:00Z")); !ok || r.ID != "res-002" {
			t.Errorf("ResidentAt(vm-101, Christmas) = %+v, %v", r, ok)
		}
		if _, ok := sn.ResidentAt("mt-1", at); ok {
			t.Errorf("unbound device has a resident")
		}
		if _, ok := sn.ResidentAt("nope", at); ok {
			t.Errorf("unknown device has a resident")
		}
		if d, ok := sn.Device("fd-li"); !ok || d.GatewayID != "gw-li" || d.Kind != registry.KindFallDetector {
			t.Errorf("Device(fd-li) = %+v, %v", d, ok)
		}
		if r, ok := sn.Resident("res-003"); !ok || r.SiteID != "home-li" {
			t.Errorf("Resident(res-003) = %+v, %v", r, ok)
		}
		if st, ok := sn.Site("demo-station"); !ok || st.TimeZone != "Asia/Shanghai" {
			t.Errorf("Site = %+v, %v", st, ok)
		}
		if loc := sn.Location("demo-station"); loc.String() != "Asia/Shanghai" {
			t.Errorf("Location = %v", loc)
		}
		if loc := sn.Location("nope"); loc != time.UTC {
			t.Errorf("Location(unknown) = %v, want UTC", loc)
		}
		if r, ok := sn.ResidentByCard("04D5E6F7", at); !ok || r.ID != "res-002" {
			t.Errorf("ResidentByCard = %+v, %v", r, ok)
		}
		if _, ok := sn.ResidentByCard("FFFFFFFF", at); ok {
			t.Errorf("unknown card has a resident")
		}
		if b, ok := sn.BedOf("res-001"); !ok || b.ID != "b101-1" || b.RoomID != "r101" || !b.Nursing {
			t.Errorf("BedOf(res-001) = %+v, %v", b, ok)
		}
		if _, ok := sn.BedOf("res-003"); ok {
			t.Errorf("home-care resident has a bed")
		}
	})
}

func TestCache(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := registry.NewCache(s, 10*time.Millisecond)
		if c.Current() == nil {
			t.Fatal("Current before refresh is nil")
		}
		if _, ok := c.Current().Device("vm-101"); ok {
			t.Fatal("empty cache knows a device")
		}
		if err := s.Import(ctx, mustDemo(t)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		testenv.EventuallyTrue(t, 5*time.Second, "first refresh", func() bool { _, ok := c.Current().Device("vm-101"); return ok })
		at := utc("2030-01-01T00:00:00Z")
		if err := s.Bind(ctx, "mt-1", "res-002", utc("2029-01-01T00:00:00Z")); err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyTrue(t, 5*time.Second, "periodic refresh", func() bool { r, ok := c.Current().ResidentAt("mt-1", at); return ok && r.ID == "res-002" })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}

func TestLoadFile(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		if err := registry.LoadFile(ctx, s, filepath.Join("testdata", "demo.yaml")); err != nil {
			t.Fatal(err)
		}
		if xs, err := s.Cards(ctx); err != nil || len(xs) != 2 {
			t.Errorf("Cards = %v, %v", xs, err)
		}
		err := registry.LoadFile(ctx, s, filepath.Join("testdata", "invalid.yaml"))
		if err == nil || !strings.HasPrefix(err.Error(), "load registry testdata/invalid.yaml: sites[0].timezone: unknown IANA zone") {
			t.Errorf("LoadFile(invalid) = %v", err)
		}
		if err := registry.LoadFile(ctx, s, "testdata/missing.yaml"); err == nil {
			t.Error("LoadFile(missing) succeeded")
		}
	})
}

// TestConcurrentWriters checks that writers serialize instead of failing
// (SQLite: _txlock=immediate and busy_timeout) and readers keep working.
func TestConcurrentWriters(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		doc := &registry.Document{
			Sites:     []registry.SiteSpec{{ID: "s", Name: "S", TimeZone: "UTC"}},
			Residents: []registry.Resident{{ID: "r", SiteID: "s", Name: "R"}},
		}
		const workers, rounds = 8, 10
		for i := range workers {
			doc.Devices = append(doc.Devices, registry.Device{ID: fmt.Sprintf("d%d", i), SiteID: "s", Kind: registry.KindOther})
		}
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		t0 := utc("2026-01-01T00:00:00Z")
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds*3)
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dev := fmt.Sprintf("d%d", i)
				for k := range rounds {
					at := t0.Add(time.Duration(k) * time.Hour)
					errs <- s.Bind(ctx, dev, "r", at)
					errs <- s.Unbind(ctx, dev, at.Add(time.Minute))
					_, err := s.Snapshot(ctx)
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		bs, err := s.Bindings(ctx, "")
		if err != nil || len(bs) != workers*rounds {
			t.Errorf("bindings = %d, %v; want %d", len(bs), err, workers*rounds)
		}
	})
}
