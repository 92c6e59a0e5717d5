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
	eventually(t, 10*time.Second, "sos alert", func() bool {
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

func TestCallAssuranceSkips(t *testing.T) {
	r := &callAssurance{root: "x"} // no client: publishing would panic
	for _, tc := range []struct{ event, typ string }{{EventOpened, TypeSOS}, {EventResolved, TypeFall}, {EventAcknowledged, TypeSpO2Low}} {
		b, _ := json.Marshal(Change{Event: tc.event, Alert: Alert{ID: 1, Site: "demo", Device: "d", Type: tc.typ}})
		if err := r.Send(context.Background(), Notification{ID: "n", Event: tc.event, Body: b}); err != ErrSkipped {
			t.Errorf("%s %s: %v, want ErrSkipped", tc.event, tc.typ, err)
		}
	}
}
