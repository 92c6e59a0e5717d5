package broker_test

import (
	"context"
	"encoding/json"
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
	"go.etcd.io/bbolt"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// collector gathers the payloads a persistent session receives.
type collector struct {
	mu  sync.Mutex
	got map[string]int
}

func (c *collector) handler(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	c.got[string(m.Payload())]++
	c.mu.Unlock()
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// TestStoreKeepsSessionsAcrossRestart: a persistent subscriber that is away
// while 200 QoS 1 messages arrive gets every one of them after the broker
// was stopped and started again on the same store file; its subscription
// and a retained message come back too.
func TestStoreKeepsSessionsAcrossRestart(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	store := filepath.Join(t.TempDir(), "store.db")
	start := func() *broker.Broker {
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store, Root: root})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	ctx := context.Background()
	subID := testenv.ClientID(t, "sub")
	sub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, sub.Subscribe(root+"/#", 1, nil), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)

	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "pub"), CleanSession: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if err := mqttconn.Wait(ctx, pub.Publish(root+"/v1/s1/d1/telemetry", 1, false, fmt.Sprint(i)), 5*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	if err := mqttconn.Wait(ctx, pub.Publish(root+"/v1/s1/d1/status", 1, true, "retained"), 5*time.Second, "publish"); err != nil {
		t.Fatal(err)
	}
	pub.Disconnect(100)
	b.Close()

	b = start()
	defer b.Close()
	got := &collector{got: map[string]int{}}
	// Subscribe nothing: the restored session's subscription and queue
	// must bring the messages.
	sub, err = mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, DefaultHandler: got.handler, OrderMatters: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	testenv.EventuallyTrue(t, 20*time.Second, fmt.Sprintf("%d queued messages after the restart", n+1), func() bool { return got.count() >= n+1 })
	for i := range n {
		if got.got[fmt.Sprint(i)] == 0 {
			t.Errorf("message %d lost across the restart", i)
		}
	}
	// A new client sees the retained status.
	ret := &collector{got: map[string]int{}}
	c2, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "late"), CleanSession: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Disconnect(0)
	if err := mqttconn.Wait(ctx, c2.Subscribe(root+"/v1/s1/d1/status", 1, ret.handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the retained status after the restart", func() bool { return ret.count() == 1 })
}

// TestStoreJournalReplay: a message the broker acknowledged but had not yet
// queued for its subscribers when it was killed (here: an entry left in
// the journal, as a kill -9 between mochi's PUBACK and its fan-out leaves
// it) is published again at the next start and reaches the persistent
// subscriber.
func TestStoreJournalReplay(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	store := filepath.Join(t.TempDir(), "store.db")
	ctx := context.Background()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store})
	if err != nil {
		t.Fatal(err)
	}
	subID := testenv.ClientID(t, "sub")
	sub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, sub.Subscribe(root+"/#", 1, nil), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)
	b.Close()

	db, err := bbolt.Open(store, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(map[string]any{"topic": root + "/v1/s1/fd-1/event", "qos": 1, "payload": []byte("fall"), "origin": "gw-1"})
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("journal")).Put([]byte("gw-1\x00\x00\x07"), entry) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	reg := prometheus.NewRegistry()
	b, err = broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Replayed != 1 {
		t.Errorf("Replayed = %d, want 1", b.Replayed)
	}
	got := &collector{got: map[string]int{}}
	sub, err = mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, DefaultHandler: got.handler, OrderMatters: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	testenv.EventuallyTrue(t, 10*time.Second, "the journalled fall", func() bool { return got.count() == 1 })
	if got.got["fall"] != 1 {
		t.Errorf("got %v, want the journalled fall", got.got)
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_journal_pending")); n != 0 {
		t.Errorf("journal_pending = %v after the replay, want 0", n)
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_store_bytes")); n <= 0 {
		t.Errorf("store_bytes = %v, want the file's size", n)
	}
}

// TestStoreLocked: a second broker on the same store file (a second "up"
// on one data directory) is refused with a clear error.
func TestStoreLocked(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "store.db")
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store})
	if err == nil {
		t.Fatal("a second broker opened the same store")
	}
	if want := "locked"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestTakeoverSignal: two clients with one client id kicking each other off
// are counted, and the limit within the window is signalled once as a
// client_takeover event that passes the protocol's event validation.
func TestTakeoverSignal(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	reg := prometheus.NewRegistry()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, Root: root, Registerer: reg,
		TakeoverLimit: 3, TakeoverWindow: time.Hour,
		Auth: &broker.Auth{Root: root, Lookup: accounts(t), InternalUser: "eldercare-internal", InternalPassword: internalPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	events := make(chan paho.Message, 10)
	ops, err := mqttconn.Connect(ctx, mqttconn.Options{URL: withUser(b.URL(), "eldercare-internal", internalPass), ClientID: "eldercare-up-alerting", CleanSession: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Disconnect(0)
	if err := mqttconn.Wait(ctx, ops.Subscribe(root+"/v1/+/+/event", 1, func(_ paho.Client, m paho.Message) { events <- m }), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	// Four connections as gw-1, each taking over the one before. They are
	// plain paho clients with auto-reconnect off (mqttconn always turns it
	// on): once kicked off, a client stays off, so there are exactly 3
	// takeovers and no reconnection still in flight when the broker closes.
	for range 4 {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("gw-1").SetUsername("gw-1").SetPassword("gw1-secret").
			SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false))
		if err := mqttconn.Wait(ctx, c.Connect(), 5*time.Second, "connect"); err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "3 takeovers counted", func() bool {
		return testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_session_takeovers_total")) >= 3
	})
	var m paho.Message
	select {
	case m = <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("no client_takeover event")
	}
	if want := root + "/v1/s1/gw-1/event"; m.Topic() != want {
		t.Errorf("event topic %s, want %s", m.Topic(), want)
	}
	ev, err := device.DecodeEvent(m.Payload(), time.Now(), device.Limits{})
	if err != nil {
		t.Fatalf("the event fails validation: %v\n%s", err, m.Payload())
	}
	if ev.Type != device.EventClientTakeover || ev.Device != "gw-1" || ev.Attrs["client_id"] != "gw-1" || ev.Attrs["takeovers"] != float64(3) {
		t.Errorf("event = %+v", ev)
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_session_takeovers_total")); n != 3 {
		t.Errorf("takeovers = %v, want 3 (four connections, none reconnecting)", n)
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_takeover_alerts_total")); n != 1 {
		t.Errorf("takeover alerts = %v, want 1 (once per window)", n)
	}
	select {
	case m := <-events:
		t.Errorf("a second event within the window: %s", m.Payload())
	case <-time.After(300 * time.Millisecond):
	}
}

// TestClientIDBound: a gateway credential can take neither a platform
// service's client id nor another gateway's, so alerting's persistent
// session keeps receiving: a fall published meanwhile by the legitimate
// gateway reaches it.
func TestClientIDBound(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	reg := prometheus.NewRegistry()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, Root: root, Registerer: reg,
		Auth: &broker.Auth{Root: root, Lookup: accounts(t), InternalUser: "eldercare-internal", InternalPassword: internalPass,
			ServiceClientIDs: []string{"eldercare-up-alerting", "eldercare-up-ingest"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	falls := make(chan string, 10)
	alerting, err := mqttconn.Connect(ctx, mqttconn.Options{URL: withUser(b.URL(), "eldercare-internal", internalPass), ClientID: "eldercare-up-alerting",
		Logger: quietLog, DefaultHandler: func(_ paho.Client, m paho.Message) { falls <- string(m.Payload()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer alerting.Disconnect(0)
	if err := mqttconn.Wait(ctx, alerting.Subscribe(root+"/v1/+/+/event", 1, nil), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"eldercare-up-alerting", "eldercare-up-ingest", "gw-1", "anything-else"} {
		t.Run("gw-2 as "+id, func(t *testing.T) {
			_, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), "gw-2", "gw2-secret"), ClientID: id})
			if err == nil {
				t.Fatalf("gw-2's credential connected with client id %s", id)
			}
		})
	}
	gw, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), "gw-1", "gw1-secret"), ClientID: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, gw.Publish(root+"/v1/s1/bed-1/event", 1, false, "fall"), 5*time.Second, "publish"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-falls:
		if p != "fall" {
			t.Errorf("alerting got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fall never reached alerting's session")
	}
	if !alerting.IsConnectionOpen() {
		t.Error("alerting's connection was taken over")
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_session_takeovers_total")); n != 0 {
		t.Errorf("takeovers = %v, want 0", n)
	}
}
