package alerting

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// Acknowledging an SOS publishes "help is coming" on the call station's
// command topic, on a real broker, seen by a simulated device subscriber.
func TestCallAssurance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["sos-1"] = "res-001"
	r := e.start(nil)

	got := make(chan AssuranceCommand, 4)
	dev, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "station"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	filter := e.root + "/v1/demo/+/" + string(device.ChanCommand)
	tok := dev.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		var c AssuranceCommand
		if err := json.Unmarshal(m.Payload(), &c); err != nil {
			t.Errorf("command %s: %v", m.Payload(), err)
			return
		}
		if want := (device.Topic{Root: e.root, Site: "demo", Device: c.Device, Channel: device.ChanCommand}).String(); m.Topic() != want {
			t.Errorf("command for %s on %s", c.Device, m.Topic())
		}
		got <- c
	})
	if err := mqttconn.Wait(context.Background(), tok, 10*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}

	e.publish("sos-1", device.ChanEvent, device.Event{V: 1, Device: "sos-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventSOS})
	var sos Alert
	testenv.EventuallyTrue(t, 10*time.Second, "sos alert", func() bool {
		as := openAlerts(t, r.m, TypeSOS)
		if len(as) == 1 {
			sos = as[0]
		}
		return len(as) == 1
	})
	if _, err := r.m.Acknowledge(context.Background(), sos.ID, "nurse", "dashboard"); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if c.Device != "sos-1" || c.Action != ActionCallAcknowledged || c.Params["by"] != "nurse" || c.Params["type"] != TypeSOS ||
			c.Params["alert"] != float64(sos.ID) || c.Expires-c.TS != CallAssuranceTTL.Milliseconds() {
			t.Fatalf("command %+v", c)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no call-assurance command within 15 s of the acknowledgement")
	}
}

// Call assurance skips an opening, a resolution after an acknowledgement
// (the command went out at the acknowledgement) and other alert types.
func TestCallAssuranceSkips(t *testing.T) {
	t.Parallel()
	r := &callAssurance{root: "x"} // no client: publishing would panic
	acked := time.Now()
	for _, tc := range []struct {
		event, typ string
		ackedAt    *time.Time
	}{{EventOpened, TypeSOS, nil}, {EventResolved, TypeFall, &acked}, {EventAcknowledged, TypeSpO2Low, nil}, {EventResolved, TypeSpO2Low, nil}} {
		b, _ := json.Marshal(Change{Event: tc.event, Alert: Alert{ID: 1, Site: "demo", Device: "d", Type: tc.typ, AcknowledgedAt: tc.ackedAt}})
		if err := r.Send(context.Background(), Notification{ID: "n", Event: tc.event, Body: b}); err != ErrSkipped {
			t.Errorf("%s %s: %v, want ErrSkipped", tc.event, tc.typ, err)
		}
	}
}

// A fall resolved straight from open (the nurse was already there; a false
// alarm) still sends call_acknowledged, naming who resolved it: without
// it the gateway would hold the device's local alarm for ever. Before the
// fix only an acknowledgement sent it.
func TestCallAssuranceOnResolveWithoutAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["fall-1"] = "res-001"
	r := e.start(nil)
	got := make(chan AssuranceCommand, 4)
	dev, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "station"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	tok := dev.Subscribe(device.CommandTopic(e.root, "demo", "fall-1"), 1, func(_ paho.Client, m paho.Message) {
		var c AssuranceCommand
		if json.Unmarshal(m.Payload(), &c) == nil {
			got <- c
		}
	})
	if err := mqttconn.Wait(context.Background(), tok, 10*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	e.publish("fall-1", device.ChanEvent, device.Event{V: 1, Device: "fall-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventFall})
	var fall Alert
	testenv.EventuallyTrue(t, 10*time.Second, "fall alert", func() bool {
		as := openAlerts(t, r.m, TypeFall)
		if len(as) == 1 {
			fall = as[0]
		}
		return len(as) == 1
	})
	if _, err := r.m.Resolve(context.Background(), fall.ID, "nurse-li", "dashboard", "no_injury", "found sitting, unhurt"); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if c.Action != ActionCallAcknowledged || c.Device != "fall-1" || c.Params["by"] != "nurse-li" || c.Params["alert"] != float64(fall.ID) {
			t.Fatalf("command %+v", c)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no call_acknowledged within 15 s of resolving an unacknowledged fall")
	}
}
