package alerting

import (
	"fmt"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestUnknownDeviceFloodBoundsStoreWrites: 1,500 readings from 1,500
// made-up device ids cost the alert store at most the burst plus the rate
// of unknown-device writes over the time they took (before the bound:
// an upsert per message, a fifth of up's CPU under such a flood), while
// the in-memory list still took them (it holds the MaxUnknownDevices
// latest) and the burst itself was written.
func TestUnknownDeviceFloodBoundsStoreWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
		}
	})
	const n = 1500
	start := time.Now()
	for i := range n {
		dev := fmt.Sprintf("flood-%04d", i)
		e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(),
			Values: map[string]float64{"hr_bpm": 72}})
	}
	last := fmt.Sprintf("flood-%04d", n-1)
	testenv.EventuallyTrue(t, 60*time.Second, "every flood message processed", func() bool { return r.svc.knows(last) })
	took := time.Since(start)
	u := r.svc.cmds.unknown
	testenv.EventuallyTrue(t, 30*time.Second, "unknown-device writer idle", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return !u.writing && len(u.pending) == 0
	})
	written := u.written.Load()
	bound := unknownWriteBurst + int64(unknownWritesPerSecond*took.Seconds()) + 1
	if written > bound || written < unknownWriteBurst {
		t.Errorf("%d unknown devices in %v: %d store writes, want %d to %d", n, took.Round(time.Millisecond), written, unknownWriteBurst, bound)
	}
	if got := u.len(); got != MaxUnknownDevices {
		t.Errorf("in-memory list holds %d devices, want %d", got, MaxUnknownDevices)
	}
	if got := counterSum(r.reg, "eldercare_alerting_unknown_device_writes_total"); got != float64(written) {
		t.Errorf("eldercare_alerting_unknown_device_writes_total %v, want %d", got, written)
	}
}

// TestUnknownDevicesDropLeastRecentlyHeard: with the in-memory list full,
// a new device pushes out the one heard from longest ago, not the one
// first seen longest ago.
func TestUnknownDevicesDropLeastRecentlyHeard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
		}
	})
	send := func(dev string, id uint64) {
		e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: 1, ID: id, Seq: id, TS: time.Now().UnixMilli(),
			Values: map[string]float64{"hr_bpm": 72}})
	}
	for i := range MaxUnknownDevices {
		send(fmt.Sprintf("lru-%04d", i), 1)
	}
	send("lru-0000", 2) // heard again: now the most recent
	send("lru-new", 1)
	testenv.EventuallyTrue(t, 30*time.Second, "lru-new processed", func() bool { return r.svc.knows("lru-new") })
	u := r.svc.cmds.unknown
	u.mu.Lock()
	defer u.mu.Unlock()
	_, first := u.byID["lru-0000"]
	_, second := u.byID["lru-0001"]
	_, added := u.byID["lru-new"]
	if !first || second || !added || len(u.byID) != MaxUnknownDevices || u.recent.Len() != MaxUnknownDevices {
		t.Errorf("lru-0000 kept %v (want true), lru-0001 kept %v (want false), lru-new %v, %d listed, %d in order (want %d)",
			first, second, added, len(u.byID), u.recent.Len(), MaxUnknownDevices)
	}
}
