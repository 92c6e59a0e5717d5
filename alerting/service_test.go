package alerting

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

const testSecret = "s3cret-for-tests"

// hook is a real HTTP webhook receiver on loopback that checks signatures.
type hook struct {
	mu     sync.Mutex
	got    []Change
	bad    []string
	srv    *httptest.Server
	fail   int // answer 503 to the first fail requests
	failed int // requests answered 503
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail > 0 {
			h.fail--
			h.failed++
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if !VerifySignature([]byte(testSecret), body, r.Header.Get(HeaderSignature)) {
			h.bad = append(h.bad, "bad signature: "+r.Header.Get(HeaderSignature))
		}
		var c Change
		if err := json.Unmarshal(body, &c); err != nil {
			h.bad = append(h.bad, "bad body: "+err.Error())
		}
		if r.Header.Get(HeaderNotificationID) != c.ID || c.ID == "" {
			h.bad = append(h.bad, "notification id header "+r.Header.Get(HeaderNotificationID)+" vs body "+c.ID)
		}
		if _, err := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64); err != nil {
			h.bad = append(h.bad, "timestamp header: "+err.Error())
		}
		h.got = append(h.got, c)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// retryRecorded waits until m has recorded attempt n of a delivery to
// receiver (refused, so due again after backoff(n), or a later attempt): a
// skewClock moved before that would be taken into the retry time.
func retryRecorded(t *testing.T, m *Manager, receiver string, n int) {
	t.Helper()
	testenv.EventuallyTrue(t, 20*time.Second, fmt.Sprintf("%s attempt %d recorded", receiver, n), func() bool {
		var k int
		err := m.db.QueryRow(m.db.Rebind(`SELECT COUNT(*) FROM alert_deliveries WHERE receiver = ? AND attempts >= ?`), receiver, n).Scan(&k)
		return err == nil && k > 0
	})
}

// skewClock is a Service's Config.Now in the tests of delivery retries: the
// wall clock plus an offset that the test moves past the dispatcher's
// backoff once the refusal is recorded, instead of waiting it out (1 s, 2 s,
// ... of real time). Pair it with a short Config.PollEvery, the period at
// which the dispatcher looks for retries that have come due.
type skewClock struct{ off atomic.Int64 }

func (c *skewClock) Now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *skewClock) Add(d time.Duration) { c.off.Add(int64(d)) }
func (c *skewClock) config(cfg *Config)  { cfg.Now, cfg.PollEvery = c.Now, 20*time.Millisecond }

func (h *hook) changes(typ, event string) []Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Change
	for _, c := range h.got {
		if c.Alert.Type == typ && c.Event == event {
			out = append(out, c)
		}
	}
	return out
}

func (h *hook) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bad {
		t.Error("webhook:", b)
	}
}

type env struct {
	t        *testing.T
	url      string
	root     string
	dsn      string
	clientID string // of the Service that start runs
	hook     *hook
	pub      paho.Client
	binding  map[string]string // device -> resident
}

// newEnv gives a test its own embedded broker (the product's, mochi-mqtt:
// these tests are about the alerting service, not about Mosquitto), a
// fresh SQLite alert store and a webhook receiver.
func newEnv(t *testing.T) *env {
	e := &env{t: t, url: testenv.EmbeddedBroker(t).URL(), root: testenv.TopicRoot(t), dsn: sqldbtest.SQLiteDSN(t),
		clientID: testenv.ClientID(t, "alerting"), hook: newHook(t), binding: map[string]string{}}
	c, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	e.pub = c
	return e
}

type running struct {
	svc  *Service
	m    *Manager
	reg  *prometheus.Registry
	stop func()
}

// start runs a Service (client id fixed per env, so a restart resumes the
// persistent sessions) until the returned stop is called.
func (e *env) start(mod func(*Config)) *running {
	t := e.t
	m := openTestManager(t, e.dsn)
	cfg := Config{MQTTURL: e.url, Root: e.root, ClientID: e.clientID,
		WebhookURL: e.hook.srv.URL, WebhookSecret: testSecret}
	if mod != nil {
		mod(&cfg)
	}
	res := ResidentsFunc(func(dev string, _ time.Time) (registry.Resident, bool) {
		id, ok := e.binding[dev]
		return registry.Resident{ID: id, SiteID: "demo"}, ok
	})
	reg := prometheus.NewRegistry()
	svc, err := New(cfg, m, res, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	// Wait until the subscription is live: a probe status message must be
	// seen. (Run subscribes in OnConnect.)
	probe := fmt.Sprintf("probe-%d", time.Now().UnixNano()%1e9)
	testenv.EventuallyTrue(t, 10*time.Second, "service subscribed", func() bool {
		e.publish(probe, device.ChanStatus, device.Status{V: 1, Device: probe, TS: time.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonShutdown})
		return counterSum(reg, "eldercare_alerting_rejected_total") == 0 && svc.knows(probe)
	})
	return &running{svc: svc, m: m, reg: reg, stop: stop}
}

// knows reports whether the service has processed a message of dev.
func (s *Service) knows(dev string) bool { return s.devices.Knows(dev) }

func (e *env) publish(dev string, ch device.Channel, payload any) {
	e.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publishRaw(device.Topic{Root: e.root, Site: "demo", Device: dev, Channel: ch}.String(), b)
}

func (e *env) publishRaw(topic string, b []byte) {
	e.t.Helper()
	if err := mqttconn.Wait(context.Background(), e.pub.Publish(topic, 1, false, b), 10*time.Second, "publish"); err != nil {
		e.t.Fatal(err)
	}
}

// outboxSettled waits until every notification in m's outbox is done with
// (delivered, refused for good or skipped by every receiver): the
// receivers then have all that the decisions stored so far will ever give
// them, so a test can count what they got.
func outboxSettled(t *testing.T, m *Manager) {
	t.Helper()
	testenv.EventuallyTrue(t, 30*time.Second, "outbox settled", func() bool {
		var pending int
		err := m.db.QueryRow(`SELECT COUNT(*) FROM alert_outbox WHERE sent_ms IS NULL`).Scan(&pending)
		return err == nil && pending == 0
	})
}

func counterSum(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// bidmc reads a BIDMC numerics file into readings (NaN cells are absent).
func bidmc(t *testing.T, name string) []map[string]float64 {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RealData(t), "vitals-bidmc", name+"_Numerics.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cols := []string{"", "hr_bpm", "pulse_bpm", "resp_per_min", "spo2_pct"}
	var out []map[string]float64
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		cells := strings.Split(sc.Text(), ",")
		vals := map[string]float64{}
		for i := 1; i < len(cells) && i < len(cols); i++ {
			v, err := strconv.ParseFloat(strings.TrimSpace(cells[i]), 64)
			if err != nil || v != v {
				continue
			}
			vals[cols[i]] = v
		}
		if len(vals) > 0 {
			out = append(out, vals)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// replay publishes readings 1 s apart in device time (the time the rules
// go by), one after the other, the last one stamped now.
func (e *env) replay(dev string, rows []map[string]float64, boot uint32) {
	e.t.Helper()
	end := time.Now()
	for i, vals := range rows {
		ts := end.Add(-time.Duration(len(rows)-1-i) * time.Second)
		e.publish(dev, device.ChanTelemetry, device.Telemetry{V: 1, Device: dev, Boot: boot, ID: uint64(i + 1), Seq: uint64(i + 1),
			TS: ts.UnixMilli(), Values: vals})
	}
}

// readingsHandled publishes the status of a new device probe on the
// readings and status session and waits until the service has handled it:
// then every reading published before it is handled too (one session, in
// order). A fall is no such marker: events come on another session and
// lane.
func (e *env) readingsHandled(r *running, probe string) {
	e.t.Helper()
	e.publish(probe, device.ChanStatus, device.Status{V: 1, Device: probe, TS: time.Now().UnixMilli(), State: device.Online})
	testenv.EventuallyTrue(e.t, 20*time.Second, probe+" handled", func() bool { return r.svc.knows(probe) })
}

func (e *env) fall(dev string, id uint64) {
	e.publish(dev, device.ChanEvent, device.Event{V: 1, Device: dev, Boot: 1, ID: id, Seq: id, TS: time.Now().UnixMilli(),
		Type: device.EventFall, Attrs: map[string]any{"peak_accel_ms2": 61.2}})
}

func openAlerts(t *testing.T, m *Manager, typ string) []Alert {
	t.Helper()
	all, err := m.List(context.Background(), Filter{Status: []string{StatusOpen, StatusAcknowledged}})
	if err != nil {
		t.Fatal(err)
	}
	var out []Alert
	for _, a := range all {
		if typ == "" || a.Type == typ {
			out = append(out, a)
		}
	}
	return out
}

func TestBIDMC32LowSpO2AndRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rows := bidmc(t, "bidmc_32")
	e.binding["vm-32"] = "res-032"

	// A display on the alert topic sees the change too.
	feed := make(chan Change, 16)
	if err := mqttconn.Wait(context.Background(), e.pub.Subscribe(AlertSubscription(e.root), 1, func(_ paho.Client, msg paho.Message) {
		var c Change
		if json.Unmarshal(msg.Payload(), &c) == nil {
			feed <- c
		}
	}), 10*time.Second, "subscribe alerts"); err != nil {
		t.Fatal(err)
	}

	local := make(chan Change, 64)
	r := e.start(func(c *Config) { c.Receivers = append(c.Receivers, chanReceiver(local)) })
	e.replay("vm-32", rows, 1)
	e.readingsHandled(r, "probe-32a")
	testenv.EventuallyTrue(t, 15*time.Second, "opened webhook", func() bool { return len(e.hook.changes(TypeSpO2Low, EventOpened)) > 0 })

	alerts := openAlerts(t, r.m, TypeSpO2Low)
	if len(alerts) != 1 {
		t.Fatalf("%d open spo2_low alerts, want 1: %+v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.Resident == nil || *a.Resident != "res-032" || a.Unassigned || a.Severity != SeverityHigh || a.Value == nil || *a.Value < 83 || *a.Value > 87 {
		t.Fatalf("alert %+v", a)
	}
	// The NEWS2 finding may already be added (inhibit.go).
	if first, _, _ := strings.Cut(a.Detail, ";"); !strings.HasPrefix(first, "SpO2 8") || !strings.HasSuffix(first, "% for 30 s") {
		t.Errorf("detail %q", a.Detail)
	}
	// bidmc_32 also scores NEWS2 urgent (SpO2 85 %: 3, RR 25: 3; see
	// news2_test.go), added to this alert as a finding (inhibit.go).
	if len(openAlerts(t, r.m, "")) != 1 {
		t.Errorf("other alerts open: %+v", openAlerts(t, r.m, ""))
	}
	select {
	case c := <-feed:
		if c.Event != EventOpened || c.Alert.ID != a.ID || c.ID != fmt.Sprintf("alert-%d-1", a.ID) {
			t.Errorf("mqtt change %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Error("no change on the MQTT alert topic")
	}
	select {
	case c := <-local:
		if c.Alert.ID != a.ID {
			t.Errorf("local change %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Error("no change for the in-process subscriber")
	}

	// Restart while the alert is open and send the breaching data again.
	r.stop()
	r2 := e.start(nil)
	e.replay("vm-32", rows[:60], 2)
	testenv.EventuallyTrue(t, 15*time.Second, "repeated history entry", func() bool {
		h, err := r2.m.History(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range h {
			if x.Action == ActionRepeated {
				return true
			}
		}
		return false
	})
	// Every reading is handled and every notification the restarted
	// service wrote has been delivered: a second "opened" would be at the
	// webhook now.
	e.readingsHandled(r2, "probe-32b")
	outboxSettled(t, r2.m)
	if n := len(openAlerts(t, r2.m, TypeSpO2Low)); n != 1 {
		t.Errorf("%d open spo2_low alerts after restart, want 1", n)
	}
	if n := len(e.hook.changes(TypeSpO2Low, EventOpened)); n != 1 {
		t.Errorf("%d opened webhooks, want exactly 1", n)
	}

	// Acknowledge from "another process" (a second Manager on the same
	// database): the running dispatcher delivers it by polling.
	other := openTestManager(t, e.dsn)
	if _, err := other.Acknowledge(context.Background(), a.ID, "nurse-li", "dashboard"); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "acknowledged webhook", func() bool { return len(e.hook.changes(TypeSpO2Low, EventAcknowledged)) == 1 })
	h, _ := other.History(context.Background(), a.ID)
	var notified int
	for _, x := range h {
		if x.Action == ActionNotified && x.Channel == "webhook" {
			notified++
		}
	}
	if notified < 1 {
		t.Errorf("no webhook 'notified' history entry: %+v", h)
	}
	e.hook.check(t)
}

func TestBIDMC01NoVitalsAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["vm-01"] = "res-001"
	r := e.start(nil)
	e.replay("vm-01", bidmc(t, "bidmc_01"), 1)
	e.readingsHandled(r, "probe-01")
	if n := counterSum(r.reg, "eldercare_alerting_rejected_total"); n != 0 {
		t.Errorf("%g readings rejected", n)
	}
	for _, typ := range []string{TypeSpO2Low, TypeHeartRate, TypeRespiration} {
		if a := openAlerts(t, r.m, typ); len(a) != 0 {
			t.Errorf("unexpected %s alerts: %+v", typ, a)
		}
	}
}

func TestFallSOSUnassignedAndMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["fd-1"] = "res-001"
	r := e.start(nil)

	// Malformed messages are counted and do not block what follows.
	e.publishRaw(device.Topic{Root: e.root, Site: "demo", Device: "fd-1", Channel: device.ChanEvent}.String(), []byte(`{"v":1,`))
	e.publish("fd-1", device.ChanEvent, device.Event{V: 1, Device: "someone-else", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventFall})
	e.fall("fd-1", 2)
	e.fall("fd-1", 3) // a second fall while open: "repeated"
	e.fall("fd-new", 1)
	e.publish("sos-1", device.ChanEvent, device.Event{V: 1, Device: "sos-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventSOS})

	testenv.EventuallyTrue(t, 10*time.Second, "fall and sos alerts", func() bool {
		return len(openAlerts(t, r.m, TypeFall)) == 2 && len(openAlerts(t, r.m, TypeSOS)) == 1
	})
	if n := counterSum(r.reg, "eldercare_alerting_rejected_total"); n != 2 {
		t.Errorf("rejected %g messages, want 2", n)
	}
	var bound, unbound *Alert
	for _, a := range openAlerts(t, r.m, TypeFall) {
		switch a.Device {
		case "fd-1":
			bound = &a
		case "fd-new":
			unbound = &a
		}
	}
	if bound == nil || bound.Resident == nil || *bound.Resident != "res-001" || bound.Severity != SeverityCritical {
		t.Fatalf("bound fall %+v", bound)
	}
	if unbound == nil || unbound.Resident != nil || !unbound.Unassigned {
		t.Fatalf("unassigned fall %+v", unbound)
	}
	b, _ := json.Marshal(unbound)
	if !strings.Contains(string(b), `"resident":null`) || !strings.Contains(string(b), `"unassigned":true`) {
		t.Errorf("unassigned JSON %s", b)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "repeated fall in history", func() bool {
		h, _ := r.m.History(context.Background(), bound.ID)
		if len(h) < 2 {
			return false
		}
		for _, e := range h[1:] { // "notified" entries may come first
			if e.Action == ActionRepeated {
				return true
			}
		}
		return false
	})
	testenv.EventuallyTrue(t, 10*time.Second, "3 opened webhooks", func() bool {
		return len(e.hook.changes(TypeFall, EventOpened)) == 2 && len(e.hook.changes(TypeSOS, EventOpened)) == 1
	})
	e.hook.check(t)
}

func TestWebhookRetryAndPermanent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hook.fail = 2 // two 503s, then success
	var clk skewClock
	r := e.start(clk.config)
	e.fall("fd-r", 1)
	// Each refusal is retried after its backoff (1 s, then 2 s), which the
	// clock skips once the refusal and its retry time are recorded.
	for n := 1; n <= 2; n++ {
		retryRecorded(t, r.m, "webhook", n)
		clk.Add(backoff(n))
	}
	testenv.EventuallyTrue(t, 20*time.Second, "webhook after retries", func() bool { return len(e.hook.changes(TypeFall, EventOpened)) == 1 })
	if n := counterSum(r.reg, "eldercare_alerting_notifications_total"); n < 3 {
		t.Errorf("%g delivery attempts counted, want >= 3", n)
	}

	// A 4xx is permanent: recorded as failed, not retried.
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no such hook", http.StatusNotFound) }))
	defer gone.Close()
	wh := &Webhook{URL: gone.URL, Secret: testSecret}
	err := wh.Send(context.Background(), Notification{ID: "alert-1-1", Body: []byte(`{}`)})
	if err == nil || !IsPermanent(err) {
		t.Fatalf("404: %v, want a permanent error", err)
	}
	wh.URL = "http://127.0.0.1:1" // nothing listens
	if err := wh.Send(context.Background(), Notification{ID: "alert-1-1", Body: []byte(`{}`)}); err == nil || IsPermanent(err) {
		t.Fatalf("connection refused: %v, want a retryable error", err)
	}
	e.hook.check(t)
}

func TestDevicePermanentFailureRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad", http.StatusBadRequest) }))
	defer gone.Close()
	r := e.start(func(c *Config) { c.WebhookURL = gone.URL })
	e.fall("fd-p", 1)
	testenv.EventuallyTrue(t, 10*time.Second, "outbox settled", func() bool {
		var status string
		err := r.m.db.QueryRow(`SELECT status FROM alert_deliveries WHERE receiver = 'webhook'`).Scan(&status)
		return err == nil && status == deliveryFailed
	})
	// Receivers deliver independently: the row is settled once the other
	// receivers (local, mqtt) are done too.
	outboxSettled(t, r.m)
}

func TestOffline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The offline timer runs on an injected clock, moved by the test.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	r := e.start(func(c *Config) { c.OfflineTimeout = 2 * time.Second; c.Now = now })
	status := func(dev string, st device.State, reason string) device.Status {
		return device.Status{V: 1, Device: dev, TS: now().UnixMilli(), State: st, Reason: reason}
	}
	e.publish("dev-will", device.ChanStatus, status("dev-will", device.Online, device.ReasonBoot))
	e.publish("dev-clean", device.ChanStatus, status("dev-clean", device.Online, device.ReasonBoot))
	e.publish("dev-silent", device.ChanTelemetry, device.Telemetry{V: 1, Device: "dev-silent", Boot: 1, ID: 1, Seq: 1, TS: now().UnixMilli(), Values: map[string]float64{"room_temp_c": 21}})
	e.publish("dev-will", device.ChanStatus, status("dev-will", device.Offline, device.ReasonLastWill))
	e.publish("dev-clean", device.ChanStatus, status("dev-clean", device.Offline, device.ReasonShutdown))
	// A later message of the same session: once it is handled, so are the
	// ones above, all heard at the clock's start.
	e.publish("probe-off", device.ChanStatus, status("probe-off", device.Offline, device.ReasonShutdown))
	testenv.EventuallyTrue(t, 10*time.Second, "probe handled", func() bool { return r.svc.knows("probe-off") })

	byDevice := func() map[string]Alert {
		out := map[string]Alert{}
		for _, a := range openAlerts(t, r.m, TypeDeviceOffline) {
			out[a.Device] = a
		}
		return out
	}
	testenv.EventuallyTrue(t, 10*time.Second, "last-will alert", func() bool { _, ok := byDevice()["dev-will"]; return ok })
	if _, ok := byDevice()["dev-silent"]; ok {
		t.Fatal("silence alert before the timeout")
	}
	// Past the timeout of every device heard above; the second offline
	// check that ends after the move began after it, so every verdict due
	// is applied by then.
	clock.Add(int64(3 * time.Second))
	checks := r.svc.offlineChecks.Load()
	testenv.EventuallyTrue(t, 10*time.Second, "silence alert", func() bool { _, ok := byDevice()["dev-silent"]; return ok })
	testenv.EventuallyTrue(t, 10*time.Second, "an offline check after the clock moved", func() bool { return r.svc.offlineChecks.Load() >= checks+2 })
	got := byDevice()
	if _, ok := got["dev-clean"]; ok {
		t.Errorf("clean shutdown raised %+v", got["dev-clean"])
	}
	if a := got["dev-will"]; a.Severity != SeverityWarning || !strings.Contains(a.Detail, "last_will") {
		t.Errorf("last-will alert %+v", a)
	}
	if len(got) != 2 {
		t.Errorf("offline alerts for %v, want dev-will and dev-silent", got)
	}
	// Coming back does not resolve, but notes it.
	silent := got["dev-silent"]
	e.publish("dev-silent", device.ChanStatus, status("dev-silent", device.Online, device.ReasonBoot))
	testenv.EventuallyTrue(t, 10*time.Second, "back-online note", func() bool {
		h, _ := r.m.History(context.Background(), silent.ID)
		for _, x := range h {
			if x.Action == ActionComment && x.Detail == "device back online" {
				return true
			}
		}
		return false
	})
	if a, _ := r.m.Get(context.Background(), silent.ID); a.Status != StatusOpen {
		t.Errorf("back online changed status to %s", a.Status)
	}
}

// chanReceiver is a receiver that puts each change on ch (buffered; a full
// channel fails the send, which is retried).
type chanReceiver chan Change

func (r chanReceiver) Name() string { return "test-chan" }

func (r chanReceiver) Send(_ context.Context, n Notification) error {
	var c Change
	if err := json.Unmarshal(n.Body, &c); err != nil {
		return Permanent(err)
	}
	select {
	case r <- c:
		return nil
	default:
		return errors.New("test receiver full")
	}
}
