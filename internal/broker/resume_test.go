package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// publishDuringResume publishes, once, a message for a persistent session
// at the moment mochi moves that session to a new connection: from inside
// the clearing of the old connection's queue (OnQosDropped on a taken-over
// client), after mochi copied that queue and before it registered the new
// connection. A device's publish arriving then is routed to the old client
// object (inheritClientSession; see resumeHook). then, if set, runs right
// after the publish, still inside that window.
type publishDuringResume struct {
	mqtt.HookBase
	srv            *mqtt.Server
	client         string
	topic, payload string
	then           func()
	once           sync.Once
	published      chan struct{}
}

func newPublishDuringResume(srv *mqtt.Server, client, topic, payload string) *publishDuringResume {
	return &publishDuringResume{srv: srv, client: client, topic: topic, payload: payload, published: make(chan struct{})}
}

func (h *publishDuringResume) ID() string { return "test-publish-during-resume" }

func (h *publishDuringResume) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnQosDropped}, []byte{b})
}

func (h *publishDuringResume) OnQosDropped(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID != h.client || !cl.IsTakenOver() {
		return
	}
	h.once.Do(func() {
		if err := h.srv.Publish(h.topic, []byte(h.payload), false, 1); err != nil {
			panic(err)
		}
		if h.then != nil {
			h.then()
		}
		close(h.published)
	})
}

// wait fails t unless the hook published within 10 s.
func (h *publishDuringResume) wait(t *testing.T) {
	t.Helper()
	select {
	case <-h.published:
	case <-time.After(10 * time.Second):
		t.Fatal("the test hook did not publish during the resumption (did mochi change how it takes a session over?)")
	}
}

// waitDelivered waits until h holds every payload of want.
func waitDelivered(t *testing.T, h *holder, want []string, after string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() string {
		if m := h.missing(want); len(m) > 0 {
			return fmt.Sprintf("not delivered after %s: %v", after, m)
		}
		return ""
	})
}

// TestPublishWhileSessionResumes: a QoS 1 message published while a
// persistent subscriber's session moves to its new connection is
// delivered on that connection, with and without a store. Before resumeHook, mochi v2.7.9 queued it on the
// old connection's object and it never arrived (cmd/eldercare's
// TestRestartAlerting lost an SOS press this way in 2 % of runs).
func TestPublishWhileSessionResumes(t *testing.T) {
	t.Parallel()
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", stored), func(t *testing.T) {
			t.Parallel()
			root := testenv.TopicRoot(t)
			cfg := broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, Root: root}
			if stored {
				cfg.StorePath = filepath.Join(t.TempDir(), "store.db")
			}
			b, err := broker.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { b.Close() }()
			ctx := context.Background()
			topic := root + "/v1/s1/sos-1/event"
			subID := testenv.ClientID(t, "alerting")
			connectSub := func() (paho.Client, *holder) {
				h := &holder{got: map[string]paho.Message{}, ack: func(string) bool { return true }}
				c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, AutoAckDisabled: true,
					DefaultHandler: h.handler, OrderMatters: true, Logger: quietLog})
				if err != nil {
					t.Fatal(err)
				}
				return c, h
			}
			sub, h := connectSub()
			if err := mqttconn.Wait(ctx, sub.Subscribe(topic, 1, h.handler), 5*time.Second, "subscribe"); err != nil {
				t.Fatal(err)
			}
			sub.Disconnect(100)

			// One message queued while the subscriber is away (so the
			// old connection's queue has something to clear), one
			// published during the resumption by the hook.
			hook := newPublishDuringResume(b.Server(), subID, topic, "during-resume")
			if err := b.Server().AddHook(hook, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Server().Publish(topic, []byte("while-away"), false, 1); err != nil {
				t.Fatal(err)
			}
			sub, h = connectSub()
			defer sub.Disconnect(0)
			hook.wait(t)
			waitDelivered(t, h, []string{"while-away", "during-resume"}, "the session resumed")
		})
	}
}
