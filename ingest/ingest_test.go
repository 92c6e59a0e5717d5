package ingest

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// bidmcRows parses a BIDMC *_Numerics.csv ("Time [s], HR, PULSE, RESP,
// SpO2"; NaN = missing) into one value map per row that carries a value.
func bidmcRows(t *testing.T, path string) []map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatalf("%s: empty", path)
	}
	header := strings.Split(sc.Text(), ",")
	names := map[string]string{"HR": "hr_bpm", "PULSE": "pulse_bpm", "RESP": "resp_per_min", "SpO2": "spo2_pct"}
	var rows []map[string]float64
	for sc.Scan() {
		cols := strings.Split(sc.Text(), ",")
		if len(cols) != len(header) {
			t.Fatalf("%s: row %q has %d columns, header %d", path, sc.Text(), len(cols), len(header))
		}
		vals := map[string]float64{}
		for i, h := range header[1:] {
			s := strings.TrimSpace(cols[i+1])
			if s == "NaN" {
				continue
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) {
				t.Fatalf("%s: %q: %v", path, s, err)
			}
			vals[names[strings.TrimSpace(h)]] = v
		}
		if len(vals) > 0 {
			rows = append(rows, vals)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestBIDMCReadingsStored(t *testing.T) {
	t.Parallel()
	rows := bidmcRows(t, filepath.Join(testenv.RealData(t), "vitals-bidmc", "bidmc_01_Numerics.csv"))
	if len(rows) < 100 {
		t.Fatalf("only %d rows with values", len(rows))
	}
	influxURL, db := testInflux(t, false) // the service creates the database itself
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil)
	pub := publisher(t, mqttURL)

	// The last sample is stamped one second ago, one sample per second.
	end := testenv.Now().Add(-time.Second)
	topic := topicOf(root, "demo-station", "vm-101", device.ChanTelemetry)
	for i, vals := range rows {
		ts := end.Add(-time.Duration(len(rows)-1-i) * time.Second)
		publish(t, pub, topic, mustJSON(t, reading("vm-101", uint64(i+1), ts, vals)))
	}
	want := int64(len(rows))
	testenv.Eventually(t, 60*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.written); got < float64(want) {
			return fmt.Sprintf("written_total %v, want %d", got, want)
		}
		return ""
	})
	if got := countSeq(t, influxURL, db, MeasurementReadings); got != want {
		t.Errorf("stored %d readings, want %d (rows with values)", got, want)
	}
	if got := testutil.ToFloat64(h.svc.m.received.WithLabelValues("telemetry")); got != float64(want) {
		t.Errorf("received_total{telemetry} = %v, want %d", got, want)
	}
	if n := nonZeroSeries(t, h.svc.m.rejected); n != 0 {
		t.Errorf("%d rejected_total series, want none", n)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
			return fmt.Sprintf("in_flight %v after everything was written", v)
		}
		return ""
	})
	// The first row's values arrive intact, as floats, with the integer fields.
	q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings" and r.device=="vm-101") |> first()`, db)
	got := map[string]any{}
	for _, r := range flux(t, influxURL, q) {
		got[r["_field"].(string)] = r["_value"]
		if r["site"] != "demo-station" {
			t.Errorf("site tag %v, want demo-station", r["site"])
		}
	}
	for name, v := range rows[0] {
		if got[name] != v {
			t.Errorf("first reading %s = %v (%T), want %v", name, got[name], got[name], v)
		}
	}
	if got["seq"] != int64(1) || got["boot"] != int64(1) {
		t.Errorf("first reading seq %v boot %v, want int64 1 and 1", got["seq"], got["boot"])
	}
	// The first row is len(rows) s old: beyond --skew it carries the
	// receive time and skewed=true, within it neither (docs/schema.md).
	if time.Duration(len(rows))*time.Second > DefaultSkew {
		if _, ok := got[FieldReceivedMS].(int64); !ok || got[FieldSkewed] != true {
			t.Errorf("first reading (%d s old): received_ms %v skewed %v, want an int64 and true", len(rows), got[FieldReceivedMS], got[FieldSkewed])
		}
	} else if v, ok := got[FieldReceivedMS]; ok {
		t.Errorf("received_ms = %v on a reading within --skew, want no such field", v)
	}
}

func TestMalformedRejectedAndGoodStored(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil)
	pub := publisher(t, mqttURL)

	now := testenv.Now()
	tel := topicOf(root, "s1", "vm-1", device.ChanTelemetry)
	evt := topicOf(root, "s1", "fd-1", device.ChanEvent)
	cases := []struct {
		name    string
		topic   string
		payload string
		reason  string
	}{
		{"not JSON", tel, `hr_bpm=81`, "json"},
		{"missing ts and values", tel, `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1}`, "required"},
		{"missing device", tel, fmt.Sprintf(`{"v":1,"boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":80}}`, now.UnixMilli()), "required"},
		{"value is a string", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":"80"}}`, now.UnixMilli()), "type"},
		{"ts is a string", tel, `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":"now","values":{"hr_bpm":80}}`, "type"},
		{"NaN value", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":NaN}}`, now.UnixMilli()), "json"},
		{"null value", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":null}}`, now.UnixMilli()), "type"},
		{"timestamp in 1970", tel, `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":86400000,"values":{"hr_bpm":80}}`, "too_old"},
		{"timestamp an hour ahead", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":80}}`, now.Add(time.Hour).UnixMilli()), "future"},
		{"timestamp in seconds", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":80}}`, now.Unix()), "unit_ms"},
		{"out of range", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"spo2_pct":140}}`, now.UnixMilli()), "range"},
		{"device not the topic's", tel, fmt.Sprintf(`{"v":1,"device":"vm-2","boot":1,"id":1,"seq":1,"ts":%d,"values":{"hr_bpm":80}}`, now.UnixMilli()), "topic_mismatch"},
		{"reserved value name", tel, fmt.Sprintf(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":%d,"values":{"received_ms":1}}`, now.UnixMilli()), "reserved_field"},
		{"bad device level in topic", topicOf(root, "s1", "vm 1", device.ChanTelemetry), `{}`, "charset"},
		{"unknown event type", evt, fmt.Sprintf(`{"v":1,"device":"fd-1","boot":1,"id":1,"seq":1,"ts":%d,"type":"explosion"}`, now.UnixMilli()), "one_of"},
	}
	want := map[string]float64{}
	for _, c := range cases {
		publish(t, pub, c.topic, []byte(c.payload))
		want[c.reason]++
	}
	good := reading("vm-1", 7, now, map[string]float64{"hr_bpm": 72})
	publish(t, pub, tel, mustJSON(t, good))

	testenv.Eventually(t, 30*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.written); got != 1 {
			return fmt.Sprintf("written_total %v, want 1", got)
		}
		return ""
	})
	if got := countSeq(t, influxURL, db, MeasurementReadings); got != 1 {
		t.Errorf("stored %d readings, want the 1 good one", got)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		for reason, n := range want {
			if got := testutil.ToFloat64(h.svc.m.rejected.WithLabelValues(reason)); got != n {
				return fmt.Sprintf("rejected_total{reason=%q} = %v, want %v", reason, got, n)
			}
		}
		return ""
	})
	if n := nonZeroSeries(t, h.svc.m.rejected); n != len(want) {
		t.Errorf("%d rejected_total series, want %d (one per reason)", n, len(want))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := testutil.ToFloat64(h.svc.m.rejected.WithLabelValues(c.reason)); got != want[c.reason] {
				t.Errorf("rejected_total{reason=%q} = %v, want %v", c.reason, got, want[c.reason])
			}
		})
	}
}

func TestDuplicateStoredOnce(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil)
	pub := publisher(t, mqttURL)

	now := testenv.Now()
	tel := mustJSON(t, reading("vm-1", 5, now, map[string]float64{"hr_bpm": 72, "spo2_pct": 97}))
	ev := mustJSON(t, device.Event{V: 1, Device: "fd-1", Boot: 2, ID: 9, Seq: 9, TS: now.UnixMilli(), Type: device.EventFall,
		Attrs: map[string]any{"peak_accel_ms2": 61.2}})
	for range 2 {
		publish(t, pub, topicOf(root, "s1", "vm-1", device.ChanTelemetry), tel)
		publish(t, pub, topicOf(root, "s1", "fd-1", device.ChanEvent), ev)
		// Let the first copy be written on its own, so the second overwrites
		// a stored point rather than one in the same batch.
		testenv.Eventually(t, 30*time.Second, func() string {
			if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
				return fmt.Sprintf("in_flight %v", v)
			}
			return ""
		})
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.written); got != 4 {
			return fmt.Sprintf("written_total %v, want 4 (2 copies of 2 messages)", got)
		}
		return ""
	})
	for _, m := range []string{MeasurementReadings, MeasurementEvents} {
		if got := countSeq(t, influxURL, db, m); got != 1 {
			t.Errorf("%s: %d points after publishing the same message twice, want 1", m, got)
		}
	}
}

func TestResidentTagAtReadingTime(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)

	// vm-1 measured res-A until switchAt, res-B from then on; vm-9 is bound
	// to nobody and unknown to the registry.
	now := testenv.Now().Truncate(time.Millisecond)
	switchAt := now.Add(-10 * time.Minute)
	res := LookupFunc(func(dev string, at time.Time) (string, string) {
		switch {
		case dev != "vm-1":
			return "", ""
		case at.Before(switchAt):
			return "res-A", "vitals_monitor"
		default:
			return "res-B", "vitals_monitor"
		}
	})
	startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), res)
	pub := publisher(t, mqttURL)

	type want struct{ resident, kind any }
	cases := []struct {
		dev  string
		seq  uint64
		at   time.Time
		want want
	}{
		{"vm-1", 1, switchAt.Add(-5 * time.Minute), want{"res-A", "vitals_monitor"}},
		{"vm-1", 2, switchAt.Add(-time.Millisecond), want{"res-A", "vitals_monitor"}},
		{"vm-1", 3, switchAt, want{"res-B", "vitals_monitor"}},
		{"vm-1", 4, now.Add(-time.Second), want{"res-B", "vitals_monitor"}},
		{"vm-9", 5, now.Add(-time.Second), want{nil, nil}},
	}
	// A batch payload for vm-1 (readings 1-4) and a single one for vm-9: the
	// tag is chosen per reading, not per message.
	batch := device.Telemetry{V: 1, Device: "vm-1", Boot: 1, ID: 1}
	for _, c := range cases[:4] {
		batch.Readings = append(batch.Readings, device.Reading{Seq: c.seq, TS: c.at.UnixMilli(), Values: map[string]float64{"hr_bpm": 70}})
	}
	publish(t, pub, topicOf(root, "s1", "vm-1", device.ChanTelemetry), mustJSON(t, batch))
	publish(t, pub, topicOf(root, "s1", "vm-9", device.ChanTelemetry), mustJSON(t, reading("vm-9", 5, cases[4].at, map[string]float64{"hr_bpm": 70})))

	q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings" and r._field=="seq") |> group()`, db)
	var recs []map[string]any
	testenv.Eventually(t, 30*time.Second, func() string {
		recs = flux(t, influxURL, q)
		if len(recs) != len(cases) {
			return fmt.Sprintf("%d points stored, want %d", len(recs), len(cases))
		}
		return ""
	})
	bySeq := map[int64]map[string]any{}
	for _, r := range recs {
		bySeq[r["_value"].(int64)] = r
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s seq %d", c.dev, c.seq), func(t *testing.T) {
			r, ok := bySeq[int64(c.seq)]
			if !ok {
				t.Fatalf("no point with seq %d", c.seq)
			}
			if got := (want{r["resident"], r["kind"]}); got != c.want {
				t.Errorf("resident, kind = %v, want %v", got, c.want)
			}
			if ts := r["_time"].(time.Time); !ts.Equal(c.at) {
				t.Errorf("time %s, want the device ts %s", ts, c.at)
			}
		})
	}
}

func TestEventsAndFieldTypeConflict(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil,
		func(c *Config) { c.FlushInterval = 500 * time.Millisecond })
	pub := publisher(t, mqttURL)

	now := testenv.Now().Truncate(time.Millisecond)
	topic := topicOf(root, "s1", "mt-1", device.ChanEvent)
	meal := device.Event{V: 1, Device: "mt-1", Boot: 1, ID: 1, Seq: 1, TS: now.Add(-3 * time.Second).UnixMilli(), Type: device.EventMeal,
		Attrs: map[string]any{"card": "04A1B2C3", "meal": "lunch", "eaten_pct": 80.0, "hot": true}}
	publish(t, pub, topic, mustJSON(t, meal))
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.written); got != 1 {
			return fmt.Sprintf("written_total %v, want 1", got)
		}
		return ""
	})
	q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="events")`, db)
	got := map[string]any{}
	for _, r := range flux(t, influxURL, q) {
		got[r["_field"].(string)] = r["_value"]
		if r["type"] != "meal" || r["device"] != "mt-1" || r["site"] != "s1" {
			t.Errorf("tags type=%v device=%v site=%v", r["type"], r["device"], r["site"])
		}
	}
	wantFields := map[string]any{"attr_card": "04A1B2C3", "attr_meal": "lunch", "attr_eaten_pct": 80.0, "attr_hot": true,
		"count": int64(1), "seq": int64(1), "boot": int64(1)}
	for k, v := range wantFields {
		if got[k] != v {
			t.Errorf("field %s = %v (%T), want %v (%T)", k, got[k], got[k], v, v)
		}
	}

	// eaten_pct as a string now conflicts with the stored float field: InfluxDB
	// refuses that point (400 partial write); the good events around it, in
	// the same batch, are stored and every message is acknowledged.
	bad := meal
	bad.Seq, bad.ID, bad.TS = 2, 2, now.Add(-2*time.Second).UnixMilli()
	bad.Attrs = map[string]any{"card": "04A1B2C3", "meal": "lunch", "eaten_pct": 50.0, "hot": "very"}
	good1 := device.Event{V: 1, Device: "mt-1", Boot: 1, ID: 3, Seq: 3, TS: now.Add(-time.Second).UnixMilli(), Type: device.EventCardTap,
		Attrs: map[string]any{"card": "04A1B2C3"}}
	good2 := good1
	good2.Seq, good2.ID, good2.TS = 4, 4, now.UnixMilli()
	for _, e := range []device.Event{good1, bad, good2} {
		publish(t, pub, topic, mustJSON(t, e))
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := testutil.ToFloat64(h.svc.m.rejected.WithLabelValues("influx_rejected")); got != 1 {
			return fmt.Sprintf("rejected_total{influx_rejected} %v, want 1", got)
		}
		if got := testutil.ToFloat64(h.svc.m.written); got != 3 {
			return fmt.Sprintf("written_total %v, want 3", got)
		}
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
			return fmt.Sprintf("in_flight %v, want 0 (all acknowledged)", v)
		}
		return ""
	})
	if got := countSeq(t, influxURL, db, MeasurementEvents); got != 3 {
		t.Errorf("%d events stored, want 3 (the conflicting one refused)", got)
	}
}

func TestTransientWriteErrorsRetried(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	proxy := newFaultyProxy(t, influxURL, 3)
	root := testenv.TopicRoot(t)
	h := startIngest(t, mqttURL, proxy.URL, db, root, testenv.ClientID(t, "ingest"), nil)
	pub := publisher(t, mqttURL)

	now := testenv.Now()
	for i := range 10 {
		publish(t, pub, topicOf(root, "s1", "vm-1", device.ChanTelemetry),
			mustJSON(t, reading("vm-1", uint64(i+1), now.Add(time.Duration(i-10)*time.Second), map[string]float64{"hr_bpm": 60 + float64(i)})))
	}
	testenv.Eventually(t, 60*time.Second, func() string {
		if got := countSeq(t, influxURL, db, MeasurementReadings); got != 10 {
			return fmt.Sprintf("%d readings stored, want 10", got)
		}
		return ""
	})
	if got := proxy.failed.Load(); got != 3 {
		t.Errorf("proxy failed %d writes, want 3", got)
	}
	if got := testutil.ToFloat64(h.svc.m.writeErrors); got != 3 {
		t.Errorf("write_errors_total %v, want 3", got)
	}
	if n := nonZeroSeries(t, h.svc.m.rejected); n != 0 {
		t.Errorf("a transient error rejected data: %d rejected series", n)
	}
}

// While InfluxDB fails every write nothing is acknowledged, so the
// persistent session gives the messages to the next ingest with the same
// client id, which stores them.
func TestUnwrittenMessagesRedelivered(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, true)
	mqttURL := testenv.EmbeddedBroker(t).URL()
	proxy := newFaultyProxy(t, influxURL, -1)
	root := testenv.TopicRoot(t)
	clientID := testenv.ClientID(t, "ingest")
	first := startIngest(t, mqttURL, proxy.URL, db, root, clientID, nil)
	pub := publisher(t, mqttURL)

	now := testenv.Now()
	const n = 5
	for i := range n {
		publish(t, pub, topicOf(root, "s1", "vm-1", device.ChanTelemetry),
			mustJSON(t, reading("vm-1", uint64(i+1), now.Add(time.Duration(i-n)*time.Second), map[string]float64{"hr_bpm": 70})))
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		if v := testutil.ToFloat64(first.svc.m.inFlight); v != n {
			return fmt.Sprintf("in_flight %v, want %d", v, n)
		}
		if testutil.ToFloat64(first.svc.m.writeErrors) < 2 {
			return "fewer than 2 failed writes"
		}
		return ""
	})
	first.stop()
	if got := countSeq(t, influxURL, db, MeasurementReadings); got != 0 {
		t.Fatalf("%d readings stored through a proxy that fails every write", got)
	}

	second := startIngest(t, mqttURL, influxURL, db, root, clientID, nil)
	testenv.Eventually(t, 60*time.Second, func() string {
		if got := countSeq(t, influxURL, db, MeasurementReadings); got != n {
			return fmt.Sprintf("%d readings stored after restart, want %d", got, n)
		}
		return ""
	})
	if got := testutil.ToFloat64(second.svc.m.received.WithLabelValues("telemetry")); got != n {
		t.Errorf("second ingest received %v messages, want %d", got, n)
	}
}
