package zigbee

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var fixedNow = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// recSink records what a source hands over.
type recSink struct {
	mu       sync.Mutex
	lines    []string
	readings int
	events   []string
	failWith error
}

func (r *recSink) Reading(_ context.Context, dev string, ts time.Time, values map[string]float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return r.failWith
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%g", k, values[k])
	}
	r.readings++
	r.lines = append(r.lines, fmt.Sprintf("reading %s ts=%d%s", dev, ts.UnixMilli(), b.String()))
	return nil
}

func (r *recSink) Event(_ context.Context, dev string, ts time.Time, typ device.EventType, attrs map[string]any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return r.failWith
	}
	a, _ := json.Marshal(attrs)
	r.events = append(r.events, dev+":"+string(typ))
	r.lines = append(r.lines, fmt.Sprintf("event %s %s ts=%d attrs=%s", dev, typ, ts.UnixMilli(), a))
	return nil
}

func (r *recSink) Fault(dev string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf("fault %s: %v", dev, err))
}

func (r *recSink) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

// logRec captures warnings as one line each.
type logRec struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRec) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRec) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	var b strings.Builder
	b.WriteString("reported: " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "source" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRec) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRec) WithGroup(string) slog.Handler      { return l }
func (l *logRec) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func testDevices(t testing.TB) []Device {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "devices.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devs, err := ParseDevices(f)
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

func newTestSource(t testing.TB, reg prometheus.Registerer, log *logRec) *Source {
	t.Helper()
	s, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", ClientID: "test", Devices: testDevices(t),
		Logger: slog.New(log), Registerer: reg, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// realLine is one line of real_payloads_from_github_issues.jsonl.
type realLine struct {
	Device     string          `json:"device"`
	Topic      string          `json:"topic"`
	Payload    json.RawMessage `json:"payload"`
	PayloadRaw *string         `json:"payload_raw"`
	Raw        []string        `json:"raw"`
}

// realPayloads reads the shared file of real zigbee2mqtt payloads at run
// time (never copied into the repository).
func realPayloads(t testing.TB) []realLine {
	t.Helper()
	p := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
	f, err := os.Open(p)
	if err != nil {
		t.Skipf("real zigbee2mqtt payloads not found: %v", err)
	}
	defer f.Close()
	var out []realLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l realLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s line %d: %v", p, len(out)+1, err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s is empty", p)
	}
	return out
}

func (l realLine) message() (topic string, payload []byte, ok bool) {
	switch {
	case l.Topic == "":
		return "", nil, false
	case l.PayloadRaw != nil:
		return l.Topic, []byte(*l.PayloadRaw), true
	case l.Payload != nil:
		return l.Topic, l.Payload, true
	}
	return "", nil, false
}

// TestRealPayloadsGolden hands every real payload of the shared file to the
// source, in file order, and compares what it produced (events, readings,
// faults and what it reported as unknown) with testdata/real_payloads.golden,
// one block per line. Every line must produce something: a mapping or a
// report. Refresh with -update.
func TestRealPayloadsGolden(t *testing.T) {
	lines := realPayloads(t)
	reg := prometheus.NewRegistry()
	log := &logRec{}
	src := newTestSource(t, reg, log)
	sink := &recSink{}
	var got strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&got, "line %d: %s\n", i+1, l.Device)
		topic, payload, ok := l.message()
		if !ok {
			got.WriteString("  not an MQTT message (zigbee-side raw report); nothing to map\n")
			continue
		}
		fmt.Fprintf(&got, "  topic %s\n", topic)
		if !strings.HasPrefix(topic, DefaultBaseTopic+"/") {
			got.WriteString("  outside the base topic: the source does not subscribe to it\n")
			continue
		}
		if err := src.Handle(context.Background(), sink, topic, payload); err != nil {
			t.Fatalf("line %d: Handle: %v", i+1, err)
		}
		out := append(sink.take(), log.take()...)
		if len(out) == 0 {
			out = []string{"no change (every key known; quiet values, on_change repeats, or the second copy of an action)"}
		}
		for _, o := range out {
			got.WriteString("  " + o + "\n")
		}
	}
	golden := filepath.Join("testdata", "real_payloads.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got.String() != string(want) {
		t.Errorf("mapping of the real payloads differs from %s (run with -update after checking):\n%s", golden, got.String())
	}
	// The safety-critical mappings, pinned apart from the golden file.
	if n := testutil.ToFloat64(src.met.events.WithLabelValues("sos")); n < 2 {
		t.Errorf("sos events = %v, want >= 2 (two real SOS buttons pressed)", n)
	}
	if n := testutil.ToFloat64(src.met.events.WithLabelValues("fall")); n < 1 {
		t.Errorf("fall events = %v, want >= 1 (the DJT11LM drop)", n)
	}
	if n := testutil.ToFloat64(src.met.unknown.WithLabelValues("device")); n != 1 {
		t.Errorf("unknown devices reported = %v, want 1 (0xa4c1380b136e2bee)", n)
	}
}

// TestMapper pins the behaviour of each mapping rule family on payloads
// shaped like the real devices'.
func TestMapper(t *testing.T) {
	type step struct {
		payload string
		events  []string
		values  map[string]float64
		unknown []string
	}
	cases := []struct {
		name, friendly string
		steps          []step
	}{
		{"tuya radar fall_down_status", "0xdc8e95fffe4dc3dd", []step{
			{`{"fall_down_status":"none","presence":true}`, nil, map[string]float64{"presence": 1}, nil},
			{`{"fall_down_status":"maybe_fall"}`, []string{"fall"}, nil, nil},
			{`{"fall_down_status":"fall"}`, []string{"fall"}, nil, nil},
			{`{"fall_down_status":"fall"}`, nil, nil, nil}, // full state repeated: no second page
			{`{"fall_down_status":"none"}`, nil, nil, nil},
			{`{"fall_down_status":"fall"}`, []string{"fall"}, nil, nil},
			{`{"fall_down_status":"tumbling"}`, nil, nil, []string{"fall_down_status=tumbling"}},
		}},
		{"heiman fall_status", "HS2FD-ZB", []step{
			{`{"fall_status":"fall_alarm","occupancy":true,"linkquality":200}`, []string{"fall"}, map[string]float64{"presence": 1, "lqi": 200}, nil},
			{`{"fall_status":"normal"}`, nil, nil, nil},
			{`{"fall_status":"fall_warning"}`, []string{"fall"}, nil, nil},
		}},
		{"owon fds315 status", "fds315", []step{
			{`{"status":"occupied","breathing_rate":14}`, nil, map[string]float64{"presence": 1, "resp_per_min": 14}, nil},
			{`{"status":"falling"}`, []string{"fall"}, map[string]float64{"presence": 1}, nil},
			{`{"status":"unoccupied"}`, nil, map[string]float64{"presence": 0}, nil},
		}},
		{"bed strap occupancy edges", "bed-strap-1", []step{
			{`{"occupancy":true,"battery":88}`, nil, map[string]float64{"in_bed": 1, "battery_pct": 88}, nil}, // first value: no event
			{`{"occupancy":true}`, nil, map[string]float64{"in_bed": 1}, nil},
			{`{"occupancy":false}`, []string{"bed_exit"}, map[string]float64{"in_bed": 0}, nil},
			{`{"occupancy":true}`, []string{"bed_entry"}, map[string]float64{"in_bed": 1}, nil},
		}},
		{"sleeping pad inverted contact", "pad-1", []step{
			{`{"contact":true}`, nil, map[string]float64{"in_bed": 0}, nil},
			{`{"contact":false}`, []string{"bed_entry"}, map[string]float64{"in_bed": 1}, nil},
			{`{"contact":true,"battery_low":true}`, []string{"low_battery", "bed_exit"}, map[string]float64{"in_bed": 0}, nil},
		}},
		{"sos", "0x847127fffe0542eb", []step{
			{`{"action":"emergency","battery":null,"linkquality":90}`, []string{"sos"}, map[string]float64{"lqi": 90}, nil},
			{`{"action":"emergency"}`, []string{"sos"}, nil, nil}, // transient: every press pages
			{`{"action":""}`, nil, nil, nil},
			{`{"action":"triple"}`, nil, nil, []string{"action=triple"}},
		}},
		{"vibration drop", "VibrationSensor", []step{
			{`{"action":"drop","battery":"100.00","voltage":3145}`, []string{"fall"}, map[string]float64{"battery_pct": 100, "battery_mv": 3145}, nil},
			{`{"action":"vibration","vibration":true}`, nil, map[string]float64{"vibration": 1}, nil},
			{`{"colour":"red","nested":{"a":1}}`, nil, nil, []string{"colour", "nested"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mp, err := NewMapper(DefaultMapping(), testDevices(t))
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				out, err := mp.Map(c.friendly, []byte(s.payload))
				if err != nil {
					t.Fatalf("step %d %s: %v", i, s.payload, err)
				}
				var evs []string
				for _, e := range out.Events {
					evs = append(evs, string(e.Type))
				}
				if !slices.Equal(evs, s.events) {
					t.Errorf("step %d %s: events %v, want %v", i, s.payload, evs, s.events)
				}
				if !reflect.DeepEqual(out.Values, s.values) {
					t.Errorf("step %d %s: values %v, want %v", i, s.payload, out.Values, s.values)
				}
				if !slices.Equal(out.Unknown, s.unknown) {
					t.Errorf("step %d %s: unknown %v, want %v", i, s.payload, out.Unknown, s.unknown)
				}
			}
		})
	}
}

func TestMapperErrors(t *testing.T) {
	mp, err := NewMapper(DefaultMapping(), testDevices(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, friendly, payload, want string }{
		{"unknown device", "nobody", `{}`, "unknown zigbee2mqtt device"},
		{"not json", "HS2FD-ZB", `emergency`, "not a JSON object"},
		{"array", "HS2FD-ZB", `[1,2]`, "not a JSON object"},
		{"null", "HS2FD-ZB", `null`, "not a JSON object"},
		{"trailing", "HS2FD-ZB", `{} {}`, "data after"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mp.Map(c.friendly, []byte(c.payload))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Map(%s) = %v, want error containing %q", c.payload, err, c.want)
			}
		})
	}
}

// TestUnknownReportedOnce: a second message with the same unknown key logs
// and counts nothing new; a new unknown key does.
func TestUnknownReportedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := &logRec{}
	src := newTestSource(t, reg, log)
	sink := &recSink{}
	ctx := context.Background()
	for range 3 {
		_ = src.Handle(ctx, sink, "zigbee2mqtt/HS2FD-ZB", []byte(`{"mystery":1}`))
		_ = src.Handle(ctx, sink, "zigbee2mqtt/stranger", []byte(`{"action":"sos"}`))
	}
	if got := log.take(); len(got) != 2 {
		t.Errorf("reports = %q, want 2 (one unknown field, one unknown device)", got)
	}
	if n := testutil.ToFloat64(src.met.unknown.WithLabelValues("field")); n != 1 {
		t.Errorf("unknown fields counted %v, want 1", n)
	}
	if n := testutil.ToFloat64(src.met.messages.WithLabelValues("unknown_device")); n != 3 {
		t.Errorf("unknown-device messages counted %v, want 3", n)
	}
	_ = src.Handle(ctx, sink, "zigbee2mqtt/HS2FD-ZB", []byte(`{"other":1}`))
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "other") {
		t.Errorf("reports = %q, want one for key other", got)
	}
	// Bridge and availability topics are skipped, not reported.
	_ = src.Handle(ctx, sink, "zigbee2mqtt/bridge/state", []byte(`{"state":"online"}`))
	_ = src.Handle(ctx, sink, "zigbee2mqtt/HS2FD-ZB/availability", []byte(`{"state":"online"}`))
	if got := log.take(); len(got) != 0 {
		t.Errorf("bridge/availability reported %q", got)
	}
}

// TestSinkErrorNotAcked: a sink that refuses an event makes Handle fail, so
// Run leaves the message unacknowledged.
func TestSinkErrorNotAcked(t *testing.T) {
	src := newTestSource(t, nil, &logRec{})
	sink := &recSink{failWith: errors.New("spool full")}
	err := src.Handle(context.Background(), sink, "zigbee2mqtt/0x847127fffe0542eb", []byte(`{"action":"emergency"}`))
	if err == nil || !strings.Contains(err.Error(), "spool full") {
		t.Fatalf("Handle = %v, want the sink's error", err)
	}
}

func TestDefaultMappingValid(t *testing.T) {
	if err := DefaultMapping().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseMappingErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"empty", ``, "empty"},
		{"unknown key", "rules:\n  - {field: a, reading: x, colour: red}\n", "colour"},
		{"bad event", "rules:\n  - {field: a, events: {x: {type: explode}}}\n", "unknown event type"},
		{"bad reading", "rules:\n  - {field: a, reading: \"Bad Name\"}\n", "reading"},
		{"nothing", "rules:\n  - {field: a}\n", "give reading, events or ignore"},
		{"bad kind", "rules:\n  - {field: a, kinds: [toaster], ignore: true}\n", "unknown kind"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseMapping(strings.NewReader(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseMapping = %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestParseDevicesErrors(t *testing.T) {
	_, err := ParseDevices(strings.NewReader("devices:\n  - {friendly_name: a, device: x, kind: sos_button}\n  - {friendly_name: a, device: \"bad id\", kind: toaster}\n"))
	for _, want := range []string{"duplicate \"a\"", "devices[1].device", "unknown kind"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDevices = %v, want %q", err, want)
		}
	}
}

// FuzzMap: the mapper never panics, and what it produces always passes
// protocol v1 validation.
func FuzzMap(f *testing.F) {
	for _, s := range []string{
		`{"fall_down_status":"fall","presence":true}`, `{"action":"emergency","battery":null,"linkquality":90}`,
		`{"occupancy":false,"battery":"100.00"}`, `{"status":"falling","breathing_rate":1e400}`, `[]`, `null`, `{"a":{"b":[1]}}`,
		`{"battery":-5}`, `{"linkquality":1e308,"voltage":"NaN"}`,
	} {
		f.Add("HS2FD-ZB", []byte(s))
		f.Add("bed-strap-1", []byte(s))
		f.Add("0x847127fffe0542eb", []byte(s))
	}
	devs := testDevices(f)
	f.Fuzz(func(t *testing.T, friendly string, payload []byte) {
		mp, err := NewMapper(DefaultMapping(), devs)
		if err != nil {
			t.Fatal(err)
		}
		out, err := mp.Map(friendly, payload)
		if err != nil {
			return
		}
		for k, v := range out.Values {
			if err := device.ValidateFieldName(k); err != nil {
				t.Fatalf("field %q: %v", k, err)
			}
			b, _ := json.Marshal(device.Telemetry{V: 1, Device: out.DeviceID, Boot: 1, ID: 1, Seq: 1, TS: fixedNow.UnixMilli(), Values: map[string]float64{k: v}})
			if _, err := device.DecodeTelemetry(b, fixedNow, device.Limits{}); err != nil && device.Reason(err) != "range" {
				t.Fatalf("reading %s=%v does not decode: %v", k, v, err)
			}
		}
		for _, e := range out.Events {
			b, err := json.Marshal(device.Event{V: 1, Device: out.DeviceID, Boot: 1, ID: 1, Seq: 1, TS: fixedNow.UnixMilli(), Type: e.Type, Attrs: e.Attrs})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := device.DecodeEvent(b, fixedNow, device.Limits{}); err != nil {
				t.Fatalf("event %s does not decode: %v", b, err)
			}
		}
	})
}
