package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
	lp "github.com/influxdata/line-protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{MQTTURL: "tcp://127.0.0.1:1883", InfluxURL: "http://127.0.0.1:8086"}
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; nil means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"everything set", func(c *Config) {
			c.Root, c.ClientID, c.Group, c.InfluxDatabase, c.RetentionPolicy = "tenant/eldercare", "ing-1", "g", "db", "rp"
			c.BatchSize, c.FlushInterval, c.MaxInFlight = 10, time.Second, 100
		}, nil},
		{"no urls", func(c *Config) { c.MQTTURL, c.InfluxURL = "", "" }, []string{"MQTTURL: required", "InfluxURL: required"}},
		{"wrong schemes", func(c *Config) { c.MQTTURL, c.InfluxURL = "http://x:1", "tcp://x:1" }, []string{"MQTTURL", "InfluxURL"}},
		{"bad root", func(c *Config) { c.Root = "a/+/b" }, []string{"Root"}},
		{"bad group", func(c *Config) { c.Group = "a/b" }, []string{"Group"}},
		{"bad client id", func(c *Config) { c.ClientID = "a#" }, []string{"ClientID"}},
		{"slash in db", func(c *Config) { c.InfluxDatabase = "a/b" }, []string{"InfluxDatabase"}},
		{"negative sizes", func(c *Config) { c.BatchSize, c.MaxInFlight, c.FlushInterval = -1, -1, -time.Second },
			[]string{"BatchSize", "MaxInFlight", "FlushInterval"}},
		{"too many in flight", func(c *Config) { c.MaxInFlight = 70000 }, []string{"MaxInFlight"}},
		{"negative limit", func(c *Config) { c.Limits.MaxFuture = -time.Second }, []string{"Limits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.mutate(&cfg)
			err := cfg.Validate()
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors about %v", c.wantErr)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if c.Root != device.DefaultRoot || c.Group != "ingest" || c.InfluxDatabase != "eldercare" || c.RetentionPolicy != "autogen" ||
		c.BatchSize != 5000 || c.FlushInterval != 200*time.Millisecond || c.MaxInFlight != 10000 ||
		!strings.HasPrefix(c.ClientID, "eldercare-ingest-") {
		t.Errorf("defaults: %+v", c)
	}
	if got := (Config{InfluxDatabase: "x"}).Bucket(); got != "x/autogen" {
		t.Errorf("Bucket = %q", got)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	cfg := Config{InfluxToken: "admin:hunter2"}
	var sb strings.Builder
	log := slog.New(slog.NewJSONHandler(&sb, nil))
	log.Info("cfg", "cfg", cfg, "token", cfg.InfluxToken)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%q", cfg.InfluxToken),
		cfg.InfluxToken.String(), sb.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if string(cfg.InfluxToken) != "admin:hunter2" {
		t.Error("the value itself must stay usable")
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want errClass
	}{
		{&http2.Error{StatusCode: 400, Code: "invalid", Message: "partial write: field type conflict"}, permanent},
		{&http2.Error{StatusCode: 413}, permanent},
		{&http2.Error{StatusCode: 404, Message: "database not found"}, missingDB},
		{&http2.Error{StatusCode: 500}, transient},
		{&http2.Error{StatusCode: 503}, transient},
		{&http2.Error{StatusCode: 429}, transient},
		{&http2.Error{StatusCode: 401}, transient},
		{http2.NewError(errors.New("dial tcp: connection refused")), transient},
		{fmt.Errorf("wrapped: %w", &http2.Error{StatusCode: 502}), transient},
		{errors.New("encoding error: invalid value"), permanent},
	}
	for _, c := range cases {
		t.Run(c.err.Error(), func(t *testing.T) {
			if got := classify(c.err); got != c.want {
				t.Errorf("classify = %d, want %d", got, c.want)
			}
		})
	}
}

type fixedResidents struct{ resident, kind string }

func (f fixedResidents) Lookup(string, time.Time) (string, string) { return f.resident, f.kind }

func TestReadingPoints(t *testing.T) {
	t.Parallel()
	topic := device.Topic{Root: "r", Site: "s1", Device: "vm-1", Channel: device.ChanTelemetry}
	ts := int64(1_800_000_000_000)
	cases := []struct {
		name       string
		tel        device.Telemetry
		res        Residents
		wantReason string
		wantTags   string
		wantFields string
	}{
		{"tagged", device.Telemetry{Device: "vm-1", Boot: 3, Readings: []device.Reading{{Seq: 7, TS: ts, Values: map[string]float64{"hr_bpm": 81}}}},
			fixedResidents{"res-1", "vitals_monitor"}, "",
			"device=vm-1,kind=vitals_monitor,resident=res-1,site=s1", "boot=3,hr_bpm=81,seq=7"},
		{"unassigned and unknown", device.Telemetry{Device: "vm-1", Readings: []device.Reading{{Seq: 1, TS: ts, Values: map[string]float64{"in_bed": 1}}}},
			fixedResidents{}, "", "device=vm-1,site=s1", "boot=0,in_bed=1,seq=1"},
		{"no registry", device.Telemetry{Device: "vm-1", Readings: []device.Reading{{Seq: 1, TS: ts, Values: map[string]float64{"in_bed": 0}}}},
			nil, "", "device=vm-1,site=s1", "boot=0,in_bed=0,seq=1"},
		{"reserved name", device.Telemetry{Device: "vm-1", Readings: []device.Reading{{Seq: 1, TS: ts, Values: map[string]float64{"boot": 1}}}},
			nil, "reserved_field", "", ""},
		{"NaN", device.Telemetry{Device: "vm-1", Readings: []device.Reading{{Seq: 1, TS: ts, Values: map[string]float64{"x": math.NaN()}}}},
			nil, "invalid_point", "", ""},
		{"seq beyond int64", device.Telemetry{Device: "vm-1", Readings: []device.Reading{{Seq: math.MaxUint64, TS: ts, Values: map[string]float64{"x": 1}}}},
			nil, "invalid_point", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pts, err := readingPoints(&c.tel, topic, c.res)
			if c.wantReason != "" {
				var pe *PointError
				if !errors.As(err, &pe) || pe.Reason != c.wantReason {
					t.Fatalf("err = %v, want PointError %s", err, c.wantReason)
				}
				return
			}
			if err != nil || len(pts) != 1 {
				t.Fatalf("readingPoints = %d points, %v", len(pts), err)
			}
			p := pts[0]
			if p.Name() != "readings" || p.Time().UnixMilli() != ts {
				t.Errorf("point %s at %d", p.Name(), p.Time().UnixMilli())
			}
			if got := kv(p, true); got != c.wantTags {
				t.Errorf("tags %s, want %s", got, c.wantTags)
			}
			if got := kv(p, false); got != c.wantFields {
				t.Errorf("fields %s, want %s", got, c.wantFields)
			}
		})
	}
}

func TestEventPoint(t *testing.T) {
	t.Parallel()
	topic := device.Topic{Root: "r", Site: "s1", Device: "mt-1", Channel: device.ChanEvent}
	ev := &device.Event{Device: "mt-1", Boot: 2, Seq: 9, TS: 1_800_000_000_000, Type: device.EventMeal,
		Attrs: map[string]any{"card": "04A1", "eaten_pct": 75.0, "hot": true}}
	p, err := eventPoint(ev, topic, time.UnixMilli(1_800_000_000_001), fixedResidents{"res-1", "meal_terminal"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kv(p, true), "device=mt-1,kind=meal_terminal,resident=res-1,site=s1,type=meal"; got != want {
		t.Errorf("tags %s, want %s", got, want)
	}
	if got, want := kv(p, false), "attr_card=04A1,attr_eaten_pct=75,attr_hot=true,boot=2,count=1,received_ms=1800000000001,seq=9"; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
	for _, f := range p.fields {
		if f.Key == "count" || f.Key == "seq" {
			if _, ok := f.Value().(int64); !ok {
				t.Errorf("%s is %T, want int64", f.Key, f.Value())
			}
		}
	}
}

// kv renders a point's tags or fields as k=v,... in key order.
func kv(p *point, tags bool) string {
	var parts []string
	if tags {
		for _, t := range p.tags {
			parts = append(parts, t.Key+"="+t.Value)
		}
	} else {
		for _, f := range p.fields {
			parts = append(parts, fmt.Sprintf("%s=%v", f.Key, f.Value()))
		}
	}
	return strings.Join(parts, ",")
}

func TestNewRegistersMetricsOnce(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := Config{MQTTURL: "tcp://127.0.0.1:1", InfluxURL: "http://127.0.0.1:1"}
	if _, err := New(cfg, nil, reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil, reg, nil); err == nil {
		t.Error("second New on the same registry: nil error, want a duplicate registration error")
	}
	if _, err := New(Config{}, nil, nil, nil); err == nil {
		t.Error("New with an empty config: nil error")
	}
}

// TestAppendLineMatchesClient: our line-protocol encoder writes exactly what
// the InfluxDB client's encoder (line-protocol, as WritePoint used it, ms
// precision) writes for the same point, escaping included.
func TestAppendLineMatchesClient(t *testing.T) {
	t.Parallel()
	ts := int64(1_800_000_000_123)
	cases := []struct {
		name   string
		tags   []tag
		fields []field
	}{
		{"plain", []tag{{"device", "vm-1"}, {"site", "s1"}},
			[]field{floatField("hr_bpm", 81), intField("seq", 7), floatField("spo2_pct", 97.5)}},
		{"escaped tags", []tag{{"device", "a b,c=d"}, {"resident", "x\ty"}, {"site", `back\slash`}},
			[]field{floatField("temp_c", -0.000001)}},
		{"odd floats", []tag{{"device", "d"}},
			[]field{floatField("a", 1e21), floatField("b", 123456789.125), floatField("c", 5e-324), floatField("d", math.Copysign(0, -1))}},
		{"strings and bools", []tag{{"device", "d"}, {"type", "meal"}},
			[]field{{Key: "attr_card", kind: kindString, s: `q"uo\te` + "\n\t"}, {Key: "attr_hot", kind: kindBool, b: true},
				{Key: "attr_x", kind: kindBool}, intField("count", 1)}},
		{"escaped field key", []tag{{"device", "d"}}, []field{floatField("a b=c,d", 1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &point{name: MeasurementReadings, tags: c.tags, fields: c.fields, ms: ts}
			p.sortFields()
			tm := map[string]string{}
			for _, tg := range c.tags {
				tm[tg.Key] = tg.Value
			}
			fm := map[string]any{}
			for _, f := range c.fields {
				fm[f.Key] = f.Value()
			}
			var buf bytes.Buffer
			enc := lp.NewEncoder(&buf)
			enc.SetFieldTypeSupport(lp.UintSupport)
			enc.FailOnFieldErr(true)
			enc.SetPrecision(time.Millisecond)
			if _, err := enc.Encode(write.NewPoint(MeasurementReadings, tm, fm, time.UnixMilli(ts))); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(buf.String(), "\n")
			if got := string(p.appendLine(nil)); got != want {
				t.Errorf("appendLine:\n got %s\nwant %s", got, want)
			}
			if got, err := p.appendLineEncoder(nil); err != nil || string(got) != want {
				t.Errorf("appendLineEncoder (--plain line-protocol):\n got %s (%v)\nwant %s", got, err, want)
			}
		})
	}
}

// TestFIFO: FIFO order, pop waits for a push, pop gives up when ctx ends,
// a closed queue is drained before pop reports false, a backlog that never
// drains keeps the slice at its size, and the gauge counts weights.
func TestFIFO(t *testing.T) {
	t.Parallel()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"})
	q := newFIFO[int](g)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		q.push(i, 2)
	}
	if v := testutil.ToFloat64(g); v != 6 {
		t.Errorf("gauge = %v after three pushes of weight 2, want 6", v)
	}
	for i := range 3 {
		if got, ok := q.pop(ctx); !ok || got != i {
			t.Fatalf("pop = %d, %v, want %d (FIFO)", got, ok, i)
		}
	}
	got := make(chan int)
	go func() { v, _ := q.pop(ctx); got <- v }()
	q.push(7, 1)
	if v := <-got; v != 7 {
		t.Fatalf("waiting pop got %d, want 7", v)
	}
	// Steady backlog of 10 for 100,000 elements: capacity stays small.
	for i := range 10 {
		q.push(i, 1)
	}
	for i := range 100_000 {
		q.push(i, 1)
		q.pop(ctx)
	}
	if c := cap(q.buf); c > 64 {
		t.Errorf("backlog of 10 grew the queue to capacity %d", c)
	}
	if v := testutil.ToFloat64(g); v != 10 {
		t.Errorf("gauge = %v, want 10 queued", v)
	}
	cancel()
	if _, ok := q.pop(ctx); !ok {
		t.Error("pop after ctx ended reported nothing, want the queued elements first")
	}
	q.close()
	n := 0
	for {
		if _, ok := q.pop(context.Background()); !ok {
			break
		}
		n++
	}
	if n != 9 {
		t.Errorf("drained %d elements after close, want the 9 left", n)
	}
	waiting := make(chan bool)
	go func() { _, ok := q.pop(context.Background()); waiting <- ok }()
	if ok := <-waiting; ok {
		t.Error("pop on a closed, empty queue reported an element")
	}
}

// TestHoldWarns: holding clearly more than MaxInFlight (the broker's window
// is larger than ingest's) logs one warning a minute; within the slack it
// does not.
func TestHoldWarns(t *testing.T) {
	t.Parallel()
	var logged bytes.Buffer
	s, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", InfluxURL: "http://127.0.0.1:1", InfluxDatabase: "eldercare",
		Root: "bench", ClientID: "bench", MaxInFlight: 100}, nil, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.hold(101) // within the slack of one message
	if strings.Contains(logged.String(), "max-in-flight") {
		t.Fatalf("warned at 101 held of 100: %s", logged.String())
	}
	s.hold(1)
	s.hold(50)
	if n := strings.Count(logged.String(), "more unacknowledged messages than --max-in-flight"); n != 1 {
		t.Errorf("warnings = %d after going over twice within a minute, want 1:\n%s", n, logged.String())
	}
	s.release(152)
	if v := s.held.Load(); v != 0 {
		t.Errorf("held = %d after releasing everything, want 0", v)
	}
}

// TestAckOrder: batches written out of order are acknowledged in the order
// they were sealed; a batch written later holds up only newer ones, and one
// that could not be written (nil receipts) holds up nothing.
func TestAckOrder(t *testing.T) {
	t.Parallel()
	var a mqttconn.Acker
	rs := func(ids ...uint16) []mqttconn.Receipt {
		out := make([]mqttconn.Receipt, len(ids))
		for i, id := range ids {
			out[i] = a.Receipt(benchMsg{id: id})
		}
		return out
	}
	cases := []struct {
		name string
		done []uint64 // batch seqs in the order their writes finish
		want string   // message ids in the order acknowledged, after each completion
	}{
		{"in order", []uint64{0, 1, 2}, "[1 2]|[3 4]|[5 6]"},
		{"newest first", []uint64{2, 1, 0}, "||[1 2] [3 4] [5 6]"},
		{"middle late", []uint64{0, 2, 1}, "[1 2]||[3 4] [5 6]"},
		{"unwritten batch holds nothing", []uint64{1, 0, 2}, "|[3 4]|[5 6]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sent []string
			o := &ackOrder{send: func(r []mqttconn.Receipt) {
				ids := make([]uint16, len(r))
				for i := range r {
					ids[i] = r[i].Message().MessageID()
				}
				sent = append(sent, fmt.Sprint(ids))
			}}
			batches := map[uint64][]mqttconn.Receipt{0: rs(1, 2), 1: rs(3, 4), 2: rs(5, 6)}
			if c.name == "unwritten batch holds nothing" {
				batches[0] = nil
			}
			var steps []string
			for _, seq := range c.done {
				n := len(sent)
				o.complete(seq, batches[seq])
				steps = append(steps, strings.Join(sent[n:], " "))
			}
			if got := strings.Join(steps, "|"); got != c.want {
				t.Errorf("acknowledged %q, want %q", got, c.want)
			}
			if len(o.waiting) != 0 || o.next != 3 {
				t.Errorf("after all: next %d, %d waiting; want 3, 0", o.next, len(o.waiting))
			}
		})
	}
}

// TestOldestHeld: the age of the oldest held message starts when a batch
// takes its first message and ends only when that batch is acknowledged, in
// sealed order: a newer batch written first does not end it.
func TestOldestHeld(t *testing.T) {
	t.Parallel()
	var h heldSince
	b := &batcher{size: 1, interval: time.Hour, ready: newFIFO[*batch](prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"})), held: &h}
	o := &ackOrder{held: &h, send: func([]mqttconn.Receipt) {}}
	if got := h.age(time.Now()); got != 0 {
		t.Fatalf("age with nothing held = %s, want 0", got)
	}
	for range 2 { // two batches of one point each: sealed at once
		if !b.add(&item{ends: []int{1}}) {
			t.Fatal("add refused")
		}
	}
	later := time.Now().Add(time.Minute)
	if got := h.age(later); got < time.Minute {
		t.Fatalf("age a minute after two batches started = %s, want >= 1m", got)
	}
	o.complete(1, nil) // the newer batch is written first: the older one still holds
	if got := h.age(later); got < time.Minute {
		t.Fatalf("age after the newer batch completed = %s, want >= 1m (batch 0 still held)", got)
	}
	o.complete(0, nil)
	if got := h.age(later); got != 0 {
		t.Fatalf("age after both completed = %s, want 0", got)
	}
}

// TestAppendFloatAsStrconv: appendFloat writes what strconv.AppendFloat(v,
// 'f', -1, 64) writes, at the edges of its integer fast path included.
func TestAppendFloatAsStrconv(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 72, 97, 97.5, -40.25, 1 << 53, -(1 << 53), 1<<53 + 2,
		-(1<<53 + 2), 1e21, 123456789.125, 5e-324, 0.1, 1e15, 1e16 - 1, math.MaxInt64, math.MinInt64, math.MaxFloat64} {
		checkAppendFloat(t, v)
	}
}

// FuzzAppendFloat: the same for any float64 bit pattern but NaN and Inf
// (which points never hold).
func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 72, 97.5, -1, 1 << 53, 1e300} {
		f.Add(math.Float64bits(v))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		if v := math.Float64frombits(bits); !math.IsNaN(v) && !math.IsInf(v, 0) {
			checkAppendFloat(t, v)
		}
	})
}

func checkAppendFloat(t *testing.T, v float64) {
	t.Helper()
	if got, want := string(appendFloat(nil, v)), strconv.FormatFloat(v, 'f', -1, 64); got != want {
		t.Errorf("appendFloat(%v) = %s, strconv says %s", v, got, want)
	}
}

// TestValidatePointLineBreaks: a newline or carriage return in a tag key
// or value cannot be written in line protocol and is refused; the same
// tag without it passes.
func TestValidatePointLineBreaks(t *testing.T) {
	t.Parallel()
	for _, tg := range []tag{{"site", "a\nb"}, {"site", "a\rb"}, {"si\nte", "a"}, {"si\rte", "a"}} {
		p := &point{name: MeasurementReadings, tags: []tag{tg}, fields: []field{floatField("hr_bpm", 70)}, ms: 1}
		if err := validatePoint(p); err == nil {
			t.Errorf("tag %q=%q accepted", tg.Key, tg.Value)
		}
	}
	p := &point{name: MeasurementReadings, tags: []tag{{"site", "a b"}}, fields: []field{floatField("hr_bpm", 70)}, ms: 1}
	if err := validatePoint(p); err != nil {
		t.Errorf("tag site=\"a b\" refused: %v", err)
	}
}
