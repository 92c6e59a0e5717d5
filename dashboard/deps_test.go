package dashboard

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// withCapabilities is d with each nil optional capability set from the
// fake Alerts, Registry or Vitals when that fake implements it: the test
// counterpart of cmd/eldercare's dashboardDeps, so a test's fakes keep
// the capabilities they implement without each test listing them.
func withCapabilities(d Deps) Deps {
	set := func(field any, from ...any) {
		v := reflect.ValueOf(field).Elem()
		if !v.IsNil() {
			return
		}
		for _, f := range from {
			if f != nil && reflect.TypeOf(f).Implements(v.Type()) {
				v.Set(reflect.ValueOf(f))
				return
			}
		}
	}
	a, r, vi := any(d.Alerts), any(d.Registry), any(d.Vitals)
	set(&d.Unknown, a)
	set(&d.AckLinks, a)
	set(&d.Doses, a)
	set(&d.Trends, a)
	set(&d.ResponseTimes, a)
	set(&d.Escalations, a)
	set(&d.Thresholds, a)
	set(&d.Policies, a)
	set(&d.Settings, a)
	set(&d.Cards, r)
	set(&d.Beds, r)
	set(&d.Onboard, r)
	set(&d.Binder, r)
	set(&d.Importer, r)
	set(&d.Days, vi)
	set(&d.Events, vi)
	set(&d.Tracks, vi)
	set(&d.Telemetry, vi)
	set(&d.Windows, vi)
	return d
}

// TestNewFillsVitalsCapabilitiesFromItsFlux: with no Vitals, New reads
// InfluxDB through its own FluxVitals and every Deps interface field that
// *FluxVitals implements is that FluxVitals; one the caller gave is kept.
func TestNewFillsVitalsCapabilitiesFromItsFlux(t *testing.T) {
	t.Parallel()
	mine := &fakeTracks{}
	ts := newTestServer(t, func(c *Config, d *Deps) {
		c.InfluxURL, c.InfluxBucket = "http://127.0.0.1:1", "eldercare/autogen"
		d.Vitals = nil
		d.Tracks = mine
	})
	if ts.srv.flux == nil {
		t.Fatal("New built no FluxVitals")
	}
	got := reflect.ValueOf(ts.srv.deps)
	fluxType := reflect.TypeOf(ts.srv.flux)
	n := 0
	for i := range got.NumField() {
		f := got.Type().Field(i)
		if f.Type.Kind() != reflect.Interface || !fluxType.Implements(f.Type) {
			continue
		}
		n++
		want := any(ts.srv.flux)
		if f.Name == "Tracks" {
			want = mine
		}
		if v := got.Field(i).Interface(); v != want {
			t.Errorf("Deps.%s = %T, want %T", f.Name, v, want)
		}
	}
	if n < 6 { // Vitals, Days, Events, Tracks, Telemetry, Windows
		t.Errorf("%d Deps fields take a *FluxVitals, want at least 6", n)
	}
}

// fakeTracks is a TrackReader with no positions.
type fakeTracks struct{}

func (*fakeTracks) ResidentTrack(context.Context, string, time.Time, time.Time) ([]TrackPoint, error) {
	return nil, nil
}
