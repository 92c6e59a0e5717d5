package zigbee

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestSourceWithRealBroker runs the source against a broker (the embedded
// one, over TCP) while firmware-sim's zigbee2mqtt publisher replays the real
// payloads (read from the shared data at run time), and checks that the SOS
// presses and the vibration sensor's drop arrive as events, in order.
func TestSourceWithRealBroker(t *testing.T) {
	t.Parallel()
	file := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
	realPayloads(t) // skips when the file is missing
	url := testenv.EmbeddedBroker(t).URL()
	base := testenv.TopicRoot(t) + "/zigbee2mqtt"
	reg := prometheus.NewRegistry()
	src, err := New(Config{MQTTURL: url, BaseTopic: base, ClientID: testenv.ClientID(t, "z2m-source"), Devices: testDevices(t),
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	ctx := testenv.RunUntilCleanup(t, func(ctx context.Context) error { return src.Run(ctx, sink) })
	// The bridge topic, which the source skips and counts, shows that its
	// subscription is in place.
	testenv.AwaitSubscribed(t, url, base+"/bridge/state", []byte(`{"state":"online"}`),
		func() bool { return testutil.ToFloat64(src.met.messages.WithLabelValues("skipped")) > 0 })

	n, err := firmwaresim.RunZigbee(ctx, firmwaresim.ZigbeeConfig{MQTTURL: url, BaseTopic: base, File: file,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Every replayed message is accounted for: mapped or unknown device.
	testenv.Eventually(t, 10*time.Second, func() string {
		handled := testutil.ToFloat64(src.met.messages.WithLabelValues("mapped")) + testutil.ToFloat64(src.met.messages.WithLabelValues("unknown_device"))
		if int(handled) < n {
			return fmt.Sprintf("handled %v of %d replayed messages", handled, n)
		}
		return ""
	})
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
