package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestHeldLocalAlarmRaised, through a real broker: a gateway's heartbeat
// reports local alarms.
//
//   - sos-9's SOS, held for 2 minutes, never reached the platform (the
//     gateway's spool refused it): the report raises a critical SOS alert
//     for it, saying so; the same report again raises nothing more.
//   - sos-1's SOS reached the platform (its alert is open): its report
//     adds nothing (no repeat).
//   - fall-1's fall, held for 10 s only, is left to its event.
//
// Before the fix a heartbeat's local_alarm was not read: a fall or SOS
// whose event was lost stayed on the gateway only.
func TestHeldLocalAlarmRaised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["sos-1"] = "res-001"
	e.binding["sos-9"] = "res-009"
	e.binding["fall-1"] = "res-002"
	r := e.start(nil)
	now := time.Now()
	e.publish("sos-1", device.ChanEvent, device.Event{V: 1, Device: "sos-1", Boot: 1, ID: 1, Seq: 1, TS: now.Add(-2 * time.Minute).UnixMilli(), Type: device.EventSOS})
	testenv.EventuallyTrue(t, 10*time.Second, "sos-1 alert", func() bool { return len(openAlerts(t, r.m, TypeSOS)) == 1 })
	beat := func() {
		e.publish("gw-1", device.ChanStatus, device.Status{V: 1, Device: "gw-1", TS: time.Now().UnixMilli(), State: device.Online,
			Reason: device.ReasonHeartbeat, Kind: device.Gateway, Devices: []string{"sos-1", "sos-9", "fall-1"},
			Report: []device.DeviceReport{
				{Device: "sos-1", State: device.Online, LocalAlarm: device.EventSOS, LocalAlarmSince: now.Add(-2 * time.Minute).UnixMilli()},
				{Device: "sos-9", State: device.Online, LocalAlarm: device.EventSOS, LocalAlarmSince: now.Add(-2 * time.Minute).UnixMilli()},
				{Device: "fall-1", State: device.Online, LocalAlarm: device.EventFall, LocalAlarmSince: now.Add(-10 * time.Second).UnixMilli()},
			}})
	}
	beat()
	var lost Alert
	testenv.EventuallyTrue(t, 10*time.Second, "the SOS only the gateway knew of", func() bool {
		for _, a := range openAlerts(t, r.m, TypeSOS) {
			if a.Device == "sos-9" {
				lost = a
				return true
			}
		}
		return false
	})
	if lost.Severity != SeverityCritical || lost.Resident == nil || *lost.Resident != "res-009" || !strings.Contains(lost.Detail, "has not reached the platform") {
		t.Fatalf("alert %+v", lost)
	}
	beat()
	// A later message of the same lane: once it is handled, so is the
	// second heartbeat.
	e.publish("probe-2", device.ChanStatus, device.Status{V: 1, Device: "probe-2", TS: time.Now().UnixMilli(), State: device.Online})
	testenv.EventuallyTrue(t, 10*time.Second, "probe handled", func() bool { return r.svc.knows("probe-2") })
	sos := openAlerts(t, r.m, TypeSOS)
	if len(sos) != 2 {
		t.Fatalf("sos alerts %+v, want sos-1's and sos-9's", sos)
	}
	for _, a := range sos {
		if a.Repeats != 0 {
			t.Errorf("%s: %d repeats from heartbeats, want 0", a.Device, a.Repeats)
		}
	}
	if f := openAlerts(t, r.m, TypeFall); len(f) != 0 {
		t.Errorf("fall alerts %+v from an alarm held 10 s", f)
	}
}

// TestHeartbeatReassuresAcknowledgedCall, through a real broker: while
// sos-1's alert is open, its gateway's report of the held local alarm
// sends nothing (nobody acknowledged). Once acknowledged, call assurance
// sends "assure-<id>"; a heartbeat that still reports the alarm (the
// command expired on the way, or the call repeated after it) gets
// call_acknowledged again, once per ReassureEvery. Before the fix such an
// alarm stayed on at the gateway for ever.
func TestHeartbeatReassuresAcknowledgedCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["sos-1"] = "res-001"
	r := e.start(nil)
	var mu sync.Mutex
	var cmds []AssuranceCommand
	dev, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "station"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	var markers []string
	tok := dev.Subscribe(device.CommandTopic(e.root, "demo", "sos-1"), 1, func(_ paho.Client, m paho.Message) {
		var c AssuranceCommand
		if json.Unmarshal(m.Payload(), &c) == nil {
			mu.Lock()
			if c.Action == "test-marker" {
				markers = append(markers, c.ID)
			} else {
				cmds = append(cmds, c)
			}
			mu.Unlock()
		}
	})
	if err := mqttconn.Wait(context.Background(), tok, 10*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	got := func() []AssuranceCommand {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(cmds)
	}
	// settled waits until every command the service has published by now
	// has reached the station: the outbox (call assurance) is settled, and
	// a marker the test publishes on the same topic after that (and after
	// the heartbeats handled, whose commands the service publishes before
	// it goes on) arrives after them.
	nMarkers := 0
	settled := func() {
		t.Helper()
		outboxSettled(t, r.m)
		nMarkers++
		id := fmt.Sprintf("marker-%d", nMarkers)
		e.publishRaw(device.CommandTopic(e.root, "demo", "sos-1"), []byte(`{"action":"test-marker","id":"`+id+`"}`))
		testenv.EventuallyTrue(t, 10*time.Second, "marker at the station", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(markers, id)
		})
	}
	since := time.Now().Add(-2 * time.Minute)
	e.publish("sos-1", device.ChanEvent, device.Event{V: 1, Device: "sos-1", Boot: 1, ID: 1, Seq: 1, TS: since.UnixMilli(), Type: device.EventSOS})
	var sos Alert
	testenv.EventuallyTrue(t, 10*time.Second, "sos alert", func() bool {
		as := openAlerts(t, r.m, TypeSOS)
		if len(as) == 1 {
			sos = as[0]
		}
		return len(as) == 1
	})
	probes := 0
	beat := func() {
		e.publish("gw-1", device.ChanStatus, device.Status{V: 1, Device: "gw-1", TS: time.Now().UnixMilli(), State: device.Online,
			Reason: device.ReasonHeartbeat, Kind: device.Gateway, Devices: []string{"sos-1"},
			Report: []device.DeviceReport{{Device: "sos-1", State: device.Online, LocalAlarm: device.EventSOS, LocalAlarmSince: since.UnixMilli()}}})
		probes++
		probe := fmt.Sprintf("probe-hb-%d", probes)
		e.publish(probe, device.ChanStatus, device.Status{V: 1, Device: probe, TS: time.Now().UnixMilli(), State: device.Online})
		testenv.EventuallyTrue(t, 10*time.Second, "heartbeat handled", func() bool { return r.svc.knows(probe) })
	}
	beat()
	settled()
	if c := got(); len(c) != 0 {
		t.Fatalf("commands while the alert is open: %+v", c)
	}
	if _, err := r.m.Acknowledge(context.Background(), sos.ID, "nurse", "dashboard"); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 15*time.Second, "call assurance", func() bool { return len(got()) == 1 })
	beat()
	testenv.EventuallyTrue(t, 10*time.Second, "call_acknowledged re-sent", func() bool { return len(got()) == 2 })
	c := got()[1]
	if c.Action != ActionCallAcknowledged || !strings.HasPrefix(c.ID, fmt.Sprintf("assure-%d-", sos.ID)) || c.Params["by"] != "nurse" || c.Params["resent"] != true {
		t.Fatalf("re-sent command %+v", c)
	}
	beat()
	settled()
	if n := len(got()); n != 2 {
		t.Fatalf("%d commands after a second heartbeat within ReassureEvery, want 2", n)
	}
}
