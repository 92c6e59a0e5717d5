package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestReportAvailability: zigbee2mqtt's availability decides the state of a
// device that reports only on change; last_seen and readings give the
// report's last_seen; a polled device still times out by its interval.
func TestReportAvailability(t *testing.T) {
	now := tbase
	g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1",
		Devices: []Device{{ID: "env-1", Kind: device.EnvSensor, Interval: 10 * time.Second}, {ID: "sos-1", Kind: device.SOSButton},
			{ID: "fr-1", Kind: device.FallDetector}, {ID: "bed-1", Kind: device.BedSensor}}})
	g.now = func() time.Time { return now }
	ctx := context.Background()
	if err := g.Reading(ctx, "env-1", now, map[string]float64{"room_temp_c": 21}); err != nil {
		t.Fatal(err)
	}
	if err := g.Reading(ctx, "bed-1", now, map[string]float64{"in_bed": 1}); err != nil {
		t.Fatal(err)
	}
	g.LastSeen("bed-1", now.Add(-time.Minute)) // older than the reading: ignored
	g.Availability("sos-1", true)
	g.Availability("fr-1", true)
	now = now.Add(time.Hour)
	g.checkHealth(now)
	g.Availability("fr-1", false)
	g.mu.Lock()
	rep := g.report(now)
	g.mu.Unlock()
	want := map[string]device.DeviceReport{
		"env-1": {Device: "env-1", State: device.Offline, LastSeen: tbase.UnixMilli(), Via: device.ViaReadings},
		"sos-1": {Device: "sos-1", State: device.Online, LastSeen: now.UnixMilli(), Via: device.ViaAvailability},
		"fr-1":  {Device: "fr-1", State: device.Offline, Via: device.ViaAvailability},
		"bed-1": {Device: "bed-1", State: device.Online, LastSeen: tbase.UnixMilli(), Via: device.ViaReadings},
	}
	if len(rep) != len(want) {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep {
		w := want[r.Device]
		if r.State != w.State || r.Via != w.Via || (w.LastSeen != 0 && r.LastSeen != w.LastSeen) {
			t.Errorf("report of %s = %+v, want %+v", r.Device, r, w)
		}
	}
	if !g.devices["fr-1"].dirty || g.DeviceState("fr-1") != device.Offline {
		t.Error("availability offline not queued as the device's status")
	}
}

// TestHeartbeat: the gateway publishes a boot status, then a heartbeat
// every HeartbeatInterval, each listing its devices with their report, all
// valid protocol v1 statuses.
func TestHeartbeat(t *testing.T) {
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	sub := subscribe(t, url, root)
	g, err := New(Config{ID: "gw-hb", Site: "home-1", Root: root, MQTTURL: url, ClientID: testenv.ClientID(t, "gw"),
		HeartbeatInterval: 200 * time.Millisecond, Devices: []Device{{ID: "sos-1", Kind: device.SOSButton}}},
		openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.Availability("sos-1", true)
	run(t, g)
	testenv.EventuallyTrue(t, 20*time.Second, "a boot status and three heartbeats", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		boot, beats := 0, 0
		for _, st := range sub.statuses {
			if st.Device != "gw-hb" {
				continue
			}
			switch st.Reason {
			case device.ReasonBoot:
				boot++
			case device.ReasonHeartbeat:
				if st.HeartbeatMS == 200 && len(st.Devices) == 1 && len(st.Report) == 1 && st.Report[0].Via == device.ViaAvailability {
					beats++
				}
			}
		}
		return boot == 1 && beats >= 3
	})
}
