package registry_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestAddDeviceOnce: AddDevice registers a new device once; a second add
// of the same id, sequential or concurrent, is refused on the id field and
// leaves the first one as it was (SQLite and PostgreSQL).
func TestAddDeviceOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		doc, err := registry.ParseYAML(strings.NewReader(adminBase))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
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
