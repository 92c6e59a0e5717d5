package gateway

import (
	"context"
	"encoding/binary"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func newTestGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID, cfg.Site, cfg.MQTTURL = "gw-1", "home-1", "tcp://127.0.0.1:1"
	}
	g, err := New(cfg, openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var tbase = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

func TestBatch(t *testing.T) {
	reading := func(pos int64, dev string, boot uint32, seq uint64) spool.Entry {
		return spool.Entry{Pos: pos, Kind: spool.KindReading, Device: dev, Boot: boot, ID: seq, Seq: seq,
			TS: tbase.Add(time.Duration(seq) * time.Second).UnixMilli(), Values: map[string]float64{"hr_bpm": 60 + float64(seq%100)}}
	}
	var many []spool.Entry
	for i := 1; i <= 6000; i++ {
		e := reading(int64(i), "vm-1", 7, uint64(i))
		e.Values = map[string]float64{"n": 1}
		many = append(many, e)
	}
	tests := []struct {
		name     string
		maxBytes int
		entries  []spool.Entry
		want     []int // readings per message; -1 for an event message
	}{
		{"one batch", 0, []spool.Entry{reading(1, "vm-1", 7, 1), reading(2, "vm-1", 7, 2)}, []int{2}},
		{"device change splits", 0, []spool.Entry{reading(1, "vm-1", 7, 1), reading(2, "vm-2", 7, 1), reading(3, "vm-1", 7, 2)}, []int{1, 1, 1}},
		{"boot change splits", 0, []spool.Entry{reading(1, "vm-1", 7, 9), reading(2, "vm-1", 8, 1)}, []int{1, 1}},
		{"event between readings keeps order", 0, []spool.Entry{reading(1, "vm-1", 7, 1),
			{Pos: 2, Kind: spool.KindEvent, Device: "vm-1", Boot: 7, ID: 2, Seq: 1, TS: tbase.UnixMilli(), Type: device.EventFall}, reading(3, "vm-1", 7, 3)}, []int{1, -1, 1}},
		{"protocol cap of 5000 readings", 0, many, []int{5000, 1000}},
		{"byte budget", 4096, many[:500], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1", MaxMessageBytes: tt.maxBytes})
			msgs, err := g.batch(tt.entries)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range msgs {
				if len(m.topic)+len(m.payload)+packetOverhead > g.cfg.MaxMessageBytes {
					t.Errorf("message of %d bytes over the limit %d", len(m.topic)+len(m.payload)+packetOverhead, g.cfg.MaxMessageBytes)
				}
				if m.kind == spool.KindEvent {
					if _, err := device.DecodeEvent(m.payload, tbase, device.Limits{}); err != nil {
						t.Fatalf("event payload invalid: %v", err)
					}
					got = append(got, -1)
					continue
				}
				tel, err := device.DecodeTelemetry(m.payload, tbase.Add(2*time.Hour), device.Limits{})
				if err != nil {
					t.Fatalf("telemetry payload invalid: %v", err)
				}
				if len(tel.Readings) != len(m.pos) {
					t.Fatalf("%d readings for %d positions", len(tel.Readings), len(m.pos))
				}
				if last := tel.Readings[len(tel.Readings)-1]; tel.ID != last.Seq { // test entries have id == seq
					t.Errorf("batch id %d, want the newest reading's id %d", tel.ID, last.Seq)
				}
				got = append(got, len(tel.Readings))
			}
			if tt.want != nil && !equal(got, tt.want) {
				t.Errorf("messages %v, want %v", got, tt.want)
			}
			if tt.want == nil {
				total := 0
				for _, n := range got {
					total += n
				}
				if total != len(tt.entries) || len(got) < 2 {
					t.Errorf("messages %v: want all %d readings in several messages", got, len(tt.entries))
				}
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSinkRejects(t *testing.T) {
	g := newTestGateway(t, Config{})
	ctx := context.Background()
	big := map[string]float64{}
	for i := range 20000 {
		big["f"+strings.Repeat("x", 20)+itoa(i)] = 1
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"NaN", func() error { return g.Reading(ctx, "d-1", tbase, map[string]float64{"hr_bpm": math.NaN()}) }, "finite"},
		{"Inf", func() error { return g.Reading(ctx, "d-1", tbase, map[string]float64{"hr_bpm": math.Inf(1)}) }, "finite"},
		{"range", func() error { return g.Reading(ctx, "d-1", tbase, map[string]float64{"co2_ppm": 65535}) }, "outside"},
		{"field name", func() error { return g.Reading(ctx, "d-1", tbase, map[string]float64{"Bad Name": 1}) }, "name"},
		{"device id", func() error { return g.Reading(ctx, "a/b", tbase, map[string]float64{"x": 1}) }, "device"},
		{"no values", func() error { return g.Reading(ctx, "d-1", tbase, nil) }, "at least one"},
		{"no ts", func() error { return g.Reading(ctx, "d-1", time.Time{}, map[string]float64{"x": 1}) }, "ts"},
		{"too big for a message", func() error { return g.Reading(ctx, "d-1", tbase, big) }, "do not fit"},
		{"event type", func() error { return g.Event(ctx, "d-1", tbase, "explosion", nil) }, "event type"},
		{"event attr", func() error { return g.Event(ctx, "d-1", tbase, device.EventFall, map[string]any{"x": []int{1}}) }, "attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if n := testutil.ToFloat64(g.m.rejected.WithLabelValues("reading")); n != 8 {
		t.Errorf("rejected_total{kind=reading} = %g, want 8", n)
	}
	entries, err := g.spool.Peek(ctx, 10)
	if err != nil || len(entries) != 0 {
		t.Errorf("spool holds %d entries after rejected input (%v)", len(entries), err)
	}
}

func itoa(i int) string {
	return strings.TrimLeft(strings.Replace(time.Duration(i).String(), "ns", "", 1), " ")
}

// TestHealth: a device is offline after 3 expected intervals without a
// reading, by the readings alone, and online again with the next reading.
func TestHealth(t *testing.T) {
	now := tbase
	g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1",
		Devices: []Device{{ID: "env-1", Kind: device.EnvSensor, Interval: 10 * time.Second}, {ID: "sos-1", Kind: device.SOSButton}}})
	g.now = func() time.Time { return now }
	g.devices["env-1"].last = now
	g.devices["sos-1"].last = now
	ctx := context.Background()
	steps := []struct {
		at      time.Duration
		reading bool
		want    device.State
	}{
		{0, true, device.Online},
		{29 * time.Second, false, device.Online},
		{31 * time.Second, false, device.Offline},
		{40 * time.Second, true, device.Online},
		{69 * time.Second, false, device.Online},
		{71 * time.Second, false, device.Offline},
	}
	for _, st := range steps {
		now = tbase.Add(st.at)
		if st.reading {
			if err := g.Reading(ctx, "env-1", now, map[string]float64{"room_temp_c": 21}); err != nil {
				t.Fatal(err)
			}
		}
		g.checkHealth(now)
		if got := g.DeviceState("env-1"); got != st.want {
			t.Errorf("at +%s: env-1 is %q, want %q", st.at, got, st.want)
		}
	}
	if got := g.DeviceState("sos-1"); got != "" {
		t.Errorf("event-only sos-1 is %q after hours of silence, want undecided", got)
	}
	if !g.devices["env-1"].dirty {
		t.Error("offline status not queued for publishing")
	}
}

// fakeNTP answers SNTP requests on loopback UDP with a clock offset by skew.
func fakeNTP(t *testing.T, skew time.Duration) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 48)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 48 {
				continue
			}
			resp := make([]byte, 48)
			resp[0] = 0<<6 | 4<<3 | 4
			resp[1] = 2
			copy(resp[24:32], buf[40:48])
			now := time.Now().Add(skew)
			binary.BigEndian.PutUint64(resp[32:], toNTP(now))
			binary.BigEndian.PutUint64(resp[40:], toNTP(now))
			pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().String()
}

func TestQueryNTP(t *testing.T) {
	for _, skew := range []time.Duration{0, 3 * time.Second, -90 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			addr := fakeNTP(t, -skew) // server behind by skew = local ahead by skew
			got, err := QueryNTP(context.Background(), addr, 2*time.Second, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			if d := got - skew; d > 50*time.Millisecond || d < -50*time.Millisecond {
				t.Errorf("offset %s, want %s +- 50ms", got, skew)
			}
		})
	}
	t.Run("no server", func(t *testing.T) {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0") // bound, never answers
		defer pc.Close()
		if _, err := QueryNTP(context.Background(), pc.LocalAddr().String(), 200*time.Millisecond, time.Now); err == nil {
			t.Error("no error from a silent server")
		}
	})
}

func TestClockMetric(t *testing.T) {
	g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1", NTPServer: fakeNTP(t, -5*time.Second)})
	if !math.IsNaN(testutil.ToFloat64(g.m.skew)) {
		t.Error("skew metric set before any check")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.watchClock(ctx); close(done) }()
	testenv.EventuallyTrue(t, 5*time.Second, "a clock check", func() bool { return !math.IsNaN(testutil.ToFloat64(g.m.skew)) })
	cancel()
	<-done
	if s := testutil.ToFloat64(g.m.skew); math.Abs(s-5) > 0.1 {
		t.Errorf("clock_skew_seconds = %g, want 5", s)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{ID: "gw 1", Site: "", MaxMessageBytes: 10, Devices: []Device{{ID: "a"}, {ID: "a", Kind: "toaster", Interval: -1}}}.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"gateway id", "site", "mqtt url", "max message bytes", "listed twice", "toaster", "negative"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}
