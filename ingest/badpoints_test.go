package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func openDeadLetters(t *testing.T, dsn string) *DeadLetters {
	t.Helper()
	db, err := sqldb.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dl, err := OpenDeadLetters(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	return dl
}

// TestBadPointsNeverPoisonABatch publishes, in one batch, good readings and
// each kind of bad input. The good ones are stored; each bad one is in the
// dead-letter store with its reason, is acknowledged (in_flight returns to
// 0) and is not retried (write errors stay bounded).
func TestBadPointsNeverPoisonABatch(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		dl := openDeadLetters(t, dsn)
		influxURL, db := testInflux(t, true)
		mqttURL := testenv.EmbeddedBroker(t).URL()
		root := testenv.TopicRoot(t)
		// Resident ids with every character line protocol must escape; a
		// trailing backslash cannot be carried by InfluxDB 1.8's line
		// protocol at all, so that reading is a dead letter.
		odd := `res 1,ward=b`
		res := LookupFunc(func(dev string, _ time.Time) (string, string) {
			switch dev {
			case "vm-odd":
				return odd, "vitals_monitor"
			case "vm-bs":
				return `res\`, "vitals_monitor"
			}
			return "", ""
		})
		h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), res, func(c *Config) {
			c.FlushInterval = time.Second // one batch for all of it
			c.DeadLetters = dl
		})
		pub := publisher(t, mqttURL)
		now := testenv.Now().Truncate(time.Millisecond)
		tel := func(dev string) string { return topicOf(root, "s1", dev, device.ChanTelemetry) }
		evt := topicOf(root, "s1", "mt-1", device.ChanEvent)
		// The first meal fixes attr_hot as a bool in InfluxDB.
		publish(t, pub, evt, mustJSON(t, device.Event{V: 1, Device: "mt-1", Boot: 1, ID: 1, Seq: 1, TS: now.Add(-5 * time.Second).UnixMilli(),
			Type: device.EventMeal, Attrs: map[string]any{"card": "04A1B2C3", "meal": "lunch", "eaten_pct": 80.0, "hot": true}}))
		testenv.Eventually(t, 30*time.Second, func() string {
			if got := testutil.ToFloat64(h.svc.m.written); got != 1 {
				return fmt.Sprintf("written_total %v, want 1", got)
			}
			return ""
		})
		ms := now.UnixMilli()
		cases := []struct {
			name, topic, payload, reason string
		}{
			{"field type conflict", evt, fmt.Sprintf(`{"v":1,"device":"mt-1","boot":1,"id":2,"seq":2,"ts":%d,"type":"meal","attrs":{"card":"04A1B2C3","meal":"lunch","eaten_pct":80,"hot":"very"}}`, ms-4000), "influx_rejected"},
			{"NaN", tel("vm-1"), fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":NaN}}`, ms-3000), "json"},
			{"Inf", tel("vm-1"), fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":2,"seq":2,"ts":%d,"values":{"hr_bpm":1e999}}`, ms-3000), "finite"},
			{"seconds instead of ms", tel("vm-1"), fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":3,"seq":3,"ts":%d,"values":{"hr_bpm":70}}`, ms/1000), "unit_ms"},
			{"microseconds instead of ms", tel("vm-1"), fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":4,"seq":4,"ts":%d,"values":{"hr_bpm":70}}`, ms*1000), "future"},
			{"beyond InfluxDB's range", tel("vm-1"), `{"v":1,"device":"vm-1","boot":1,"id":5,"seq":5,"ts":9300000000000000,"values":{"hr_bpm":70}}`, "future"},
			{"tag value with a trailing backslash", tel("vm-bs"), fmt.Sprintf(`{"v":1,"device":"vm-bs","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":70}}`, ms-3000), "invalid_point"},
			{"negative time", tel("vm-1"), `{"v":1,"device":"vm-1","boot":1,"id":6,"seq":6,"ts":-1,"values":{"hr_bpm":70}}`, ""},
		}
		publish(t, pub, tel("vm-2"), mustJSON(t, reading("vm-2", 1, now.Add(-2*time.Second), map[string]float64{"hr_bpm": 71})))
		for _, c := range cases {
			publish(t, pub, c.topic, []byte(c.payload))
		}
		publish(t, pub, tel("vm-odd"), mustJSON(t, reading("vm-odd", 1, now.Add(-time.Second), map[string]float64{"hr_bpm": 72})))
		publish(t, pub, tel("vm-2"), mustJSON(t, reading("vm-2", 2, now, map[string]float64{"hr_bpm": 73})))

		testenv.Eventually(t, 30*time.Second, func() string {
			if got := testutil.ToFloat64(h.svc.m.written); got != 4 {
				return fmt.Sprintf("written_total %v, want 4 (meal, vm-2 twice, vm-odd)", got)
			}
			if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
				return fmt.Sprintf("in_flight %v, want 0 (all acknowledged)", v)
			}
			return ""
		})
		if got := countSeq(t, influxURL, db, MeasurementReadings); got != 3 {
			t.Errorf("%d readings stored, want 3", got)
		}
		// The odd resident id round-trips through line protocol escaping.
		q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings" and r.device=="vm-odd" and r._field=="hr_bpm")`, db)
		recs := flux(t, influxURL, q)
		if len(recs) != 1 || recs[0]["resident"] != odd {
			t.Errorf("vm-odd reading: %v, want resident tag %q", recs, odd)
		}
		letters, err := dl.List(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		byPayload := map[string]DeadLetter{}
		for _, d := range letters {
			byPayload[string(d.Payload)] = d
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				d, ok := byPayload[c.payload]
				if !ok {
					t.Fatalf("no dead letter for %s; have %d letters", c.payload, len(letters))
				}
				if c.reason != "" && d.Reason != c.reason {
					t.Errorf("reason %q (%s), want %q", d.Reason, d.Detail, c.reason)
				}
				if d.Topic != c.topic || d.Received.IsZero() || d.Detail == "" {
					t.Errorf("dead letter %+v", d)
				}
			})
		}
		if len(letters) != len(cases) {
			t.Errorf("%d dead letters, want %d", len(letters), len(cases))
		}
		if got := testutil.ToFloat64(h.svc.m.deadLetters.WithLabelValues("influx_rejected")); got != 1 {
			t.Errorf("dead_letters_total{influx_rejected} %v, want 1", got)
		}
		// The refused point was not retried in a loop: a handful of failed
		// requests for the binary search, then none. A later reading, in a
		// batch of its own, is written and acknowledged while the error
		// count stays where it was.
		errs := testutil.ToFloat64(h.svc.m.writeErrors)
		publish(t, pub, tel("vm-2"), mustJSON(t, reading("vm-2", 3, now.Add(time.Millisecond), map[string]float64{"hr_bpm": 74})))
		testenv.Eventually(t, 30*time.Second, func() string {
			if got := testutil.ToFloat64(h.svc.m.written); got != 5 {
				return fmt.Sprintf("written_total %v, want 5 (the later reading)", got)
			}
			if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
				return fmt.Sprintf("in_flight %v, want 0 (the later reading acknowledged)", v)
			}
			return ""
		})
		if again := testutil.ToFloat64(h.svc.m.writeErrors); again != errs || errs > 20 {
			t.Errorf("write_errors_total %v then %v: a permanent error was retried", errs, again)
		}
	})
}

// TestSkewAndOutOfOrder: a reading stamped long before its receive time is
// stored with skewed=true and counted; readings delivered newest first are
// keyed by device time, so the older one never replaces the newer one as
// the latest value.
func TestSkewAndOutOfOrder(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil,
		func(c *Config) { c.Skew = time.Minute })
	pub := publisher(t, mqttURL)
	now := testenv.Now().Truncate(time.Millisecond)
	topic := topicOf(root, "s1", "vm-1", device.ChanTelemetry)
	// Newest first: seq 3 now, then seq 2 30 s old, then seq 1 10 min old (skewed).
	publish(t, pub, topic, mustJSON(t, reading("vm-1", 3, now, map[string]float64{"hr_bpm": 90})))
	publish(t, pub, topic, mustJSON(t, reading("vm-1", 2, now.Add(-30*time.Second), map[string]float64{"hr_bpm": 80})))
	publish(t, pub, topic, mustJSON(t, reading("vm-1", 1, now.Add(-10*time.Minute), map[string]float64{"hr_bpm": 70})))
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.written); got != 3 {
			return fmt.Sprintf("written_total %v, want 3", got)
		}
		return ""
	})
	if got := testutil.ToFloat64(h.svc.m.skewed); got != 1 {
		t.Errorf("skewed_total %v, want 1", got)
	}
	q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings")`, db)
	byTime := map[int64]map[string]any{}
	for _, r := range flux(t, influxURL, q) {
		ts := r["_time"].(time.Time).UnixMilli()
		if byTime[ts] == nil {
			byTime[ts] = map[string]any{}
		}
		byTime[ts][r["_field"].(string)] = r["_value"]
	}
	old := byTime[now.Add(-10*time.Minute).UnixMilli()]
	if old[FieldSkewed] != true {
		t.Errorf("10-minute-old reading: %v, want skewed=true", old)
	}
	if rcv, ok := old[FieldReceivedMS].(int64); !ok || rcv < now.UnixMilli() {
		t.Errorf("10-minute-old reading received_ms %v, want the receive time (both times kept)", old[FieldReceivedMS])
	}
	for _, ts := range []int64{now.UnixMilli(), now.Add(-30 * time.Second).UnixMilli()} {
		for _, f := range []string{FieldSkewed, FieldReceivedMS} {
			if v, ok := byTime[ts][f]; ok {
				t.Errorf("reading at %d (within --skew) carries %s=%v, want none", ts, f, v)
			}
		}
	}
	last := flux(t, influxURL, fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings" and r._field=="hr_bpm") |> last()`, db))
	if len(last) != 1 || last[0]["_value"] != 90.0 {
		t.Errorf("latest hr_bpm %v, want 90 (the newest reading, delivered first)", last)
	}
	if !strings.Contains(fmt.Sprint(byTime), "90") {
		t.Error("newest reading missing")
	}
}
