package registry_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestAddDeviceOnce: AddDevice registers a new device once; a second add
// of the same id, sequential or concurrent, is refused on the id field and
// leaves the first one as it was (SQLite and PostgreSQL).
func TestAddDeviceOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		mustImport(t, s, adminBase)
		if err := s.AddDevice(ctx, registry.Device{ID: "env-1", SiteID: "st", Kind: registry.KindEnvSensor, Name: "Kitchen"}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"env-1", "fd-1"} {
			err := s.AddDevice(ctx, registry.Device{ID: id, SiteID: "st", Kind: registry.KindSmokeAlarm, Name: "Hall"})
			if fe := registry.FieldErrors(err); len(fe) != 1 || fe[0].Field != "id" || !strings.Contains(fe[0].Message, "registered already") {
				t.Errorf("second add of %s: %v", id, err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				errs[i] = s.AddDevice(ctx, registry.Device{ID: "race-1", SiteID: "st", Kind: registry.KindEnvSensor, Name: fmt.Sprint("n", i)})
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if fe := registry.FieldErrors(err); len(fe) != 1 || fe[0].Field != "id" {
				t.Errorf("concurrent add: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d concurrent adds succeeded, want 1: %v", ok, len(errs), errs)
		}
		if d, err := s.Device(ctx, "env-1"); err != nil || d.Kind != registry.KindEnvSensor || d.Name != "Kitchen" {
			t.Errorf("first device %+v %v", d, err)
		}
		if d, err := s.Device(ctx, "fd-1"); err != nil || d.Kind != registry.KindFallDetector || d.GatewayID != "gw-1" {
			t.Errorf("fd-1 changed: %+v %v", d, err)
		}
	})
}

// TestPutDeviceKeepsBindingOnSite: a device bound to a resident cannot be
// moved to another site (its alerts would be filed under a site that is
// not the resident's); once unbound it can.
func TestPutDeviceKeepsBindingOnSite(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		mustImport(t, s, adminBase)
		if err := s.PutSite(ctx, registry.Site{ID: "far", Name: "Far", TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutDevice(ctx, registry.Device{ID: "env-1", SiteID: "st", Kind: registry.KindEnvSensor}); err != nil {
			t.Fatal(err)
		}
		if err := s.Bind(ctx, "env-1", "res-1", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		err := s.PutDevice(ctx, registry.Device{ID: "env-1", SiteID: "far", Kind: registry.KindEnvSensor})
		if fe := registry.FieldErrors(err); len(fe) != 1 || fe[0].Field != "site" || !strings.Contains(fe[0].Message, `bound to resident "res-1" of site "st"`) {
			t.Errorf("move a bound device: %v", err)
		}
		if d, err := s.Device(ctx, "env-1"); err != nil || d.SiteID != "st" {
			t.Errorf("device %+v %v", d, err)
		}
		if err := s.PutDevice(ctx, registry.Device{ID: "env-1", SiteID: "st", Kind: registry.KindEnvSensor, Name: "renamed"}); err != nil {
			t.Errorf("edit on its own site: %v", err)
		}
		if err := s.Unbind(ctx, "env-1", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutDevice(ctx, registry.Device{ID: "env-1", SiteID: "far", Kind: registry.KindEnvSensor}); err != nil {
			t.Errorf("move an unbound device: %v", err)
		}
	})
}
