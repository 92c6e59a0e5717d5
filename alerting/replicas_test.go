package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// startReplica runs a Service with its own manager on dsn and MQTT client
// id role, after importing settings (nil: none), until the test ends.
func (e *env) startReplica(dsn, role string, settings *Settings, mod func(*Config, *Manager)) *running {
	t := e.t
	m := openTestManager(t, dsn)
	if settings != nil {
		if err := m.ImportSettings(context.Background(), "test", *settings); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{MQTTURL: e.url, Root: e.root, ClientID: testenv.ClientID(t, role),
		WebhookURL: e.hook.srv.URL, WebhookSecret: testSecret, PollEvery: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg, m)
	}
	res := ResidentsFunc(func(dev string, _ time.Time) (registry.Resident, bool) {
		return registry.Resident{ID: "res-" + dev, SiteID: "demo"}, true
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
	probe := fmt.Sprintf("probe-%s-%d", role, time.Now().UnixNano()%1e9)
	testenv.EventuallyTrue(t, 10*time.Second, role+" subscribed", func() bool {
		e.publish(probe, device.ChanStatus, device.Status{V: 1, Device: probe, TS: time.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonShutdown})
		return svc.knows(probe)
	})
	return &running{svc: svc, m: m, reg: reg, stop: stop}
}

// TestReplicasOnPostgres: two alerting replicas on one PostgreSQL database
// and one topic root; each fall is published twice, 5 ms apart, by two
// clients (two ingest paths, e.g. the device and its gateway's spool). Every
// fall gives one alert, and every notification (opened, then escalation
// step 1 after 1 s) reaches the webhook exactly once.
func TestReplicasOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.PostgresDSN(t)
	e := newEnv(t)
	second, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "pub2"),
		CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Disconnect(100) })
	settings := testSettings(t)
	settings.Policies = []Policy{{ID: "fast", Steps: []Step{
		{After: 0, Targets: []string{"on_duty"}},
		{After: Duration(time.Second), Targets: []string{"role:nurse_lead"}},
	}}}
	a := e.startReplica(dsn, "replica-a", &settings, nil)
	b := e.startReplica(dsn, "replica-b", nil, nil)

	const N = 12
	for i := range N {
		dev := fmt.Sprintf("fd-r%02d", i)
		ev := device.Event{V: 1, Device: dev, Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventFall}
		body, _ := json.Marshal(ev)
		topic := device.Topic{Root: e.root, Site: "demo", Device: dev, Channel: device.ChanEvent}.String()
		e.publishRaw(topic, body)
		time.Sleep(5 * time.Millisecond)
		if err := mqttconn.Wait(context.Background(), second.Publish(topic, 1, false, body), 10*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyTrue(t, 30*time.Second, "every opened and escalated notification", func() bool {
		return len(e.hook.changes(TypeFall, EventOpened)) >= N && len(e.hook.changes(TypeFall, EventEscalated)) >= N
	})
	// A marker fall after them: once both replicas handle it, each has
	// made its decisions on every fall above, and once the outbox is
	// settled (escalation step 1 of every fall is in it: all were
	// delivered above) every notification they led to is at the webhook.
	e.fall("fd-marker", 1)
	for _, r := range []*running{a, b} {
		testenv.EventuallyTrue(t, 10*time.Second, "marker handled", func() bool { return r.svc.knows("fd-marker") })
	}
	outboxSettled(t, a.m)
	e.hook.check(t)
	e.hook.mu.Lock()
	seen := map[string]int{}
	events := map[string]int{}
	for _, c := range e.hook.got {
		seen[c.ID]++
		if c.Alert.Type != TypeFall || c.Alert.Device == "fd-marker" {
			continue
		}
		events[c.Event]++
	}
	e.hook.mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("notification %s received %d times", id, n)
		}
	}
	if events[EventOpened] != N || events[EventEscalated] != N || events[EventRepeated] != 0 {
		t.Errorf("webhook events %v, want %d opened, %d escalated, no repeated", events, N, N)
	}
	var falls int
	for _, x := range openAlerts(t, a.m, TypeFall) {
		if x.Device != "fd-marker" {
			falls++
		}
	}
	if falls != N {
		t.Errorf("%d open fall alerts, want %d", falls, N)
	}
}
