package zigbee

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestSourceWithRealBroker runs the source against the machine's Mosquitto
// while firmware-sim's zigbee2mqtt publisher replays the real payloads
// (read from the shared data at run time), and checks that the SOS presses
// and the vibration sensor's drop arrive as events, in order.
func TestSourceWithRealBroker(t *testing.T) {
	file := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
	realPayloads(t) // skips when the file is missing
	url := testenv.Mosquitto(t)
	base := testenv.TopicRoot(t) + "/zigbee2mqtt"
	reg := prometheus.NewRegistry()
	src, err := New(Config{MQTTURL: url, BaseTopic: base, ClientID: testenv.ClientID(t, "z2m-source"), Devices: testDevices(t),
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Wait until the source's subscription is in place: probe the bridge
	// topic (which the source skips) until it counts one.
	probe := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "z2m-probe")))
	if tok := probe.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("probe connect: %v", tok.Error())
	}
	defer probe.Disconnect(0)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(src.met.messages.WithLabelValues("skipped")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the source never subscribed")
		}
		probe.Publish(base+"/bridge/state", 1, false, `{"state":"online"}`).WaitTimeout(time.Second)
		time.Sleep(50 * time.Millisecond)
	}

	n, err := firmwaresim.RunZigbee(ctx, firmwaresim.ZigbeeConfig{MQTTURL: url, BaseTopic: base, File: file,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Every replayed message is accounted for: mapped or unknown device.
	deadline = time.Now().Add(10 * time.Second)
	for {
		handled := testutil.ToFloat64(src.met.messages.WithLabelValues("mapped")) + testutil.ToFloat64(src.met.messages.WithLabelValues("unknown_device"))
		if int(handled) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %v of %d replayed messages", handled, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sink.mu.Lock()
	events := slices.Clone(sink.events)
	readings := sink.readings
	sink.mu.Unlock()
	// The TS0215A press arrives twice (state JSON, then <friendly>/action):
	// one event.
	want := []string{"sos-ts0215a:sos", "sos-ts0601:sos", "vib-2:fall"}
	if !slices.Equal(events, want) {
		t.Errorf("events = %v, want %v", events, want)
	}
	if readings < 8 {
		t.Errorf("readings = %d, want >= 8", readings)
	}
	if u := testutil.ToFloat64(src.met.unknown.WithLabelValues("device")); u != 1 {
		t.Errorf("unknown devices reported %v, want 1", u)
	}
}
