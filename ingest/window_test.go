package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// flakySink fails every AddDeadLetter until healAt (when set) or until
// heal is called.
type flakySink struct {
	healAt time.Time
	healed atomic.Bool
	inner  DeadLetterSink
	fails  atomic.Int64
}

// heal makes every later AddDeadLetter reach the inner store.
func (f *flakySink) heal() { f.healed.Store(true) }

func (f *flakySink) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	if !f.healed.Load() && (f.healAt.IsZero() || time.Now().Before(f.healAt)) {
		f.fails.Add(1)
		return errors.New("database is locked")
	}
	return f.inner.AddDeadLetter(ctx, d)
}

// TestDeadLetterStoreOutage: while the dead-letter store fails for 12 s
// (longer than the 10 s ingest used to give it), refused messages stay held
// and unacknowledged, and once it works again they are stored and
// acknowledged, and the broker's window (5 here) is whole again: messages
// published afterwards all arrive. Before the fix ingest gave up after
// 10 s and neither stored nor acknowledged them, so each one kept a slot of
// the broker's window until the next reconnect and delivery stopped.
func TestDeadLetterStoreOutage(t *testing.T) {
	t.Parallel()
	const window = 5
	mqttURL := testenv.OwnMosquitto(t, fmt.Sprintf("max_inflight_messages %d", window))
	influxURL, db := testInflux(t, true)
	root := testenv.TopicRoot(t)
	sink := &flakySink{healAt: time.Now().Add(12 * time.Second), inner: openDeadLetters(t, "sqlite:"+t.TempDir()+"/dl.db")}
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil, func(c *Config) {
		c.DeadLetters = sink
	})
	pub := publisher(t, mqttURL)
	for i := range window {
		publish(t, pub, topicOf(root, "s1", fmt.Sprintf("bad-%d", i), device.ChanTelemetry), []byte(`{"v":1,"device":`))
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if v := testutil.ToFloat64(h.svc.m.deadLetterFailing); v < 1 {
			return fmt.Sprintf("dead_letter_store_failing = %v, want >= 1 while the store fails", v)
		}
		return ""
	})
	// All five arrive (the first failure is seen as soon as one has) and
	// stay held while the store fails.
	testenv.Eventually(t, 10*time.Second, func() string {
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != window {
			return fmt.Sprintf("in_flight = %v while the store fails, want the %d refused messages held", v, window)
		}
		return ""
	})
	now := testenv.Now()
	const good = 20
	for i := range good {
		publish(t, pub, topicOf(root, "s1", "vm-1", device.ChanTelemetry),
			mustJSON(t, reading("vm-1", uint64(i+1), now.Add(time.Duration(i-good)*time.Second), map[string]float64{"hr_bpm": 70})))
	}
	testenv.Eventually(t, 40*time.Second, func() string {
		if n := countSeq(t, influxURL, db, MeasurementReadings); n != good {
			return fmt.Sprintf("%d readings stored, want %d (published after the refused ones)", n, good)
		}
		if v := testutil.ToFloat64(h.svc.m.deadLetters.WithLabelValues("json")); v != window {
			return fmt.Sprintf("dead letters stored = %v, want %d", v, window)
		}
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
			return fmt.Sprintf("in_flight = %v, want 0", v)
		}
		return ""
	})
	if sink.fails.Load() == 0 {
		t.Error("the store never failed: the test did not test the outage")
	}
	if v := testutil.ToFloat64(h.svc.m.deadLetterFailing); v != 0 {
		t.Errorf("dead_letter_store_failing = %v after recovery, want 0", v)
	}
}

// TestQoS0Bounded: QoS 0 messages escape the broker's in-flight window, so
// while InfluxDB is unreachable ingest holds at most MaxInFlight of them
// and drops and counts the rest, instead of growing without bound.
func TestQoS0Bounded(t *testing.T) {
	t.Parallel()
	mqttURL := testenv.OwnMosquitto(t)
	root := testenv.TopicRoot(t)
	const maxInFlight, n = 100, 1000
	influxURL, db := testInflux(t, true)
	down := newFaultyProxy(t, influxURL, -1) // every write fails: InfluxDB "down"
	h := startIngest(t, mqttURL, down.URL, db, root, testenv.ClientID(t, "ingest"), nil, func(c *Config) {
		c.MaxInFlight = maxInFlight
	})
	ctx := context.Background()
	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: testenv.ClientID(t, "pub0"), CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(100)
	now := testenv.Now()
	for i := range n {
		tok := pub.Publish(topicOf(root, "s1", "vm-1", device.ChanTelemetry), 0, false,
			mustJSON(t, reading("vm-1", uint64(i+1), now.Add(time.Duration(i-n)*time.Millisecond), map[string]float64{"hr_bpm": 70})))
		if err := mqttconn.Wait(ctx, tok, 10*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() string {
		held, dropped := testutil.ToFloat64(h.svc.m.inFlight), testutil.ToFloat64(h.svc.m.dropped.WithLabelValues("telemetry"))
		if held+dropped != n {
			return fmt.Sprintf("held %v + dropped %v, want all %d accounted for", held, dropped, n)
		}
		if held != maxInFlight {
			return fmt.Sprintf("held %v, want MaxInFlight %d", held, maxInFlight)
		}
		return ""
	})
	// QoS 1 messages do not count against the QoS 0 bound: they still
	// arrive (and wait, held, for InfluxDB).
	p1 := publisher(t, mqttURL)
	for i := range 10 {
		publish(t, p1, topicOf(root, "s1", "vm-2", device.ChanTelemetry),
			mustJSON(t, reading("vm-2", uint64(i+1), now.Add(time.Duration(i-10)*time.Millisecond), map[string]float64{"hr_bpm": 70})))
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if held := testutil.ToFloat64(h.svc.m.inFlight); held != maxInFlight+10 {
			return fmt.Sprintf("held %v after 10 QoS 1 messages, want %d", held, maxInFlight+10)
		}
		return ""
	})
}

// captureSink keeps what it is given.
type captureSink struct {
	mu  sync.Mutex
	got []DeadLetter
}

func (c *captureSink) AddDeadLetter(_ context.Context, d DeadLetter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d)
	return nil
}

// TestDeadLetterPayloadCut: a payload over the protocol's 256 KiB limit is
// stored cut to the limit, and the detail says how long it was.
func TestDeadLetterPayloadCut(t *testing.T) {
	t.Parallel()
	sink := &captureSink{}
	s, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", InfluxURL: "http://127.0.0.1:1", InfluxDatabase: "eldercare",
		Root: "r", ClientID: "c", DeadLetters: sink}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2_000_000)
	if !s.deadLetter(t.Context(), DeadLetter{Topic: "r/v1/s/d/telemetry", Reason: "max_len", Detail: "too big", Payload: big}) {
		t.Fatal("not stored")
	}
	d := sink.got[0]
	if len(d.Payload) != device.DefaultLimits.MaxPayload {
		t.Errorf("stored %d payload bytes, want %d", len(d.Payload), device.DefaultLimits.MaxPayload)
	}
	if !strings.Contains(d.Detail, "payload of 2000000 bytes") {
		t.Errorf("detail %q does not give the original size", d.Detail)
	}
}

// TestDeadLetterKeyIgnoresDetail: the same message refused again (a
// redelivery) is stored once although its detail differs (it names the
// receive time), and two refused points of one message are two rows.
func TestDeadLetterKeyIgnoresDetail(t *testing.T) {
	t.Parallel()
	dl := openDeadLetters(t, "sqlite:"+t.TempDir()+"/dl.db")
	d := DeadLetter{Received: time.Now(), Topic: "r/v1/s/d/telemetry", Reason: "future", Payload: []byte(`{"v":1}`),
		Detail: "ts is 59m59.999s ahead"}
	if err := dl.AddDeadLetter(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	d.Detail, d.Received = "ts is 59m45.807s ahead", d.Received.Add(14*time.Second)
	if err := dl.AddDeadLetter(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	p := DeadLetter{Received: time.Now(), Topic: "r/v1/s/d/telemetry", Reason: "influx_rejected", Payload: []byte(`{"v":2}`)}
	for i := range 2 {
		p.Part, p.Detail = fmt.Sprintf("point %d", i), fmt.Sprintf("line %d received_ms=%d", i, time.Now().UnixNano())
		if err := dl.AddDeadLetter(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p.Detail += " again" // the redelivery of the same point
		if err := dl.AddDeadLetter(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := dl.List(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("%d rows, want 3: one for the redelivered message, one per refused point", len(got))
	}
}

// TestRefusedPointHoldsOnlyItsMessage: a point InfluxDB refuses while the
// dead-letter store fails keeps only its own message unacknowledged; the
// rest of its batch is acknowledged and delivery goes on through the
// broker's small window (10). Before the fix the whole batch stayed held
// until the store worked, and with it the window.
func TestRefusedPointHoldsOnlyItsMessage(t *testing.T) {
	t.Parallel()
	const window = 10
	mqttURL := testenv.OwnMosquitto(t, fmt.Sprintf("max_inflight_messages %d", window))
	influxURL, db := testInflux(t, true)
	root := testenv.TopicRoot(t)
	sink := &flakySink{inner: openDeadLetters(t, "sqlite:"+t.TempDir()+"/dl.db")} // fails until healed below
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil, func(c *Config) {
		c.DeadLetters = sink
		c.FlushInterval = 20 * time.Millisecond // batches of at most the window (10): keep them moving
	})
	pub := publisher(t, mqttURL)
	now := testenv.Now()
	// InfluxDB learns zzc as a string field; vm-40 then sends it as a
	// number: a field type conflict, which InfluxDB refuses (400). Both
	// points carry the same timestamp, so they always land in one shard: a
	// conflict exists only within a shard, and points an hour apart
	// straddle the weekly shard boundary on Mondays 00:00-01:00 UTC.
	conflictAt := now.Add(-time.Minute).Truncate(time.Millisecond)
	client := influxdb2.NewClient(influxURL, "")
	defer client.Close()
	if err := client.WriteAPIBlocking("", db+"/autogen").WriteRecord(t.Context(),
		fmt.Sprintf(`readings,device=vm-39,site=s1 zzc="s" %d`, conflictAt.UnixNano())); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, topicOf(root, "s1", "vm-40", device.ChanTelemetry),
		mustJSON(t, reading("vm-40", 1, conflictAt, map[string]float64{"zzc": 1})))
	const good = 200
	for i := range good {
		publish(t, pub, topicOf(root, "s1", "vm-41", device.ChanTelemetry),
			mustJSON(t, reading("vm-41", uint64(i+1), now.Add(time.Duration(i-good)*time.Second), map[string]float64{"hr_bpm": 70})))
	}
	// The store fails until every valid reading is through: 200 messages
	// through a window of 10 are only possible if the refused point's
	// message alone is held.
	testenv.Eventually(t, 25*time.Second, func() string {
		if n := countSeq(t, influxURL, db, MeasurementReadings); n != good {
			return fmt.Sprintf("%d readings stored while the dead-letter store fails, want the %d valid ones", n, good)
		}
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != 1 {
			return fmt.Sprintf("in_flight = %v, want 1 (the message with the refused point)", v)
		}
		if sink.fails.Load() == 0 {
			return "the dead-letter store was not tried yet for the refused point"
		}
		return ""
	})
	if v := testutil.ToFloat64(h.svc.m.deadLetters.WithLabelValues("influx_rejected")); v != 0 {
		t.Fatalf("influx_rejected dead letters = %v while the store fails, want 0", v)
	}
	sink.heal()
	testenv.Eventually(t, 60*time.Second, func() string {
		if v := testutil.ToFloat64(h.svc.m.deadLetters.WithLabelValues("influx_rejected")); v != 1 {
			return fmt.Sprintf("influx_rejected dead letters = %v, want 1", v)
		}
		if v := testutil.ToFloat64(h.svc.m.inFlight); v != 0 {
			return fmt.Sprintf("in_flight = %v after the store healed, want 0", v)
		}
		return ""
	})
}
