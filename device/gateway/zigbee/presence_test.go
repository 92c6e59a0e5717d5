package zigbee

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// presenceSink is a recSink that also records availability and last_seen.
type presenceSink struct {
	recSink
	avail []string
	seen  []time.Time
}

func (p *presenceSink) Availability(dev string, online bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := dev + ":offline"
	if online {
		s = dev + ":online"
	}
	p.avail = append(p.avail, s)
}

func (p *presenceSink) LastSeen(dev string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, t)
}

// TestActionOnBothTopics: one press of the TS0215A (real payloads of
// Koenkk/zigbee-herdsman-converters#2797) arrives as the state JSON and on
// <friendly>/action; it is one sos event, in either order. Two presses are
// two events; copies further apart than the pair window are two events.
func TestActionOnBothTopics(t *testing.T) {
	const (
		state  = "zigbee2mqtt/0x847127fffe0542eb"
		action = "zigbee2mqtt/0x847127fffe0542eb/action"
		press  = `{"action":"emergency","battery":null,"linkquality":90}`
		reset  = `{"action":"","battery":null,"linkquality":90}`
	)
	type msg struct {
		topic, payload string
		after          time.Duration
	}
	for _, c := range []struct {
		name  string
		msgs  []msg
		want  int
		dups  float64
		reads int
	}{
		{"state then action", []msg{{state, press, 0}, {state, reset, 0}, {action, "emergency", 10 * time.Millisecond}}, 1, 1, 2},
		{"action then state", []msg{{action, "emergency", 0}, {state, press, 5 * time.Millisecond}}, 1, 1, 1},
		{"two presses", []msg{{state, press, 0}, {action, "emergency", 0}, {state, press, time.Second}, {action, "emergency", 0}}, 2, 2, 2},
		{"two presses, copies late", []msg{{state, press, 0}, {state, press, time.Second}, {action, "emergency", 0}, {action, "emergency", 0}}, 2, 2, 2},
		{"state only, twice", []msg{{state, press, 0}, {state, press, 100 * time.Millisecond}}, 2, 0, 2},
		{"beyond the window", []msg{{state, press, 0}, {action, "emergency", DefaultPairWindow + time.Second}}, 2, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := fixedNow
			reg := prometheus.NewRegistry()
			src, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", ClientID: "test", Devices: testDevices(t),
				Logger: slog.New(&logRec{}), Registerer: reg, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			sink := &presenceSink{}
			for _, m := range c.msgs {
				now = now.Add(m.after)
				if err := src.Handle(context.Background(), sink, m.topic, []byte(m.payload)); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(sink.events); n != c.want || !slices.Equal(sink.events[:1], []string{"sos-ts0215a:sos"}) {
				t.Errorf("events %v, want %d sos", sink.events, c.want)
			}
			if d := testutil.ToFloat64(src.met.paired); d != c.dups {
				t.Errorf("duplicates counted %v, want %v", d, c.dups)
			}
			if sink.readings != c.reads {
				t.Errorf("readings %d, want %d (the second copy's readings still count)", sink.readings, c.reads)
			}
		})
	}
}

// TestAvailabilityAndLastSeen: zigbee2mqtt's availability (JSON and legacy
// text) and last_seen (ISO 8601 and epoch ms, as in the real payloads)
// reach a sink that tracks presence.
func TestAvailabilityAndLastSeen(t *testing.T) {
	src := newTestSource(t, prometheus.NewRegistry(), &logRec{})
	sink := &presenceSink{}
	ctx := context.Background()
	for _, m := range [][2]string{
		{"zigbee2mqtt/0xa4c13899607febd1/availability", `{"state":"online"}`},
		{"zigbee2mqtt/0xa4c13899607febd1/availability", `offline`},
		{"zigbee2mqtt/unknown-thing/availability", `{"state":"online"}`},
		{"zigbee2mqtt/0xa4c13899607febd1/availability", `{"state":"maybe"}`},
		{"zigbee2mqtt/0xa4c13899607febd1", `{"action":null,"battery":100,"last_seen":"2026-04-17T23:33:17+08:00","linkquality":14}`},
		{"zigbee2mqtt/0x847127fffe0542eb", `{"battery":90,"last_seen":1764400000000}`},
	} {
		if err := src.Handle(ctx, sink, m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(sink.avail, []string{"sos-ts0601:online", "sos-ts0601:offline"}) {
		t.Errorf("availability %v", sink.avail)
	}
	want := []time.Time{time.Date(2026, 4, 17, 15, 33, 17, 0, time.UTC), time.UnixMilli(1764400000000)}
	if len(sink.seen) != 2 || !sink.seen[0].Equal(want[0]) || !sink.seen[1].Equal(want[1]) {
		t.Errorf("last_seen %v, want %v", sink.seen, want)
	}
}
