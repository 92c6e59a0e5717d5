package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/fall"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// accelSink records what the accel source hands over.
type accelSink struct {
	mu     sync.Mutex
	events []accelEvent
	faults []string
	fail   int // refuse this many events
}

type accelEvent struct {
	dev   string
	ts    time.Time
	typ   device.EventType
	attrs map[string]any
}

func (s *accelSink) Reading(context.Context, string, time.Time, map[string]float64) error { return nil }
func (s *accelSink) Event(_ context.Context, dev string, ts time.Time, typ device.EventType, attrs map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("spool full")
	}
	s.events = append(s.events, accelEvent{dev, ts, typ, attrs})
	return nil
}
func (s *accelSink) Fault(dev string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, dev+": "+err.Error())
}
func (s *accelSink) snapshot() ([]accelEvent, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]accelEvent(nil), s.events...), append([]string(nil), s.faults...)
}

// accelMessages reads a shared WEDA-FALL trial, resamples it to an exact
// 50 Hz and cuts it into messages of n samples, each value times scale.
func accelMessages(t *testing.T, trial string, t0 int64, n int, scale float64) [][]byte {
	t.Helper()
	samples, _, err := fall.ReadTrial(filepath.Join(testenv.RealData(t), "falls-weda", trial+"_accel.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if samples, err = fall.Resample(samples, 50); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := 0; i < len(samples); i += n {
		m := AccelMessage{TS: t0 + int64(i)*20, PeriodMS: 20}
		for _, s := range samples[i:min(i+n, len(samples))] {
			m.XYZ = append(m.XYZ, [3]float64{s.X * scale, s.Y * scale, s.Z * scale})
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func newAccel(t *testing.T, devs ...AccelDevice) *AccelSource {
	t.Helper()
	s, err := NewAccelSource(AccelConfig{MQTTURL: "tcp://127.0.0.1:1", ClientID: "gw-accel", Devices: devs,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const accelT0 = int64(1_765_000_000_000)

func TestAccelSourceRealRecordings(t *testing.T) {
	cases := []struct {
		trial     string
		unit      fall.Unit
		scale     float64
		falls     int
		impactMin float64 // s after the start
		impactMax float64
		fault     string
	}{
		{"F03/U03_R01", "", 1, 1, 4.5, 7.5, ""},
		{"F02/U02_R01", fall.MS2, 1, 1, 4.0, 7.0, ""},
		{"F03/U03_R01", fall.G, 1 / fall.StandardGravity, 1, 4.5, 7.5, ""},     // a band sending g, declared
		{"F03/U03_R01", "", 1 / fall.StandardGravity, 0, 0, 0, "looks like g"}, // g, declared m/s^2: refused loudly
		{"D09/U23_R01", "", 1, 0, 0, 0, ""},
		{"D04/U22_R01", "", 1, 0, 0, 0, ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s_%s", strings.ReplaceAll(tc.trial, "/", "_"), cmpOr(string(tc.unit), "default")), func(t *testing.T) {
			src := newAccel(t, AccelDevice{ID: "wb-1", Unit: tc.unit})
			sink := &accelSink{}
			for _, m := range accelMessages(t, tc.trial, accelT0, 25, tc.scale) {
				if err := src.Handle(t.Context(), sink, "wearable/wb-1/accel", m); err != nil {
					t.Fatal(err)
				}
			}
			if err := src.FlushIdle(t.Context(), sink, time.Now().Add(IdleFlush)); err != nil {
				t.Fatal(err)
			}
			events, faults := sink.snapshot()
			if len(events) != tc.falls {
				t.Fatalf("%d events %+v, want %d; faults %v", len(events), events, tc.falls, faults)
			}
			for _, e := range events {
				at := e.ts.Sub(time.UnixMilli(accelT0)).Seconds()
				if e.dev != "wb-1" || e.typ != device.EventFall || at < tc.impactMin-0.5 || at > tc.impactMax+0.5 {
					t.Errorf("event %+v at %.2f s, want a fall of wb-1 in [%v, %v] s", e, at, tc.impactMin, tc.impactMax)
				}
				if p, _ := e.attrs["peak_accel_ms2"].(float64); p < 3*fall.StandardGravity {
					t.Errorf("peak_accel_ms2 %v, want the raw impact (>= 3 g)", e.attrs["peak_accel_ms2"])
				}
				if c, _ := e.attrs["confidence"].(float64); c < fall.Trained.Threshold-0.001 || c > 1 {
					t.Errorf("confidence %v", e.attrs["confidence"])
				}
			}
			if tc.fault == "" && len(faults) != 0 {
				t.Errorf("faults %v, want none", faults)
			}
			if tc.fault != "" && (len(faults) != 1 || !strings.Contains(faults[0], tc.fault) || !strings.HasPrefix(faults[0], "wb-1: ")) {
				t.Errorf("faults %v, want one for wb-1 containing %q", faults, tc.fault)
			}
			if got := testutil.ToFloat64(src.falls); int(got) != tc.falls {
				t.Errorf("falls metric %v, want %d", got, tc.falls)
			}
		})
	}
}

func TestAccelSourceRejectsBadMessages(t *testing.T) {
	src := newAccel(t)
	sink := &accelSink{}
	bad := map[string]string{
		"wearable/wb-1/accel":       `{"ts": 1765000000000, "period_ms": 20}`,
		"wearable/wb-6/accel":       `{"ts": 1, "period_ms": 20, "xyz": [[0,0,9.8]]}`,
		"wearable/wb-1/accel ":      `{"ts": 1, "period_ms": 20, "xyz": [[0,0,9.8]]}`,
		"wearable/wb 1/accel":       `{"ts": 1, "period_ms": 20, "xyz": [[0,0,9.8]]}`,
		"other/wb-1/accel":          `{"ts": 1, "period_ms": 20, "xyz": [[0,0,9.8]]}`,
		"wearable/wb-2/accel":       `{"ts": 1, "period_ms": 0, "xyz": [[0,0,9.8]]}`,
		"wearable/wb-3/accel":       `{"ts": 1, "period_ms": 20, "unit": "mg", "xyz": [[0,0,9.8]]}`,
		"wearable/wb-4/accel":       `not json`,
		"wearable/wb-5/extra/accel": `{"ts": 1, "period_ms": 20, "xyz": [[0,0,9.8]]}`,
	}
	for topic, payload := range bad {
		if err := src.Handle(t.Context(), sink, topic, []byte(payload)); err != nil {
			t.Errorf("%s: Handle error %v, want nil (counted, reported, acknowledged)", topic, err)
		}
	}
	_, faults := sink.snapshot()
	if len(faults) != len(bad) {
		t.Errorf("%d faults %v, want %d", len(faults), faults, len(bad))
	}
	if got := testutil.ToFloat64(src.messages.WithLabelValues("invalid")); int(got) != len(bad) {
		t.Errorf("invalid metric %v, want %d", got, len(bad))
	}
}

// TestAccelSourceSinkRefusal: a fall the gateway could not take is handed
// over again with the next message, and the message is not acknowledged.
func TestAccelSourceSinkRefusal(t *testing.T) {
	src := newAccel(t)
	sink := &accelSink{fail: 1}
	msgs := accelMessages(t, "F03/U03_R01", accelT0, 25, 1)
	refused := -1
	for i, m := range msgs {
		if err := src.Handle(t.Context(), sink, "wearable/wb-1/accel", m); err != nil {
			if refused >= 0 {
				t.Fatalf("second refusal at message %d: %v", i, err)
			}
			refused = i
		}
	}
	events, _ := sink.snapshot()
	if refused < 0 || len(events) != 1 {
		t.Fatalf("refused at %d, events %+v: want one refusal then the fall delivered once", refused, events)
	}
	if got := testutil.ToFloat64(src.messages.WithLabelValues("sink_error")); got != 1 {
		t.Errorf("sink_error metric %v, want 1", got)
	}
}

// TestAccelSourceWithRealBroker: a band publishes a real fall recording to
// a broker (the embedded one, over TCP) in 0.5 s messages; the running
// source raises one fall event.
func TestAccelSourceWithRealBroker(t *testing.T) {
	t.Parallel()
	url := testenv.EmbeddedBroker(t).URL()
	prefix := strings.ReplaceAll(testenv.TopicRoot(t), "/", "_")
	src, err := NewAccelSource(AccelConfig{MQTTURL: url, TopicPrefix: prefix, ClientID: testenv.ClientID(t, "accel-src"),
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sink := &accelSink{}
	testenv.RunUntilCleanup(t, func(ctx context.Context) error { return src.Run(ctx, sink) })
	topic := prefix + "/wb-9/accel"
	// A still message is counted when it lands: the subscription is in place.
	still, _ := json.Marshal(AccelMessage{TS: accelT0 - 60_000, PeriodMS: 20, XYZ: [][3]float64{{0, 0, 9.8}}})
	testenv.AwaitSubscribed(t, url, topic, still, func() bool { return testutil.ToFloat64(src.messages.WithLabelValues("ok")) > 0 })

	pub := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "accel-band")))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("band connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	for _, m := range accelMessages(t, "F03/U03_R01", accelT0, 25, 1) {
		if tok := pub.Publish(topic, 1, false, m); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	testenv.Eventually(t, 15*time.Second, func() string {
		events, faults := sink.snapshot()
		if len(events) > 1 {
			t.Fatalf("events %+v faults %v, want one fall of wb-9", events, faults)
		}
		if len(events) == 1 && events[0].dev == "wb-9" && events[0].typ == device.EventFall {
			return ""
		}
		return fmt.Sprintf("events %+v faults %v, want one fall of wb-9", events, faults)
	})
}

func TestAccelFileSection(t *testing.T) {
	good := "id: gw-1\nsite: s1\naccel:\n  mqtt: tcp://127.0.0.1:1883\n  devices:\n    - {device: wb-101, unit: m/s^2}\n    - {device: wb-102, unit: g}\n"
	f, err := ParseFile(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Accel.Config("gw-1-accel")
	if c.ClientID != "gw-1-accel" || len(c.Devices) != 2 || c.Devices[1] != (AccelDevice{ID: "wb-102", Unit: fall.G}) {
		t.Fatalf("config %+v", c)
	}
	for in, want := range map[string]string{
		"id: gw-1\nsite: s1\naccel:\n  devices:\n    - {device: wb-1}\n":                              "MQTT URL",
		"id: gw-1\nsite: s1\naccel:\n  mqtt: tcp://h:1\n  devices:\n    - {device: wb-1, unit: mg}\n": "unit",
		"id: gw-1\nsite: s1\naccel:\n  mqtt: tcp://h:1\n  topic_prefix: a/b\n":                        "topic prefix",
	} {
		if _, err := ParseFile(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one about %q", in, err, want)
		}
	}
}

// FuzzAccelHandle: any payload is handled without panic; a message is
// either run (ok) or counted invalid and reported, never an error (which
// would leave it unacknowledged forever).
func FuzzAccelHandle(f *testing.F) {
	f.Add([]byte(`{"ts": 1765000000000, "period_ms": 20, "xyz": [[0, 0, 9.8], [0.1, 0.2, 9.7]]}`))
	f.Add([]byte(`{"ts": 1765000000000, "period_ms": 50, "unit": "g", "xyz": [[0, 0, 1]]}`))
	f.Add([]byte(`{"ts": -1, "period_ms": 1e308, "xyz": []}`))
	f.Add([]byte(`{"ts": 9223372036854775807, "period_ms": 1000, "xyz": [[1e308, -1e308, 1e308]]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		src := newAccel(t)
		sink := &accelSink{}
		for range 2 { // a second time: the band's state after the first
			if err := src.Handle(context.Background(), sink, "wearable/wb-1/accel", payload); err != nil {
				t.Fatalf("Handle: %v", err)
			}
		}
		ok := testutil.ToFloat64(src.messages.WithLabelValues("ok"))
		bad := testutil.ToFloat64(src.messages.WithLabelValues("invalid"))
		if ok+bad != 2 {
			t.Fatalf("ok %v + invalid %v != 2", ok, bad)
		}
	})
}
