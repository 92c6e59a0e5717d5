package alerting

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestSameReadingTwoPaths: every reading of a low-SpO2 episode reaches the
// broker twice, 5 ms apart, from two clients (say a gateway's spool replay
// and its live path, or two ingest paths): one alert, one notification.
func TestSameReadingTwoPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["vm-2p"] = "res-2p"
	r := e.start(nil)
	second, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "pub2"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Disconnect(100) })
	topic := device.Topic{Root: e.root, Site: "demo", Device: "vm-2p", Channel: device.ChanTelemetry}.String()
	start := time.Now().Add(-45 * time.Second)
	for i := range 40 {
		b, err := json.Marshal(device.Telemetry{V: 1, Device: "vm-2p", Boot: 7, ID: uint64(i + 1), Seq: uint64(i + 1),
			TS: start.Add(time.Duration(i) * time.Second).UnixMilli(), Values: map[string]float64{"spo2_pct": 85}})
		if err != nil {
			t.Fatal(err)
		}
		e.publishRaw(topic, b)
		time.Sleep(5 * time.Millisecond)
		if err := mqttconn.Wait(context.Background(), second.Publish(topic, 1, false, b), 10*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the spo2_low alert and its notification", func() bool {
		return len(openAlerts(t, r.m, TypeSpO2Low)) == 1 && len(e.hook.changes(TypeSpO2Low, EventOpened)) == 1
	})
	// A later reading session message (a probe's status, after every
	// reading of both clients was acknowledged by the broker): once it is
	// handled, so is every reading, and once the outbox is settled every
	// notification they led to is at the webhook.
	e.publish("probe-2p", device.ChanStatus, device.Status{V: 1, Device: "probe-2p", TS: time.Now().UnixMilli(), State: device.Online})
	testenv.EventuallyTrue(t, 10*time.Second, "probe handled", func() bool { return r.svc.knows("probe-2p") })
	outboxSettled(t, r.m)
	if a := openAlerts(t, r.m, TypeSpO2Low); len(a) != 1 {
		t.Fatalf("%d spo2_low alerts, want 1: %+v", len(a), a)
	}
	if n := len(e.hook.changes(TypeSpO2Low, EventOpened)); n != 1 {
		t.Fatalf("%d opened notifications, want 1", n)
	}
	h, err := r.m.History(context.Background(), openAlerts(t, r.m, TypeSpO2Low)[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range h {
		if x.Action == ActionRepeated {
			t.Errorf("a duplicated reading counted as a second breach: %+v", x)
		}
	}
}
