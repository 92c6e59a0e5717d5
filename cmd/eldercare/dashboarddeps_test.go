package main

import (
	"reflect"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestDashboardDepsSetsEveryCapability: the Deps newDashboard passes to
// dashboard.New, for `eldercare dashboard` (its own FluxVitals) and for
// `eldercare up` (no vitals: dashboard.New builds a FluxVitals and fills
// the vitals capabilities from it, see dashboard's
// TestNewFillsVitalsCapabilitiesFromItsFlux), leaves no interface field
// nil, so no page loses a capability because a new Deps field was not
// wired.
func TestDashboardDepsSetsEveryCapability(t *testing.T) {
	t.Parallel()
	m, store := &alerting.Manager{}, &registry.Store{}
	accounts := &dashboard.Accounts{}
	flux := dashboard.NewFluxVitals("http://127.0.0.1:1", "", "eldercare/autogen")
	defer flux.Close()
	fluxType := reflect.TypeOf(flux)
	for _, role := range []struct {
		name   string
		vitals *dashboard.FluxVitals
		deps   dashboard.Deps
	}{
		{"dashboard", flux, dashboard.Deps{Live: &dashboard.Feed{}}},
		{"up", nil, dashboard.Deps{Commands: &alerting.Service{}}},
	} {
		t.Run(role.name, func(t *testing.T) {
			d := reflect.ValueOf(dashboardDeps(role.deps, m, store, role.vitals, accounts))
			for i := range d.NumField() {
				f := d.Type().Field(i)
				if f.Type.Kind() != reflect.Interface || !d.Field(i).IsNil() {
					continue
				}
				if role.vitals == nil && fluxType.Implements(f.Type) {
					continue // dashboard.New fills it from its own FluxVitals
				}
				t.Errorf("Deps.%s (%s) is nil in the %s role's wiring", f.Name, f.Type, role.name)
			}
		})
	}
}
