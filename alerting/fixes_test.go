package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// waitChange waits up to timeout for a change matching ok on ch.
func waitChange(ch <-chan Change, timeout time.Duration, ok func(Change) bool) (Change, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case c := <-ch:
			if ok(c) {
				return c, true
			}
		case <-deadline:
			return Change{}, false
		}
	}
}

// alertFeed subscribes to the MQTT alert topic of every site.
func (e *env) alertFeed() <-chan Change {
	e.t.Helper()
	feed := make(chan Change, 256)
	if err := mqttconn.Wait(context.Background(), e.pub.Subscribe(AlertSubscription(e.root), 1, func(_ paho.Client, msg paho.Message) {
		var c Change
		if json.Unmarshal(msg.Payload(), &c) == nil {
			select {
			case feed <- c:
			default:
			}
		}
	}), 10*time.Second, "subscribe alerts"); err != nil {
		e.t.Fatal(err)
	}
	return feed
}

func allAlerts(t *testing.T, m *Manager) []Alert {
	t.Helper()
	all, err := m.List(context.Background(), Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func alertsOf(t *testing.T, m *Manager, dev, typ string) []Alert {
	t.Helper()
	var out []Alert
	for _, a := range allAlerts(t, m) {
		if a.Device == dev && a.Type == typ {
			out = append(out, a)
		}
	}
	return out
}

// marker publishes a fall on a fresh device and waits for its alert: every
// message published before it has then been handled.
func (e *env) marker(r *running, name string) {
	e.t.Helper()
	e.fall(name, 1)
	testenv.EventuallyTrue(e.t, 10*time.Second, "marker "+name, func() bool { return len(alertsOf(e.t, r.m, name, TypeFall)) == 1 })
}

// Defect 1: a slow webhook must not delay the in-process or MQTT
// notification of a new fall.
func TestSlowWebhookDoesNotDelayOtherReceivers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var mu sync.Mutex
	var calls int
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		<-release // held until the test lets it go (the webhook's client gives up after 10 s)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(unblock) // runs before slow.Close
	feed := e.alertFeed()
	local := make(chan Change, 64)
	e.start(func(c *Config) { c.WebhookURL = slow.URL; c.Receivers = append(c.Receivers, chanReceiver(local)) })

	e.fall("fd-a", 1)
	if _, ok := waitChange(local, 5*time.Second, func(c Change) bool { return c.Alert.Device == "fd-a" }); !ok {
		t.Fatal("no local change for the first fall")
	}
	testenv.EventuallyTrue(t, 5*time.Second, "webhook busy with the first fall", func() bool { mu.Lock(); defer mu.Unlock(); return calls == 1 })

	// The webhook is now held on fd-a's notification: the other receivers
	// get the second fall all the same.
	start := time.Now()
	e.fall("fd-b", 1)
	if _, ok := waitChange(local, 5*time.Second, func(c Change) bool { return c.Alert.Device == "fd-b" && c.Event == EventOpened }); !ok {
		t.Fatalf("in-process subscriber did not get the second fall while the webhook is held")
	}
	t.Logf("local change after %s", time.Since(start))
	if _, ok := waitChange(feed, 5*time.Second, func(c Change) bool { return c.Alert.Device == "fd-b" && c.Event == EventOpened }); !ok {
		t.Fatalf("MQTT alert topic did not get the second fall while the webhook is held")
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 1 {
		t.Fatalf("the webhook moved on (%d calls) before the other receivers had the second fall", n)
	}
	// The webhook still gets both, in turn: unblocked now, it goes on
	// with the second.
	unblock()
	testenv.EventuallyTrue(t, 20*time.Second, "webhook got the second fall", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 2 })
}

// Defect 1: per receiver, the notifications of one alert keep their order
// even when the first one is retried with backoff.
func TestPerReceiverOrderWithRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hook.fail = 1 << 30 // the webhook answers 503 until the test lets it take notifications
	local := make(chan Change, 64)
	var clk skewClock
	r := e.start(func(c *Config) { c.Receivers = append(c.Receivers, chanReceiver(local)); clk.config(c) })
	e.fall("fd-o", 1)
	c, ok := waitChange(local, 15*time.Second, func(c Change) bool { return c.Alert.Device == "fd-o" })
	if !ok {
		t.Fatal("no local change")
	}
	// Acknowledged while the webhook still backs off on "opened".
	if _, err := r.m.Acknowledge(context.Background(), c.Alert.ID, "nurse", "api"); err != nil {
		t.Fatal(err)
	}
	// The webhook takes nothing yet, so the local receiver has this only
	// if it does not wait for the webhook's retries.
	if _, ok := waitChange(local, 5*time.Second, func(c Change) bool { return c.Event == EventAcknowledged }); !ok {
		t.Fatal("local receiver waited for the webhook's retries")
	}
	// The webhook refused "opened" at least once; from now on it takes
	// them, after the dispatcher's backoff.
	testenv.EventuallyTrue(t, 10*time.Second, "webhook refused the opened notification", func() bool {
		e.hook.mu.Lock()
		defer e.hook.mu.Unlock()
		return e.hook.failed >= 1
	})
	e.hook.mu.Lock()
	e.hook.fail = 0
	refused := e.hook.failed
	e.hook.mu.Unlock()
	retryRecorded(t, r.m, "webhook", refused)
	clk.Add(backoff(refused)) // the retry of the last refusal comes due
	testenv.EventuallyTrue(t, 20*time.Second, "webhook got both", func() bool {
		return len(e.hook.changes(TypeFall, EventAcknowledged)) == 1
	})
	e.hook.mu.Lock()
	var order []string
	for _, c := range e.hook.got {
		order = append(order, c.Event)
	}
	e.hook.mu.Unlock()
	if len(order) != 2 || order[0] != EventOpened || order[1] != EventAcknowledged {
		t.Errorf("webhook order %v, want opened, acknowledged", order)
	}
	outboxSettled(t, r.m)
	e.hook.check(t)
}

// Defect 2: a new fall while the alert is acknowledged is announced as
// "repeated" to every receiver.
func TestNewFallWhileAcknowledgedNotifiesRepeated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["fd-1"] = "res-001"
	feed := e.alertFeed()
	local := make(chan Change, 64)
	r := e.start(func(c *Config) { c.Receivers = append(c.Receivers, chanReceiver(local)) })
	e.fall("fd-1", 1)
	c, ok := waitChange(local, 5*time.Second, func(c Change) bool { return c.Event == EventOpened })
	if !ok {
		t.Fatal("no opened change")
	}
	if _, err := r.m.Acknowledge(context.Background(), c.Alert.ID, "nurse", "dashboard"); err != nil {
		t.Fatal(err)
	}
	e.fall("fd-1", 2)
	rep, ok := waitChange(local, 5*time.Second, func(c Change) bool { return c.Event == EventRepeated })
	if !ok {
		t.Fatal("no repeated change for a new fall while acknowledged")
	}
	if rep.Alert.ID != c.Alert.ID || rep.Alert.Status != StatusAcknowledged || rep.ID != fmt.Sprintf("alert-%d-3", c.Alert.ID) {
		t.Errorf("repeated change %+v", rep)
	}
	if _, ok := waitChange(feed, 5*time.Second, func(c Change) bool { return c.Event == EventRepeated }); !ok {
		t.Error("no repeated change on MQTT")
	}
	testenv.EventuallyTrue(t, 10*time.Second, "repeated webhook", func() bool { return len(e.hook.changes(TypeFall, EventRepeated)) == 1 })
	h, _ := r.m.History(context.Background(), c.Alert.ID)
	var repeated int
	for _, x := range h {
		if x.Action == ActionRepeated {
			repeated++
		}
	}
	if repeated != 1 {
		t.Errorf("%d repeated history entries, want 1: %+v", repeated, h)
	}
	// A redelivery of the same event is not a new fall.
	e.fall("fd-1", 2)
	e.marker(r, "fd-marker")
	outboxSettled(t, r.m) // a notification of the redelivery would be at the webhook now
	if n := len(e.hook.changes(TypeFall, EventRepeated)); n != 1 {
		t.Errorf("%d repeated webhooks after a redelivery, want 1", n)
	}
	e.hook.check(t)
}

// spo2Reading publishes one SpO2 reading.
func (e *env) spo2Reading(dev string, boot uint32, seq uint64, ts time.Time, v float64) {
	e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: boot, ID: seq, Seq: seq, TS: ts.UnixMilli(),
		Values: map[string]float64{"spo2_pct": v}})
}

// Defect 2: a vitals breach that goes on re-arms its window: while the
// alert is open, a "repeated" entry without notification; after a resolve,
// a new alert after another full sustain period.
func TestVitalsBreachRearms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(nil)
	t0 := time.Now().Add(-100 * time.Second)
	seq := uint64(0)
	send := func(from, to int) {
		for s := from; s <= to; s++ {
			seq++
			e.spo2Reading("vm-r", 1, seq, t0.Add(time.Duration(s)*time.Second), 85)
		}
	}
	send(0, 30)
	testenv.EventuallyTrue(t, 10*time.Second, "first spo2 alert", func() bool { return len(alertsOf(t, r.m, "vm-r", TypeSpO2Low)) == 1 })
	first := alertsOf(t, r.m, "vm-r", TypeSpO2Low)[0]
	send(31, 60) // still open: repeated, not notified
	testenv.EventuallyTrue(t, 10*time.Second, "repeated entry", func() bool {
		h, _ := r.m.History(context.Background(), first.ID)
		for _, x := range h {
			if x.Action == ActionRepeated {
				return true
			}
		}
		return false
	})
	if _, err := r.m.Resolve(context.Background(), first.ID, "nurse", "api", OutcomeOther, "probe"); err != nil {
		t.Fatal(err)
	}
	send(61, 89)                     // 29 s more: not yet
	e.readingsHandled(r, "probe-m1") // the readings session: a fall marker would come on the events one
	if n := len(alertsOf(t, r.m, "vm-r", TypeSpO2Low)); n != 1 {
		t.Fatalf("%d spo2 alerts after 29 s more, want 1", n)
	}
	send(90, 90) // 30 s of device time since the last firing
	testenv.EventuallyTrue(t, 10*time.Second, "second spo2 alert", func() bool { return len(alertsOf(t, r.m, "vm-r", TypeSpO2Low)) == 2 })
	testenv.EventuallyTrue(t, 10*time.Second, "two opened webhooks", func() bool { return len(e.hook.changes(TypeSpO2Low, EventOpened)) == 2 })
	if n := len(e.hook.changes(TypeSpO2Low, EventRepeated)); n != 0 {
		t.Errorf("%d repeated webhooks for vitals, want none", n)
	}
}

// Defect 3: with more than Limit open alerts, the critical ones are listed
// (first), whatever their age.
func TestListSeverityBeforeLimit(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		clock := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
		m.now = func() time.Time { clock = clock.Add(time.Second); return clock }
		open := func(dev, typ, sev string) {
			s := openSpec{Site: "demo", Device: dev, Type: typ, Severity: sev, At: clock, Detail: "x"}
			s.Key = dedupKey(nil, dev, typ)
			if _, _, err := m.open(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 { // the oldest alerts are the critical ones
			open(fmt.Sprintf("fd-%d", i), TypeFall, SeverityCritical)
		}
		open("env-1", TypeDeviceOffline, SeverityWarning)
		for i := range 105 {
			open(fmt.Sprintf("vm-%d", i), TypeSpO2Low, SeverityHigh)
		}
		list, err := m.List(ctx, Filter{Status: []string{StatusOpen, StatusAcknowledged}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 100 {
			t.Fatalf("%d alerts listed, want 100", len(list))
		}
		for i := range 3 {
			if list[i].Severity != SeverityCritical {
				t.Fatalf("alert %d is %s, want the 3 critical alerts first", i, list[i].Severity)
			}
		}
		if list[0].Device != "fd-2" || list[2].Device != "fd-0" {
			t.Errorf("critical alerts %s, %s, %s: want newest first", list[0].Device, list[1].Device, list[2].Device)
		}
		for _, a := range list[3:] {
			if a.Severity != SeverityHigh {
				t.Fatalf("%s alert listed while high ones were cut", a.Severity)
			}
		}
		if list[3].Device != "vm-104" {
			t.Errorf("first high alert %s, want the newest (vm-104)", list[3].Device)
		}
	})
}

// Defect 4 and 8: a fall or SOS that fails validation still raises its
// alert, stamped at receive time, with the reason in the detail; the
// rejected metric is labelled with channel and rule.
func TestMalformedSafetyEventsRaise(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["fd-sec"] = "res-009"
	r := e.start(nil)
	now := time.Now()
	ms := now.UnixMilli()
	cases := []struct {
		dev, payload, reason string
	}{
		{"fd-sec", fmt.Sprintf(`{"v":1,"device":"fd-sec","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall"}`, now.Unix()), "unit_ms"},
		{"fd-zero", `{"v":1,"device":"fd-zero","boot":1,"id":1,"seq":1,"ts":0,"type":"fall"}`, "required"},
		{"fd-nots", `{"v":1,"device":"fd-nots","boot":1,"id":1,"seq":1,"type":"fall"}`, "required"},
		{"fd-ahead", fmt.Sprintf(`{"v":1,"device":"fd-ahead","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall"}`, now.Add(time.Hour).UnixMilli()), "future"},
		{"fd-extra", fmt.Sprintf(`{"v":1,"device":"fd-extra","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall","room":"12b"}`, ms), "unknown_field"},
		{"fd-null", fmt.Sprintf(`{"v":1,"device":"fd-null","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall","attrs":{"confidence":null}}`, ms), "type"},
		{"sos-sec", fmt.Sprintf(`{"v":1,"device":"sos-sec","boot":1,"id":1,"seq":1,"ts":%d,"type":"sos"}`, now.Unix()), "unit_ms"},
		// Not JSON, found by an adversarial test: a bare NaN, data after the
		// object, a cut-off object, an oversized one.
		{"fd-nan", fmt.Sprintf(`{"v":1,"device":"fd-nan","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall","attrs":{"peak_accel_ms2":NaN}}`, ms), "json"},
		{"sos-trail", fmt.Sprintf(`{"v":1,"device":"sos-trail","boot":1,"id":1,"seq":1,"ts":%d,"type":"sos"} trailing`, ms), "json"},
		{"sos-cut", fmt.Sprintf(`{"v":1,"device":"sos-cut","boot":1,"id":1,"seq":1,"ts":%d,"type":"sos","attrs":{"loc`, ms), "json"},
		{"fd-big", fmt.Sprintf(`{"v":1,"device":"fd-big","boot":1,"id":1,"seq":1,"ts":%d,"type":"fall","attrs":{"note":"%s"}}`, ms, strings.Repeat("x", 300_000)), "size"},
	}
	topic := func(dev string) string {
		return device.Topic{Root: e.root, Site: "demo", Device: dev, Channel: device.ChanEvent}.String()
	}
	for _, tc := range cases {
		e.publishRaw(topic(tc.dev), []byte(tc.payload))
	}
	// A malformed event of another type raises nothing.
	e.publishRaw(topic("bed-1"), []byte(`{"v":1,"device":"bed-1","boot":1,"id":1,"seq":1,"ts":0,"type":"bed_exit"}`))
	for _, tc := range cases {
		t.Run(tc.dev, func(t *testing.T) {
			typ := TypeFall
			if strings.HasPrefix(tc.dev, "sos") {
				typ = TypeSOS
			}
			testenv.EventuallyTrue(t, 10*time.Second, typ+" alert", func() bool { return len(alertsOf(t, r.m, tc.dev, typ)) == 1 })
			a := alertsOf(t, r.m, tc.dev, typ)[0]
			if a.Severity != SeverityCritical || a.Site != "demo" {
				t.Errorf("alert %+v", a)
			}
			inDetail := tc.reason
			if tc.reason == "json" || tc.reason == "size" {
				inDetail = "" // the error's own words; the metric below checks the reason
			}
			if !strings.Contains(a.Detail, "malformed event") || !strings.Contains(a.Detail, inDetail) {
				t.Errorf("detail %q: want it to say malformed event and %s", a.Detail, tc.reason)
			}
			if d := a.OpenedAt.Sub(now); d < -time.Second || d > 30*time.Second {
				t.Errorf("opened at %s, want the receive time (~%s)", a.OpenedAt, now)
			}
			if got := rejected(r.reg, "event", tc.reason); got < 1 {
				t.Errorf("eldercare_alerting_rejected_total{channel=event,reason=%s} = %g", tc.reason, got)
			}
		})
	}
	if a := allAlerts(t, r.m); len(a) != len(cases) {
		t.Errorf("%d alerts, want %d", len(a), len(cases))
	}
	if a := alertsOf(t, r.m, "fd-sec", TypeFall); len(a) == 1 && (a[0].Resident == nil || *a[0].Resident != "res-009") {
		t.Errorf("fd-sec alert resident %v, want res-009", a[0].Resident)
	}
	// A redelivery of the malformed fall (same boot and seq) is not a new fall.
	e.publishRaw(topic("fd-zero"), []byte(cases[1].payload))
	e.marker(r, "fd-marker")
	zero := alertsOf(t, r.m, "fd-zero", TypeFall)
	if len(zero) != 1 {
		t.Fatalf("%d fall alerts for fd-zero, want 1", len(zero))
	}
	h, _ := r.m.History(context.Background(), zero[0].ID)
	for _, x := range h {
		if x.Action == ActionRepeated {
			t.Errorf("redelivered malformed fall repeated: %+v", h)
		}
	}
}

// rejected returns the value of eldercare_alerting_rejected_total with the
// given labels.
func rejected(reg *prometheus.Registry, channel, reason string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "eldercare_alerting_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if len(labels) == 2 && labels["channel"] == channel && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Defect 5: a device clock that jumped ahead must not blind the rules to
// the real readings that follow.
func TestClockJumpAheadDoesNotBlind(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(nil)
	now := time.Now()
	e.spo2Reading("vm-j", 1, 1, now.Add(290*time.Second), 97)
	for i := 0; i <= 60; i++ {
		e.spo2Reading("vm-j", 1, uint64(i+2), now.Add(time.Duration(i-60)*time.Second), 85)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "spo2 alert after the clock jump", func() bool { return len(alertsOf(t, r.m, "vm-j", TypeSpO2Low)) == 1 })
}

// Defect 6: the same fall delivered again after its alert was resolved
// raises nothing; a new fall does.
func TestDuplicateFallAfterResolve(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(nil)
	e.fall("fd-d", 7)
	testenv.EventuallyTrue(t, 10*time.Second, "fall alert", func() bool { return len(alertsOf(t, r.m, "fd-d", TypeFall)) == 1 })
	a := alertsOf(t, r.m, "fd-d", TypeFall)[0]
	if _, err := r.m.Resolve(context.Background(), a.ID, "nurse", "api", OutcomeNoInjury, ""); err != nil {
		t.Fatal(err)
	}
	e.fall("fd-d", 7) // redelivery
	e.marker(r, "fd-marker")
	if n := len(alertsOf(t, r.m, "fd-d", TypeFall)); n != 1 {
		t.Fatalf("%d fall alerts after a redelivery, want 1", n)
	}
	e.fall("fd-d", 8) // a new fall
	testenv.EventuallyTrue(t, 10*time.Second, "second fall alert", func() bool { return len(alertsOf(t, r.m, "fd-d", TypeFall)) == 2 })
	outboxSettled(t, r.m)
	var n int
	for _, c := range e.hook.changes(TypeFall, EventOpened) {
		if c.Alert.Device == "fd-d" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d opened webhooks for fd-d, want 2", n)
	}
}

func TestRecentEventsBounded(t *testing.T) {
	t.Parallel()
	r := newRecentEvents(3)
	for i := range 5 {
		r.add(eventKey{"d", 1, uint64(i)})
	}
	if r.len() != 3 || r.seen(eventKey{"d", 1, 0}) || r.seen(eventKey{"d", 1, 1}) || !r.seen(eventKey{"d", 1, 4}) {
		t.Fatalf("LRU keeps %d keys, want the 3 newest", r.len())
	}
	r.seen(eventKey{"d", 1, 2}) // a use keeps it
	r.add(eventKey{"d", 1, 5})
	if !r.seen(eventKey{"d", 1, 2}) || r.seen(eventKey{"d", 1, 3}) {
		t.Error("LRU evicted a recently used key")
	}
	if r.seen(eventKey{"d", 2, 4}) || r.seen(eventKey{"e", 1, 4}) {
		t.Error("keys differ by device and boot")
	}
}

// Defect 7 (issue 10 item 5): a gateway's last will is ONE device_offline
// alert, for the gateway, naming its devices; they are unknown, not offline.
func TestGatewayLastWill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["bed-7"] = "res-007"
	r := e.start(nil)
	e.publishRaw(device.Topic{Root: e.root, Site: "demo", Device: "gw-7", Channel: device.ChanStatus}.String(),
		[]byte(fmt.Sprintf(`{"v":1,"device":"gw-7","ts":%d,"state":"unknown","reason":"gateway_lost","devices":["bed-7","sos-7"]}`, time.Now().UnixMilli())))
	testenv.EventuallyTrue(t, 10*time.Second, "offline alert for gw-7", func() bool { return len(alertsOf(t, r.m, "gw-7", TypeDeviceOffline)) == 1 })
	gw := alertsOf(t, r.m, "gw-7", TypeDeviceOffline)[0]
	if !strings.Contains(gw.Detail, "gateway gw-7 lost") || !strings.Contains(gw.Detail, "bed-7, sos-7") || gw.Severity != SeverityWarning || gw.Site != "demo" {
		t.Errorf("gateway alert %+v", gw)
	}
	for _, dev := range []string{"bed-7", "sos-7"} {
		if n := len(alertsOf(t, r.m, dev, TypeDeviceOffline)); n != 0 {
			t.Errorf("%s: %d offline alerts, want none (its gateway's alert names it)", dev, n)
		}
	}
	// A device of the lost gateway with its own offline will (here bed-7,
	// heard of before) is one more alert only for its own reason.
	e.publish("bed-7", device.ChanStatus, device.Status{V: 1, Device: "bed-7", TS: time.Now().UnixMilli(), State: device.Online, Reason: device.ReasonBoot})
	e.publish("bed-7", device.ChanStatus, device.Status{V: 1, Device: "bed-7", TS: time.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonLastWill})
	testenv.EventuallyTrue(t, 10*time.Second, "offline alert for bed-7", func() bool { return len(alertsOf(t, r.m, "bed-7", TypeDeviceOffline)) == 1 })
	// Defect 9: the offline alert names the resident, but deduplicates per
	// device.
	a := alertsOf(t, r.m, "bed-7", TypeDeviceOffline)[0]
	if a.Resident == nil || *a.Resident != "res-007" {
		t.Errorf("bed-7 offline alert resident %v, want res-007", a.Resident)
	}
	var key string
	r.m.db.QueryRow(r.m.db.Rebind(`SELECT dedup_key FROM alerts WHERE id = ?`), a.ID).Scan(&key)
	if key != "device:bed-7:device_offline" {
		t.Errorf("dedup key %q, want per device", key)
	}
	// Heard from again: back online is noted.
	e.publish("bed-7", device.ChanStatus, device.Status{V: 1, Device: "bed-7", TS: time.Now().UnixMilli(), State: device.Online, Reason: device.ReasonBoot})
	testenv.EventuallyTrue(t, 10*time.Second, "back-online note", func() bool {
		h, _ := r.m.History(context.Background(), a.ID)
		for _, x := range h {
			if x.Action == ActionComment && x.Detail == "device back online" {
				return true
			}
		}
		return false
	})
}

// Defects 8 and 9: the documentation says what the code does.
func TestAlertingDocMatchesCode(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "docs", "alerting.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if strings.Contains(doc, "field:rule") {
		t.Error("docs/alerting.md still says the rejected reason is field:rule; the code uses the rule")
	}
	for _, want := range []string{
		"eldercare_alerting_rejected_total{channel,reason}",
		"`device_offline` alerts name the device's resident",
		"`repeated`",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/alerting.md lacks %q", want)
		}
	}
}

// A detector that fires many times a second pages once, then at most once
// per RepeatNoticeEvery; every event is still in the alert's history.
func TestFallFloodCoalesced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["fd-f"] = "res-f"
	r := e.start(nil)
	for seq := uint64(1); seq <= 40; seq++ {
		e.fall("fd-f", seq)
	}
	testenv.EventuallyTrue(t, 30*time.Second, "40 falls recorded", func() bool {
		a := openAlerts(t, r.m, TypeFall)
		if len(a) != 1 {
			return false
		}
		h, _ := r.m.History(context.Background(), a[0].ID)
		n := 0
		for _, x := range h {
			if x.Action == ActionRepeated {
				n++
			}
		}
		return n == 39
	})
	outboxSettled(t, r.m) // every notice of the 40 falls is at the webhook
	if n := len(e.hook.changes(TypeFall, EventOpened)); n != 1 {
		t.Errorf("%d opened notifications, want 1", n)
	}
	if n := len(e.hook.changes(TypeFall, EventRepeated)); n != 1 {
		t.Errorf("%d repeated notifications for 39 more falls within %s, want 1", n, RepeatNoticeEvery)
	}
}
