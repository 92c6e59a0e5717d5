package alerting

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestUnknownDeviceListed: telemetry of a device the registry does not
// know, through a real broker, lists it with its last message for
// adoption; a registered device is not listed; the metric counts it.
func TestUnknownDeviceListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	devices := map[string]registry.Device{"known-1": {ID: "known-1", SiteID: "demo", Kind: registry.KindEnvSensor}}
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			mu.Lock()
			defer mu.Unlock()
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: maps.Clone(devices)}
		}
	})
	now := time.Now()
	for i, dev := range []string{"known-1", "mystery-1"} {
		e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: 1, ID: uint64(i + 1), Seq: 1, TS: now.UnixMilli(),
			Values: map[string]float64{"temp_c": 21.5, "humidity_pct": 40}})
	}
	var got []UnknownDevice
	testenv.EventuallyTrue(t, 10*time.Second, "mystery-1 listed", func() bool {
		var err error
		got, err = r.m.UnknownDevices(context.Background())
		return err == nil && len(got) > 0
	})
	if len(got) != 1 || got[0].Device != "mystery-1" || got[0].Site != "demo" || got[0].LastMessage != "humidity_pct=40 temp_c=21.5" {
		t.Errorf("unknown devices %+v", got)
	}
	if n := gaugeValue(t, r, "eldercare_alerting_unknown_devices"); n != 1 {
		t.Errorf("metric %v, want 1", n)
	}
	// Once registered (adopted), its next message removes it.
	mu.Lock()
	devices["mystery-1"] = registry.Device{ID: "mystery-1", SiteID: "demo", Kind: registry.KindEnvSensor}
	mu.Unlock()
	e.publish("mystery-1", device.ChanTelemetry, device.Telemetry{V: 1, Device: "mystery-1", Boot: 1, ID: 9, Seq: 2, TS: now.UnixMilli() + 1000,
		Values: map[string]float64{"temp_c": 21.6}})
	testenv.EventuallyTrue(t, 10*time.Second, "adopted device forgotten", func() bool {
		got, err := r.m.UnknownDevices(context.Background())
		return err == nil && len(got) == 0
	})
}

func gaugeValue(t *testing.T, r *running, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather() // New registers the unknown-device gauge
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestUnknownDeviceEventListed: an SOS from a device the registry does not
// know is listed for adoption (the alert itself is raised and flagged
// elsewhere; this is the admin's list), one row however many events it
// sends.
func TestUnknownDeviceEventListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
		}
	})
	now := time.Now()
	for i := range 2 {
		e.publish("stray-sos", device.ChanEvent, device.Event{V: 1, Device: "stray-sos", Boot: 1, ID: uint64(i + 1), Seq: uint64(i + 1),
			TS: now.UnixMilli() + int64(i), Type: device.EventSOS})
	}
	testenv.EventuallyTrue(t, 10*time.Second, "stray-sos listed once", func() bool {
		got, err := r.m.UnknownDevices(context.Background())
		return err == nil && len(got) == 1 && got[0].Device == "stray-sos" && got[0].LastMessage == "event sos"
	})
}

// TestUnknownDevicesBounded: the store keeps the MaxUnknownDevices most
// recently heard devices.
func TestUnknownDevicesBounded(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		m := openTestManager(t, dsn)
		ctx := context.Background()
		base := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
		for i := range MaxUnknownDevices + 5 {
			at := base.Add(time.Duration(i) * time.Second)
			if err := m.putUnknownDevice(ctx, UnknownDevice{Site: "s", Device: fmt.Sprintf("d%04d", i), FirstSeen: at, LastSeen: at, Messages: 1}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.UnknownDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != MaxUnknownDevices || got[0].Device != fmt.Sprintf("d%04d", MaxUnknownDevices+4) || got[len(got)-1].Device != "d0005" {
			t.Errorf("%d rows, first %s, last %s", len(got), got[0].Device, got[len(got)-1].Device)
		}
	})
}

// TestUnknownSOSNotHeldByAdoptionList (PostgreSQL): while another session
// holds an exclusive lock on alert_unknown_devices (a backup, a careless
// admin's psql, a slow migration), an SOS from an unregistered device
// still opens its alert, flagged unassigned, at once; the device is listed
// for adoption once the lock ends; readings of an unregistered device do
// not stall the normal lane meanwhile. Before the fix the listing was
// written in the message's path, first: the SOS waited for the lock.
func TestUnknownSOSNotHeldByAdoptionList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dsn = sqldbtest.PostgresDSN(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
		}
	})
	ctx := context.Background()
	db, err := sqldb.Open(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `LOCK TABLE alert_unknown_devices IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	e.publish("stray-sos", device.ChanEvent, device.Event{V: 1, Device: "stray-sos", Boot: 1, ID: 1, Seq: 1,
		TS: time.Now().UnixMilli(), Type: device.EventSOS})
	testenv.EventuallyTrue(t, 10*time.Second, "SOS alert of the unregistered device while the list is locked", func() bool {
		for _, a := range openAlerts(t, r.m, TypeSOS) {
			if a.Device == "stray-sos" && a.Unassigned {
				return true
			}
		}
		return false
	})
	// Readings of another unregistered device do not hold up the normal
	// lane either: a status behind them is taken while the lock lasts.
	e.publish("stray-hr", device.ChanTelemetry, device.Telemetry{V: 1, Device: "stray-hr", Boot: 1, ID: 1, Seq: 1,
		TS: time.Now().UnixMilli(), Values: map[string]float64{"hr_bpm": 72}})
	e.publish("after-hr", device.ChanStatus, device.Status{V: 1, Device: "after-hr", TS: time.Now().UnixMilli(), State: device.Online})
	testenv.EventuallyTrue(t, 10*time.Second, "status behind an unregistered device's reading while the list is locked", func() bool {
		return r.svc.knows("after-hr")
	})
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "stray-sos and stray-hr listed after the lock", func() bool {
		got, err := r.m.UnknownDevices(ctx)
		return err == nil && len(got) == 2
	})
}
