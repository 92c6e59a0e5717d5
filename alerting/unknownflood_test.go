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
