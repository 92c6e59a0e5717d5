package broker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// holder collects the messages a persistent session receives without
// acknowledging them, except those ack says to.
type holder struct {
	mu  sync.Mutex
	got map[string]paho.Message
	ack func(payload string) bool
}

func (h *holder) handler(_ paho.Client, m paho.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got[string(m.Payload())] = m
	if h.ack(string(m.Payload())) {
		m.Ack()
	}
}

func (h *holder) has(payloads []string) func() bool {
	return func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, p := range payloads {
			if _, ok := h.got[p]; !ok {
				return false
			}
		}
		return true
	}
}

func (h *holder) missing(payloads []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range payloads {
		if _, ok := h.got[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// TestOwnPublishKeepsQueuedMessages: a persistent QoS 1 subscriber holds
// unacknowledged deliveries (packet ids chosen by the broker) and
// publishes QoS 1 messages of its own (packet ids chosen by the client,
// from 1 up, so they coincide with those of the held deliveries). MQTT
// packet ids are per direction: none of the held deliveries may be lost.
// After a reconnection every unacknowledged one comes again, and again
// after a restart of the broker on its store.
func TestOwnPublishKeepsQueuedMessages(t *testing.T) {
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
	defer func() { b.Close() }()
	ctx := context.Background()
	topic := root + "/v1/s1/d1/telemetry"
	subID := testenv.ClientID(t, "sub")
	const n = 40
	var all, odd []string
	for i := range n {
		all = append(all, fmt.Sprintf("m%03d", i))
		if i%2 == 1 {
			odd = append(odd, all[i])
		}
	}
	// connectSub connects the persistent subscriber; it acknowledges what
	// ack says to.
	connectSub := func(ack func(string) bool) (paho.Client, *holder) {
		h := &holder{got: map[string]paho.Message{}, ack: ack}
		c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, AutoAckDisabled: true,
			DefaultHandler: h.handler, OrderMatters: true, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		return c, h
	}

	sub, h := connectSub(func(p string) bool { return p[len(p)-1]%2 == 0 }) // even ones
	if err := mqttconn.Wait(ctx, sub.Subscribe(topic, 1, h.handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "pub"), CleanSession: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)
	for _, p := range all {
		if err := mqttconn.Wait(ctx, pub.Publish(topic, 1, false, p), 5*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyTrue(t, 10*time.Second, "every message delivered once", h.has(all))
	// The subscriber's own QoS 1 and 2 messages, on a topic it does not
	// subscribe: ids 2.. (1 went to the SUBSCRIBE), the ids of the held
	// deliveries among them. Each is acknowledged with its own id and
	// reaches its subscriber.
	own := &collector{got: map[string]int{}}
	if err := mqttconn.Wait(ctx, pub.Subscribe(root+"/v1/s1/d1/own", 2, own.handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	for i := range n + 2 {
		if err := mqttconn.Wait(ctx, sub.Publish(root+"/v1/s1/d1/own", byte(2-i%2), false, fmt.Sprint(i)), 5*time.Second, "own publish"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the subscriber's own messages delivered", func() bool { return own.count() == n+2 })
	sub.Disconnect(100)

	// Reconnected: the held (odd) ones come again; not acknowledged.
	sub, h = connectSub(func(string) bool { return false })
	testenv.Eventually(t, 10*time.Second, func() string {
		if m := h.missing(odd); len(m) > 0 {
			return fmt.Sprintf("unacknowledged messages not delivered again after reconnecting: %v", m)
		}
		return ""
	})
	sub.Disconnect(100)

	// And after a restart, from the store; acknowledged now.
	b.Close()
	b = start()
	sub, h = connectSub(func(string) bool { return true })
	defer sub.Disconnect(0)
	testenv.Eventually(t, 10*time.Second, func() string {
		if m := h.missing(odd); len(m) > 0 {
			return fmt.Sprintf("unacknowledged messages not delivered again after the broker's restart: %v", m)
		}
		return ""
	})
}
