package broker_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
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

// takeoverDuringResume drives a second takeover into the resumption of a
// persistent session: a message is published while the session moves to
// a second connection (as publishDuringResume), that connection's CONNACK
// is held until a third connection took the session over from it, and
// the third's CONNACK is held until the second finished
// OnSessionEstablished. The second connection thus completes its
// resumption already taken over (a client that gave up on a slow CONNACK
// and connected again).
type takeoverDuringResume struct {
	*publishDuringResume

	mu          sync.Mutex
	connacks    int
	second      *mqtt.Client
	secondHeld  chan struct{} // the second connection's CONNACK is held
	secondReady chan struct{} // the second connection's session is established
}

func (h *takeoverDuringResume) ID() string { return "test-takeover-during-resume" }

func (h *takeoverDuringResume) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnQosDropped, mqtt.OnPacketSent, mqtt.OnSessionEstablished}, []byte{b})
}

func (h *takeoverDuringResume) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if cl.ID != h.client || pk.FixedHeader.Type != packets.Connack {
		return
	}
	h.mu.Lock()
	h.connacks++
	n := h.connacks
	if n == 1 {
		h.second = cl
	}
	h.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	switch n {
	case 1:
		close(h.secondHeld)
		for !cl.IsTakenOver() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	case 2:
		select {
		case <-h.secondReady:
		case <-time.After(5 * time.Second):
		}
	}
}

func (h *takeoverDuringResume) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	second := h.second
	h.mu.Unlock()
	if cl == second {
		close(h.secondReady)
	}
}

// TestPublishDuringResumeSurvivesSecondTakeover: a message published while
// a persistent session moves to a new connection reaches the subscriber
// when that connection is itself taken over before its session is
// established. resumeHook handed the kept messages to the connection
// that was already taken over, whose queue nobody reads again: the
// message was lost.
func TestPublishDuringResumeSurvivesSecondTakeover(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	ctx := context.Background()
	topic := root + "/v1/s1/sos-1/event"
	subID := testenv.ClientID(t, "alerting")
	h := &holder{got: map[string]paho.Message{}, ack: func(string) bool { return true }}
	connect := func() (paho.Client, error) {
		return mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, AutoAckDisabled: true,
			DefaultHandler: h.handler, OrderMatters: true, Logger: quietLog})
	}
	sub, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, sub.Subscribe(topic, 1, h.handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)

	hook := &takeoverDuringResume{publishDuringResume: newPublishDuringResume(b.Server(), subID, topic, "during-resume"),
		secondHeld: make(chan struct{}), secondReady: make(chan struct{})}
	if err := b.Server().AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Server().Publish(topic, []byte("while-away"), false, 1); err != nil {
		t.Fatal(err)
	}

	// The second connection: a bare CONNECT (clean session false).
	defer rawConnect(t, b, subID).Close()
	hook.wait(t)
	select {
	case <-hook.secondHeld:
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection got no CONNACK")
	}

	// The third connection takes the session over.
	sub, err = connect()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	select {
	case <-hook.secondReady:
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection's session was not established (did mochi change how it takes a session over?)")
	}
	waitDelivered(t, h, []string{"while-away", "during-resume"}, "the session moved twice")
}

// rawConnect opens a connection to b and sends a bare MQTT 3.1.1 CONNECT
// with clean session false for client; the caller closes it.
func rawConnect(t *testing.T, b *broker.Broker, client string) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", strings.TrimPrefix(b.URL(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	cp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: client, Keepalive: 30}}
	if err := cp.ConnectEncode(&buf); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	if _, err := raw.Write(buf.Bytes()); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	return raw
}

// dropDuringResume publishes, once, during the resumption of a persistent
// session (as publishDuringResume) and then ends the new connection before
// its CONNACK: the client's network failed while it reconnected.
type dropDuringResume struct {
	*publishDuringResume

	mu    sync.Mutex
	fresh *mqtt.Client
}

func newDropDuringResume(srv *mqtt.Server, client, topic, payload string) *dropDuringResume {
	h := &dropDuringResume{publishDuringResume: newPublishDuringResume(srv, client, topic, payload)}
	h.then = func() {
		h.mu.Lock()
		h.fresh.Stop(errors.New("test: network gone"))
		h.mu.Unlock()
	}
	return h
}

func (h *dropDuringResume) ID() string { return "test-drop-during-resume" }

func (h *dropDuringResume) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnQosDropped}, []byte{b})
}

func (h *dropDuringResume) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID == h.client {
		h.mu.Lock()
		h.fresh = cl
		h.mu.Unlock()
	}
}

// TestQueuedMessageSurvivesFailedResumeAfterRestart: after a restart on
// the store, mochi numbers the restored session's deliveries from 1 again.
// A message published while the session resumes, queued on the restored
// client object after mochi cleared the queued message with id 1 from it,
// took id 1, and the store wrote it over that queued message's record. The
// new connection failed before its CONNACK (so nothing stored the queued
// message again), and after the next restart the queued message was gone.
func TestQueuedMessageSurvivesFailedResumeAfterRestart(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	cfg := broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, Root: root, StorePath: filepath.Join(t.TempDir(), "store.db")}
	ctx := context.Background()
	topic := root + "/v1/s1/sos-1/event"
	subID := testenv.ClientID(t, "alerting")
	start := func() *broker.Broker {
		b, err := broker.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h := &holder{got: map[string]paho.Message{}, ack: func(string) bool { return true }}
	connect := func(b *broker.Broker) (paho.Client, error) {
		return mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: subID, AutoAckDisabled: true,
			DefaultHandler: h.handler, OrderMatters: true, Logger: quietLog})
	}

	b := start()
	sub, err := connect(b)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, sub.Subscribe(topic, 1, h.handler), 5*time.Second, "subscribe"); err != nil {
		b.Close()
		t.Fatal(err)
	}
	sub.Disconnect(100)
	if err := b.Server().Publish(topic, []byte("while-away"), false, 1); err != nil {
		b.Close()
		t.Fatal(err)
	}
	b.Close()

	b = start()
	hook := newDropDuringResume(b.Server(), subID, topic, "during-resume")
	if err := b.Server().AddHook(hook, nil); err != nil {
		b.Close()
		t.Fatal(err)
	}
	defer rawConnect(t, b, subID).Close()
	hook.wait(t)
	time.Sleep(100 * time.Millisecond) // the failed connection ends
	b.Close()

	b = start()
	defer func() { b.Close() }()
	sub, err = connect(b)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	waitDelivered(t, h, []string{"while-away", "during-resume"}, "the next restart")
}
