package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func newTestFeed(t *testing.T, buf int) *Feed {
	t.Helper()
	f, err := NewFeed(FeedConfig{Root: "t", ClientBuffer: buf, Now: func() time.Time { return testNow }}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFeedState(t *testing.T) {
	t.Parallel()
	ts := func(d time.Duration) string { return ms(testNow.Add(d)) }
	type msg struct{ topic, payload string }
	tests := []struct {
		name    string
		msgs    []msg
		device  string
		check   func(t *testing.T, d DeviceState)
		invalid float64
	}{
		{
			name:   "single reading",
			msgs:   []msg{{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":` + ts(-time.Second) + `,"values":{"hr_bpm":81,"spo2_pct":97}}`}},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.Latest["hr_bpm"].V != 81 || d.Latest["spo2_pct"].V != 97 || !d.Latest["hr_bpm"].At.Equal(testNow.Add(-time.Second)) {
					t.Errorf("latest = %+v", d.Latest)
				}
				if d.Site != "s1" || d.State != device.Unknown {
					t.Errorf("site %q state %q", d.Site, d.State)
				}
			},
		},
		{
			name: "batch keeps newest per field; an older reading does not win",
			msgs: []msg{
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":2,"readings":[{"seq":1,"ts":` + ts(-3*time.Second) + `,"values":{"hr_bpm":70}},{"seq":2,"ts":` + ts(-2*time.Second) + `,"values":{"hr_bpm":72}}]}`},
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":3,"seq":3,"ts":` + ts(-10*time.Second) + `,"values":{"hr_bpm":60}}`},
			},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.Latest["hr_bpm"].V != 72 {
					t.Errorf("hr = %v, want 72", d.Latest["hr_bpm"].V)
				}
			},
		},
		{
			name: "bed exit then entry event",
			msgs: []msg{
				{"t/v1/s1/bs-1/event", `{"v":1,"device":"bs-1","boot":1,"id":1,"seq":1,"ts":` + ts(-5*time.Second) + `,"type":"bed_exit"}`},
				{"t/v1/s1/bs-1/event", `{"v":1,"device":"bs-1","boot":1,"id":2,"seq":2,"ts":` + ts(-time.Second) + `,"type":"bed_entry"}`},
			},
			device: "bs-1",
			check: func(t *testing.T, d DeviceState) {
				if d.InBed == nil || !*d.InBed || d.LastEvent != "bed_entry" {
					t.Errorf("in bed %v last event %q", d.InBed, d.LastEvent)
				}
			},
		},
		{
			name:   "in_bed reading 0",
			msgs:   []msg{{"t/v1/s1/bs-1/telemetry", `{"v":1,"device":"bs-1","boot":1,"id":1,"seq":1,"ts":` + ts(-time.Second) + `,"values":{"in_bed":0}}`}},
			device: "bs-1",
			check: func(t *testing.T, d DeviceState) {
				if d.InBed == nil || *d.InBed {
					t.Errorf("in bed %v, want false", d.InBed)
				}
			},
		},
		{
			// A replay of the same device id ended cleanly (offline/shutdown)
			// while the device itself goes on: its newer reading is back
			// online; a reading older than the status is not.
			name: "reading older than a shutdown status leaves it offline",
			msgs: []msg{
				{"t/v1/s1/vm-1/status", `{"v":1,"device":"vm-1","ts":` + ts(-5*time.Second) + `,"state":"offline","reason":"shutdown"}`},
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":` + ts(-6*time.Second) + `,"values":{"hr_bpm":80}}`},
			},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.State != device.Offline || d.StateReason != "shutdown" {
					t.Errorf("after an older reading: state %q reason %q, want offline shutdown", d.State, d.StateReason)
				}
			},
		},
		{
			name: "newer reading after a shutdown status",
			msgs: []msg{
				{"t/v1/s1/vm-1/status", `{"v":1,"device":"vm-1","ts":` + ts(-5*time.Second) + `,"state":"offline","reason":"shutdown"}`},
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":` + ts(-time.Second) + `,"values":{"hr_bpm":80}}`},
			},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.State != device.Online || d.StateReason != "" || !d.StateAt.Equal(testNow.Add(-time.Second)) {
					t.Errorf("state %q reason %q at %v, want online at the reading", d.State, d.StateReason, d.StateAt)
				}
			},
		},
		{
			name:   "status online",
			msgs:   []msg{{"t/v1/s1/vm-1/status", `{"v":1,"device":"vm-1","ts":` + ts(0) + `,"state":"online","reason":"boot"}`}},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.State != device.Online || d.StateReason != "boot" {
					t.Errorf("state %q reason %q", d.State, d.StateReason)
				}
			},
		},
		{
			name: "gateway last will marks its devices unknown",
			msgs: []msg{
				{"t/v1/s1/vm-1/status", `{"v":1,"device":"vm-1","ts":` + ts(-time.Minute) + `,"state":"online","gateway":"gw-1"}`},
				{"t/v1/s1/gw-1/status", `{"v":1,"device":"gw-1","ts":` + ts(0) + `,"state":"offline","reason":"gateway_lost","devices":["vm-1"]}`},
			},
			device: "vm-1",
			check: func(t *testing.T, d DeviceState) {
				if d.State != device.Unknown || d.StateReason != device.ReasonGatewayLost {
					t.Errorf("state %q reason %q, want unknown/gateway_lost", d.State, d.StateReason)
				}
			},
		},
		{
			name: "invalid messages are counted and change nothing",
			msgs: []msg{
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":` + ts(0) + `,"values":{"hr_bpm":81}}`},
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"other","boot":1,"id":2,"seq":2,"ts":` + ts(0) + `,"values":{"hr_bpm":1}}`},
				{"t/v1/s1/vm-1/telemetry", `{"v":1,"device":"vm-1","boot":1,"id":3,"seq":3,"ts":` + ts(0) + `,"values":{"hr_bpm":999}}`},
				{"t/v1/s1/vm-1/telemetry", `not json`},
				{"t/v1/alerts/s1", `{"id":"a","event":"opened","alert":{"id":0}}`},
				{"t/v1/alerts/s1", `{"id":"a","event":"exploded","alert":{"id":4}}`},
			},
			device:  "vm-1",
			invalid: 5,
			check: func(t *testing.T, d DeviceState) {
				if d.Latest["hr_bpm"].V != 81 {
					t.Errorf("hr = %v, want 81", d.Latest["hr_bpm"].V)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFeed(t, 8)
			for _, m := range tt.msgs {
				f.HandleMessage(m.topic, []byte(m.payload))
			}
			d, ok := f.Device(tt.device)
			if !ok {
				t.Fatalf("no state for %s", tt.device)
			}
			tt.check(t, d)
			var invalid float64
			for _, ch := range []string{"telemetry", "event", "status", "alert"} {
				invalid += testutil.ToFloat64(f.mMessages.WithLabelValues(ch, "invalid"))
			}
			if invalid != tt.invalid {
				t.Errorf("invalid messages counted %v, want %v", invalid, tt.invalid)
			}
		})
	}
}

func TestFeedAlerts(t *testing.T) {
	t.Parallel()
	f := newTestFeed(t, 8)
	// The feed reads the alert's state from the store; the change is a trigger.
	store := newFakeAlerts(func() time.Time { return testNow }, alerting.Alert{ID: 7, Site: "s1", Device: "fd-1", Type: "fall", Severity: "critical", Status: "open", OpenedAt: testNow})
	f.SetAlertGetter(store)
	change := func(event, status string) string {
		c := alerting.Change{ID: "alert-7-1", Event: event, At: testNow, Alert: alerting.Alert{ID: 7, Site: "s1", Device: "fd-1", Type: "fall", Severity: "critical", Status: status, OpenedAt: testNow}}
		b, _ := json.Marshal(c)
		return string(b)
	}
	f.HandleMessage("t/v1/alerts/s1", []byte(change("opened", "open")))
	got := f.Alerts()
	if len(got) != 1 || got[0].Alert.ID != 7 || got[0].Alert.Resident != nil || got[0].Event != "opened" {
		t.Fatalf("alerts after opened = %+v", got)
	}
	if _, err := store.Resolve(context.Background(), 7, "n", "test", "no_injury", ""); err != nil {
		t.Fatal(err)
	}
	f.HandleMessage("t/v1/alerts/s1", []byte(change("resolved", "resolved")))
	if got := f.Alerts(); len(got) != 0 {
		t.Fatalf("alerts after resolved = %+v", got)
	}
}

func TestFeedSlowSubscriber(t *testing.T) {
	t.Parallel()
	f := newTestFeed(t, 4)
	slow, fast := f.Subscribe(), f.Subscribe()
	const n = 10
	for i := range n {
		f.PublishAlert(alerting.Change{ID: fmt.Sprint(i), Event: "opened", Alert: alerting.Alert{ID: int64(i + 1), Status: "open"}})
		select {
		case <-fast.C():
		default:
			t.Fatalf("fast subscriber missed change %d", i)
		}
	}
	if got := testutil.ToFloat64(f.mDropped); got != n-4 {
		t.Errorf("dropped = %v, want %d", got, n-4)
	}
	if len(slow.C()) != 4 {
		t.Errorf("slow subscriber holds %d, want 4", len(slow.C()))
	}
	slow.Close()
	slow.Close()
	if got := testutil.ToFloat64(f.mClients); got != 1 {
		t.Errorf("clients gauge = %v, want 1", got)
	}
	fast.Close()
	if got := f.Subscribers(); got != 0 {
		t.Errorf("subscribers = %d, want 0", got)
	}
}

// sseReader reads SSE lines from a stream into a channel.
func sseReader(body io.Reader) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitEvent returns the data line of the next SSE event named name.
func waitEvent(t *testing.T, lines <-chan string, name string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	seen := false
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before event %q", name)
			}
			if l == "event: "+name {
				seen = true
			} else if seen && strings.HasPrefix(l, "data: ") {
				return strings.TrimPrefix(l, "data: ")
			}
		case <-deadline:
			t.Fatalf("no %q event within 10 s", name)
		}
	}
}

func TestSSE(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	base := ts.serve(t)
	cookie, _ := ts.login(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := sseReader(resp.Body)
	testenv.EventuallyTrue(t, 15*time.Second, "the SSE client to subscribe", func() bool { return ts.feed.Subscribers() == 1 })
	if got := testutil.ToFloat64(ts.feed.mClients); got != 1 {
		t.Errorf("clients gauge = %v, want 1", got)
	}

	ts.feed.HandleMessage("t/v1/demo-station/vm-101/telemetry", []byte(`{"v":1,"device":"vm-101","boot":1,"id":1,"seq":1,"ts":`+ms(testNow)+`,"values":{"hr_bpm":88}}`))
	var ch Change
	if err := json.Unmarshal([]byte(waitEvent(t, lines, "device")), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Kind != "device" || ch.Device == nil || ch.Device.Device != "vm-101" || ch.Device.Latest["hr_bpm"].V != 88 {
		t.Errorf("device change = %+v", ch)
	}

	ts.feed.PublishAlert(alerting.Change{ID: "alert-9-1", Event: "opened", At: testNow, Alert: alerting.Alert{ID: 9, Site: "demo-station", Device: "vm-101", Type: "sos", Severity: "critical", Status: "open", OpenedAt: testNow}})
	if err := json.Unmarshal([]byte(waitEvent(t, lines, "alert")), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Alert == nil || ch.Alert.Event != "opened" || ch.Alert.Alert.ID != 9 {
		t.Errorf("alert change = %+v", ch)
	}

	deadline := time.After(10 * time.Second)
	for hb := false; !hb; {
		select {
		case l := <-lines:
			hb = l == ": heartbeat"
		case <-deadline:
			t.Fatal("no heartbeat within 10 s")
		}
	}

	cancel()
	resp.Body.Close()
	testenv.EventuallyTrue(t, 15*time.Second, "the disconnected client to be removed", func() bool {
		return ts.feed.Subscribers() == 0 && testutil.ToFloat64(ts.feed.mClients) == 0
	})
}

// TestFeedMQTT runs the live feed against the machine's Mosquitto.
func TestFeedMQTT(t *testing.T) {
	t.Parallel()
	url := testenv.Mosquitto(t)
	root := testenv.TopicRoot(t)
	now := time.Now()
	res := "res-7"
	stored := alerting.Alert{ID: 5, Site: "site-a", Resident: &res, Device: "vm-7", Type: alerting.TypeSpO2Low, Severity: alerting.SeverityHigh, Status: alerting.StatusOpen, OpenedAt: now}
	store := newFakeAlerts(time.Now, stored)
	f, err := NewFeed(FeedConfig{MQTTURL: url, Root: root, ClientID: testenv.ClientID(t, "dash"), Alerts: store}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("feed run: %v", err)
		}
	})
	testenv.EventuallyTrue(t, 15*time.Second, "the feed to connect and subscribe", func() bool { return f.Healthy() == nil })
	sub := f.Subscribe()
	defer sub.Close()

	pub, err := mqttconn.Connect(t.Context(), mqttconn.Options{URL: url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(100)
	publish := func(topic string, payload []byte) {
		t.Helper()
		if err := mqttconn.Wait(t.Context(), pub.Publish(topic, 1, false, payload), 5*time.Second, "publish "+topic); err != nil {
			t.Fatal(err)
		}
	}
	tel := device.Telemetry{V: 1, Device: "vm-7", Boot: 1, ID: 1, Seq: 1, TS: now.UnixMilli(), Values: map[string]float64{"hr_bpm": 64, "spo2_pct": 93}}
	b, _ := json.Marshal(tel)
	publish(device.Topic{Root: root, Site: "site-a", Device: "vm-7", Channel: device.ChanTelemetry}.String(), b)
	chg := alerting.Change{ID: "alert-5-1", Event: alerting.EventOpened, At: now, Alert: stored}
	b, _ = json.Marshal(chg)
	publish(alerting.AlertTopic(root, "site-a"), b)

	var gotDevice, gotAlert bool
	deadline := time.After(10 * time.Second)
	for !gotDevice || !gotAlert {
		select {
		case fr := <-sub.C():
			s := string(fr)
			gotDevice = gotDevice || (strings.HasPrefix(s, "event: device\n") && strings.Contains(s, `"hr_bpm":{"v":64`))
			gotAlert = gotAlert || (strings.HasPrefix(s, "event: alert\n") && strings.Contains(s, `"resident":"res-7"`))
		case <-deadline:
			t.Fatalf("after 10 s: device change %v, alert change %v", gotDevice, gotAlert)
		}
	}
	d, ok := f.Device("vm-7")
	if !ok || d.Site != "site-a" || d.Latest["spo2_pct"].V != 93 {
		t.Errorf("state of vm-7 = %+v", d)
	}
	if as := f.Alerts(); len(as) != 1 || as[0].Alert.ID != 5 || as[0].ID != "alert-5-1" {
		t.Errorf("live alerts = %+v", as)
	}
}
