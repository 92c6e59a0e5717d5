package ingest

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestPlainPathsStoreTheSame runs ingest end to end twice on the same
// messages, once with every speed trick (buffered connection and batched
// PUBACKs, fast JSON decoder, own line-protocol writer) and once with
// --plain all (paho's connection and Message.Ack, encoding/json, the
// line-protocol library): InfluxDB holds the same rows, the malformed
// message is refused the same way, and every message is acknowledged
// (in_flight back to 0; an unacknowledged one would stay held).
func TestPlainPathsStoreTheSame(t *testing.T) {
	t.Parallel()
	mqttURL := testenv.EmbeddedBroker(t).URL()
	stored := map[string][]string{}
	base := testenv.Now().Add(-time.Hour).Truncate(time.Second) // the same points in both runs
	for _, mode := range []struct {
		name  string
		plain []string
	}{{"fast", nil}, {"plain", []string{PlainAll}}} {
		influxURL, db := testInflux(t, true)
		root := testenv.TopicRoot(t) + "-" + mode.name
		h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest-"+mode.name), nil, func(c *Config) {
			c.Plain = mode.plain
			c.Skew = 24 * time.Hour // no received_ms field, which would differ between the runs
		})
		if got := h.svc.acker.Plain; got != (mode.plain != nil) {
			t.Fatalf("%s: acker.Plain = %v", mode.name, got)
		}
		pub := publisher(t, mqttURL)
		const n = 50
		for i := range n {
			publish(t, pub, topicOf(root, "s1", "vm-7", device.ChanTelemetry), mustJSON(t, reading("vm-7", uint64(i+1),
				base.Add(time.Duration(i)*time.Second), map[string]float64{"hr_bpm": 60 + float64(i), "spo2_pct": 97.25, "temp_c": 36.55})))
		}
		publish(t, pub, topicOf(root, "s1", "fd-1", device.ChanEvent), mustJSON(t, device.Event{V: 1, Device: "fd-1", Boot: 1, ID: 1, Seq: 1,
			TS: base.UnixMilli(), Type: device.EventFall, Attrs: map[string]any{"peak_accel_ms2": 61.2, "note": `a "quoted", odd=name`}}))
		publish(t, pub, topicOf(root, "s1", "vm-7", device.ChanTelemetry), []byte(`{"v":1,"device":"vm-7","boot":1,"id":`))
		testenv.Eventually(t, 60*time.Second, func() string {
			if got := testutil.ToFloat64(h.svc.m.written); got < n+1 {
				return fmt.Sprintf("%s: written_total %v, want %d", mode.name, got, n+1)
			}
			if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
				return fmt.Sprintf("%s: in_flight %v, want 0 (every message acknowledged)", mode.name, v)
			}
			if v := nonZeroSeries(t, h.svc.m.rejected); v != 1 {
				return fmt.Sprintf("%s: %d rejected_total series, want 1 (the cut-off message)", mode.name, v)
			}
			return ""
		})
		var rows []string
		q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z)`, db)
		for _, r := range flux(t, influxURL, q) {
			if r["_field"] == FieldReceivedMS {
				continue // the receive time (events carry it always) differs between the runs
			}
			rows = append(rows, fmt.Sprintf("%v %v %v %v=%v (%T)", r["_time"], r["_measurement"], r["device"], r["_field"], r["_value"], r["_value"]))
		}
		sort.Strings(rows)
		if len(rows) < 3*n {
			t.Fatalf("%s: %d stored values, want at least %d", mode.name, len(rows), 3*n)
		}
		stored[mode.name] = rows
		h.stop()
	}
	if !reflect.DeepEqual(stored["fast"], stored["plain"]) {
		for i := range min(len(stored["fast"]), len(stored["plain"])) {
			if a, b := stored["fast"][i], stored["plain"][i]; a != b {
				t.Errorf("the plain paths stored something else: value %d fast %s, plain %s", i, a, b)
				break
			}
		}
		t.Errorf("fast stored %d values, plain %d", len(stored["fast"]), len(stored["plain"]))
	}
}
