package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestBacklogOverMaxPacket spools a backlog about 20 times the broker's
// max_packet_size and checks that it arrives complete, in order, in many
// messages each within the limit, over one connection (no reconnect storm).
func TestBacklogOverMaxPacket(t *testing.T) {
	t.Parallel()
	const maxPacket = 8192
	b := testenv.StartMosquitto(t, fmt.Sprintf("max_packet_size %d", maxPacket))
	root := testenv.TopicRoot(t)

	// The broker really enforces the limit: an oversized publish costs the
	// client its connection. Without this the test could not fail.
	raw, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "raw"), CleanSession: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_ = mqttconn.Wait(context.Background(), raw.Publish(root+"/probe", 1, false, make([]byte, maxPacket+100)), 3*time.Second, "oversized publish")
	testenv.EventuallyTrue(t, 5*time.Second, "broker to drop a client that sent an oversized packet", func() bool { return !raw.IsConnectionOpen() })
	raw.Disconnect(0)

	sub := subscribe(t, b.URL(), root)
	sp := openSpool(t, "", spool.Config{})
	ctx := context.Background()
	const n = 2000
	for i := 1; i <= n; i++ {
		if _, err := sp.AddReading(ctx, "env-1", time.Now(), map[string]float64{"n": float64(i), "room_temp_c": 21.5, "humidity_pct": 40.25}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: b.URL(), ClientID: testenv.ClientID(t, "gw"), MaxMessageBytes: maxPacket}, sp, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("%d readings at the subscriber", n), func() bool { return len(dedup(sub.snapshot())) >= n })
	checkNumbered(t, sub.snapshot(), n)
	if c := testutil.ToFloat64(g.m.connects); c != 1 {
		t.Errorf("uplink connected %g times, want 1 (a reconnect storm: a message over the broker's limit?)", c)
	}
	sub.mu.Lock()
	msgs := sub.msgs
	sub.mu.Unlock()
	backlog, maxSz := 0, 0
	for _, r := range sub.snapshot() {
		maxSz = max(maxSz, r.payloadSz)
	}
	backlog = n * 60
	if msgs < backlog/maxPacket {
		t.Errorf("backlog sent in %d messages, want at least %d", msgs, backlog/maxPacket)
	}
	if maxSz > maxPacket {
		t.Errorf("largest payload %d bytes is over max_packet_size %d", maxSz, maxPacket)
	}
	if maxSz < maxPacket/2 {
		t.Errorf("largest payload %d bytes: batches are not filled (budget %d)", maxSz, maxPacket)
	}
	t.Logf("%d readings in %d messages, largest payload %d bytes, %g connects", n, msgs, maxSz, testutil.ToFloat64(g.m.connects))
}

// TestLocalAlarm: with the uplink down, a fall or an SOS appears on the local
// alarm topic within 1 s; a bed exit does not. With the uplink up, a fall is
// delivered upstream and raises no local alarm.
func TestLocalAlarm(t *testing.T) {
	t.Parallel()
	local := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	alarmTopic := root + "/local/alarm"
	alarms := make(chan LocalAlarm, 10)
	lc, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: local, ClientID: testenv.ClientID(t, "sounder"), CleanSession: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Disconnect(100)
	if err := mqttconn.Wait(context.Background(), lc.Subscribe(alarmTopic, 1, func(_ paho.Client, m paho.Message) {
		var a LocalAlarm
		if err := json.Unmarshal(m.Payload(), &a); err != nil {
			t.Errorf("local alarm payload: %v", err)
			return
		}
		alarms <- a
	}), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}

	t.Run("uplink down", func(t *testing.T) {
		down := "tcp://127.0.0.1:" + fmt.Sprint(testenv.FreePort(t)) // nothing listens
		logs := &recorder{}
		g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: down, ClientID: testenv.ClientID(t, "gw"),
			LocalMQTTURL: local, LocalAlarmTopic: alarmTopic}, openSpool(t, "", spool.Config{}), nil, slog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		run(t, g)
		testenv.EventuallyTrue(t, 10*time.Second, "local broker connected", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return g.local != nil && g.local.IsConnectionOpen()
		})
		for _, tc := range []struct {
			typ   device.EventType
			alarm bool
		}{{device.EventBedExit, false}, {device.EventFall, true}, {device.EventSOS, true}} {
			start := time.Now()
			if err := g.Event(context.Background(), "fd-1", start, tc.typ, map[string]any{"confidence": 0.9}); err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-alarms:
				if !tc.alarm {
					t.Fatalf("a %s raised a local alarm: %+v", tc.typ, a)
				}
				if a.Device != "fd-1" || a.Type != tc.typ || a.Gateway != "gw-1" || a.Reason != "uplink_down" || a.TS != start.UnixMilli() {
					t.Errorf("alarm %+v", a)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("%s alarm came after %s, want within 1 s", tc.typ, d)
				}
			case <-time.After(time.Second):
				if tc.alarm {
					t.Fatalf("no local alarm within 1 s for a %s", tc.typ)
				}
			}
		}
		if n := logs.count(slog.LevelError, "LOCAL ALARM"); n != 2 {
			t.Errorf("%d error-level LOCAL ALARM log lines, want 2 (fall and sos)", n)
		}
		// The sounder may see an alarm before its PUBACK reaches the gateway.
		testenv.EventuallyTrue(t, 2*time.Second, "local_alarms_total{result=published} = 2", func() bool {
			return testutil.ToFloat64(g.m.localAlarms.WithLabelValues("published")) == 2
		})
	})

	t.Run("uplink up", func(t *testing.T) {
		up := testenv.StartMosquitto(t).URL() // own broker: no retained statuses left on the shared one
		sub := subscribe(t, up, root)
		g, err := New(Config{ID: "gw-2", Site: "home-1", Root: root, MQTTURL: up, ClientID: testenv.ClientID(t, "gw"),
			LocalMQTTURL: local, LocalAlarmTopic: alarmTopic,
			// A grace well above a loaded CI machine's PUBACK time: this case
			// is about a delivered event, the 500 ms default about speed.
			AlarmGrace: 3 * time.Second}, openSpool(t, "", spool.Config{}), nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		run(t, g)
		testenv.EventuallyTrue(t, 10*time.Second, "uplink connected", g.Connected)
		if err := g.Event(context.Background(), "fd-2", time.Now(), device.EventFall, nil); err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyTrue(t, 5*time.Second, "the fall upstream", func() bool {
			sub.mu.Lock()
			defer sub.mu.Unlock()
			return len(sub.events) == 1 && sub.events[0].Device == "fd-2" && sub.events[0].Type == device.EventFall
		})
		select {
		case a := <-alarms:
			t.Errorf("local alarm while the uplink delivered the event: %+v", a)
		case <-time.After(3*time.Second + 500*time.Millisecond):
		}
	})
}

// TestStatus checks the retained statuses: the gateway lists its devices,
// each device's status carries "gateway", and the last will marks the
// devices unknown when the gateway's connection is lost.
func TestStatus(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t)
	root := testenv.TopicRoot(t)
	sub := subscribe(t, b.URL(), root)
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: b.URL(), ClientID: testenv.ClientID(t, "gw"),
		Devices:        []Device{{ID: "bed-1", Kind: device.BedSensor, Interval: 100 * time.Millisecond}, {ID: "sos-1", Kind: device.SOSButton}},
		HealthInterval: 50 * time.Millisecond}, openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testenv.EventuallyTrue(t, 10*time.Second, "uplink connected", g.Connected)
	if err := g.Reading(context.Background(), "bed-1", time.Now(), map[string]float64{"in_bed": 1}); err != nil {
		t.Fatal(err)
	}
	find := func(dev string, st device.State) func() bool {
		return func() bool {
			sub.mu.Lock()
			defer sub.mu.Unlock()
			for _, s := range sub.statuses {
				if s.Device == dev && s.State == st {
					return true
				}
			}
			return false
		}
	}
	testenv.EventuallyTrue(t, 5*time.Second, "gateway online", find("gw-1", device.Online))
	testenv.EventuallyTrue(t, 5*time.Second, "bed-1 online", find("bed-1", device.Online))
	testenv.EventuallyTrue(t, 5*time.Second, "bed-1 offline after 3 intervals without readings", find("bed-1", device.Offline))
	sub.mu.Lock()
	for _, s := range sub.statuses {
		switch s.Device {
		case "gw-1":
			if strings.Join(s.Devices, ",") != "bed-1,sos-1" || s.Kind != device.Gateway {
				t.Errorf("gateway status %+v, want devices bed-1,sos-1 and kind gateway", s)
			}
		case "bed-1":
			if s.Gateway != "gw-1" {
				t.Errorf("device status without gateway: %+v", s)
			}
			if s.State == device.Offline && s.Reason != device.ReasonNoReadings {
				t.Errorf("offline reason %q, want no_readings", s.Reason)
			}
		case "sos-1":
			t.Errorf("status for sos-1, an event-only device that sent nothing: %+v", s)
		}
	}
	sub.mu.Unlock()

	// Kill the gateway's connection: the broker publishes its last will.
	g.mu.Lock()
	c := g.uplink
	g.mu.Unlock()
	before := len(sub.statuses)
	b.Kill()
	b.Start()
	_ = c
	testenv.EventuallyTrue(t, 15*time.Second, "gateway back online after the broker restart", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		for _, s := range sub.statuses[min(before, len(sub.statuses)):] {
			if s.Device == "gw-1" && s.State == device.Online {
				return true
			}
		}
		return false
	})
	if c := testutil.ToFloat64(g.m.connects); c < 2 {
		t.Errorf("connects = %g after a broker restart, want >= 2", c)
	}
}

// recorder is a slog.Handler that keeps every record's level and message.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(level slog.Level, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			n++
		}
	}
	return n
}
