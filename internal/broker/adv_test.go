package broker

// Adversarial tests of packetIDHook and the store with a raw MQTT 3.1.1
// client: packet ids chosen by the test, acknowledgements withheld, so the
// colliding flows are exactly the ones under test.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawClient is an MQTT 3.1.1 client that sends and reads single packets.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// rawReadWait bounds a read that must succeed (a guard against a hang,
// not a measurement).
const rawReadWait = 10 * time.Second

func dialRaw(t *testing.T, b *Broker, id string, clean bool) (*rawClient, packets.Packet) {
	t.Helper()
	conn, err := net.Dial("tcp", b.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: clean, Keepalive: 60}})
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: got %v", id, ack)
	}
	return c, ack
}

func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1
		err = pk.SubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		c.t.Fatalf("rawClient cannot send %v", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// read reads the next packet from the broker.
func (c *rawClient) read() packets.Packet {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(rawReadWait))
	hb, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		c.t.Fatal(err)
	}
	n, err := binary.ReadUvarint(c.r) // MQTT's remaining length is a base-128 varint
	if err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: 4}
	switch fh.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return pk
}

// expect reads the next packet and fails unless it has type typ and
// packet id id.
func (c *rawClient) expect(what string, typ byte, id uint16) packets.Packet {
	c.t.Helper()
	pk := c.read()
	if pk.FixedHeader.Type != typ || pk.PacketID != id {
		c.t.Fatalf("%s: got %s id %d (payload %q), want %s id %d", what, packets.PacketNames[pk.FixedHeader.Type], pk.PacketID, pk.Payload,
			packets.PacketNames[typ], id)
	}
	return pk
}

func (c *rawClient) subscribe(filter string, qos byte, id uint16) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	c.expect("suback", packets.Suback, id)
}

func (c *rawClient) publish(topic string, qos byte, id uint16, payload string) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic,
		PacketID: id, Payload: []byte(payload)})
}

func (c *rawClient) pubrel(id uint16) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
}

// gone waits until the broker has handled the end of the connection of
// client id (its session, if persistent, stays).
func gone(t *testing.T, b *Broker, id string) {
	t.Helper()
	deadline := time.Now().Add(rawReadWait)
	for {
		cl, ok := b.srv.Clients.Get(id)
		if !ok || cl.Closed() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not notice that %s left", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quietBroker(t *testing.T, store string) *Broker {
	t.Helper()
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StorePath: store, Root: "test-adv"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCleanSessionForgetsPacketIDMappings: a client whose persistent
// session had a mapped QoS 2 flow (its id 5 -> 6 inside the broker, the
// PUBREL never sent) comes back with a clean session, so the broker
// discards that session. In the new session a fresh QoS 2 flow of the
// client is mapped to the same inside id 6; then the client publishes QoS 1
// with id 5, which is free in the new session. That message must be
// delivered and acknowledged as 5, not taken for a duplicate of the other
// flow (PUBREC in use, message dropped).
func TestCleanSessionForgetsPacketIDMappings(t *testing.T) {
	t.Parallel()
	b := quietBroker(t, "")
	defer b.Close()
	const id = "adv-clean"
	watch, _ := dialRaw(t, b, "adv-clean-watch", true)
	watch.subscribe("test-adv/own", 0, 1)

	// hold connects id and queues five QoS 1 deliveries for it (ids 1-5,
	// not acknowledged).
	hold := func(clean bool) *rawClient {
		c, _ := dialRaw(t, b, id, clean)
		c.subscribe("test-adv/q", 1, 100)
		for i := range 5 {
			if err := b.srv.Publish("test-adv/q", fmt.Appendf(nil, "q%d", i), false, 1); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			c.expect("queued delivery", packets.Publish, uint16(i+1))
		}
		return c
	}
	c := hold(false)
	c.publish("test-adv/own", 2, 5, "old") // collides with delivery 5
	c.expect("pubrec of the old session's flow", packets.Pubrec, 5)
	c.conn.Close()
	gone(t, b, id)

	c = hold(true)
	c.publish("test-adv/own", 2, 1, "y") // collides with delivery 1
	c.expect("pubrec of y", packets.Pubrec, 1)
	c.publish("test-adv/own", 1, 5, "x") // collides with delivery 5 only
	c.expect("puback of x", packets.Puback, 5)
	for _, want := range []string{"old", "y", "x"} {
		pk := watch.read()
		if string(pk.Payload) != want {
			t.Fatalf("watcher got %q, want %q", pk.Payload, want)
		}
	}
}

// TestPubrelAfterRestartKeepsQueuedDelivery: a persistent client has
// published QoS 2 with id 1 and received the PUBREC; the broker restarts
// (the PUBREC state is not stored) and queues a delivery for the client,
// which gets id 1 again. When the client comes back it sends its PUBREL 1,
// as MQTT requires: that PUBREL must not complete (and so delete) the
// delivery 1, which the client has not acknowledged yet; the next time it
// connects the delivery comes again.
func TestPubrelAfterRestartKeepsQueuedDelivery(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "store.db")
	b := quietBroker(t, store)
	defer func() { b.Close() }()
	const id = "adv-pubrel"
	c, _ := dialRaw(t, b, id, false)
	c.subscribe("test-adv/pubrel", 1, 100)
	c.publish("test-adv/pubrel-own", 2, 1, "own")
	c.expect("pubrec", packets.Pubrec, 1)
	c.conn.Close()
	gone(t, b, id)
	b.Close()

	b = quietBroker(t, store)
	if err := b.srv.Publish("test-adv/pubrel", []byte("queued"), false, 1); err != nil {
		t.Fatal(err)
	}
	c, ack := dialRaw(t, b, id, false)
	if !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	if pk := c.expect("queued delivery", packets.Publish, 1); string(pk.Payload) != "queued" {
		t.Fatalf("got %q", pk.Payload)
	}
	c.pubrel(1) // the client's own flow 1; the delivery 1 is not acknowledged
	c.expect("pubcomp", packets.Pubcomp, 1)
	c.conn.Close()
	gone(t, b, id)

	c, _ = dialRaw(t, b, id, false)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	// The broker resends a session's queue before it reads from the
	// connection: the delivery, if kept, comes before the PINGRESP.
	pk := c.read()
	if pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "queued" {
		t.Fatalf("unacknowledged delivery lost: after reconnecting got %s %q, want the PUBLISH of %q again",
			packets.PacketNames[pk.FixedHeader.Type], pk.Payload, "queued")
	}
}

// TestPubackOnlyForJournalled: the broker acknowledges a QoS 1 message only
// once its journal entry is committed. A client id longer than the store's
// keys may be (bbolt's 32768 bytes; MQTT allows 65535) makes the writes of
// its session and of its journal entries fail (a journal entry committed
// in the batch of its own delete is skipped, so not every one shows as an
// error): such a client must not get a PUBACK for a message the store
// cannot hold. Refusing its connection does.
func TestPubackOnlyForJournalled(t *testing.T) {
	t.Parallel()
	b := quietBroker(t, filepath.Join(t.TempDir(), "store.db"))
	defer b.Close()
	conn, err := net.Dial("tcp", b.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), ClientIdentifier: strings.Repeat("c", 33000), Keepalive: 60}})
	// Refused (a CONNACK with an error, or the connection closed): fine.
	_ = conn.SetReadDeadline(time.Now().Add(rawReadWait))
	var head [4]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return
	}
	if head[0]>>4 != packets.Connack || head[3] != 0 {
		return
	}
	c.publish("test-adv/long", 1, 1, "m")
	pk := c.read()
	if pk.FixedHeader.Type == packets.Puback {
		t.Fatalf("PUBACK for a client whose session and journal entries the store cannot write (store errors: %v)",
			testutil.ToFloat64(b.store.errors))
	}
}

// TestFullQueueOwnPublishKeepsDelivery: a persistent client's queue is
// full (the broker queues no more for it) and the client, back, publishes
// QoS 1 with the id of one of the queued deliveries before acknowledging
// any. The broker must find a free id for that publish inside (packetIDHook)
// rather than let it replace the delivery.
//
// It queues 65535 messages: 2 s, but 35 s under the race detector, where
// it is skipped.
func TestFullQueueOwnPublishKeepsDelivery(t *testing.T) {
	if advRace {
		t.Skip("65535 queued messages take 35 s under the race detector; run without -race")
	}
	t.Parallel()
	b := quietBroker(t, "")
	defer b.Close()
	const id = "adv-full"
	c, _ := dialRaw(t, b, id, false)
	c.subscribe("test-adv/full", 1, 100)
	c.conn.Close()
	gone(t, b, id)
	cl, _ := b.srv.Clients.Get(id)
	for prev := -1; cl.State.Inflight.Len() > prev; {
		prev = cl.State.Inflight.Len()
		for range 1024 {
			if err := b.srv.Publish("test-adv/full", []byte("q"), false, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	queued := cl.State.Inflight.Len()
	if _, ok := cl.State.Inflight.Get(7); !ok {
		t.Fatal("delivery 7 not queued")
	}

	c, _ = dialRaw(t, b, id, false)
	for range queued { // the queue, sent again before the broker reads
		if pk := c.read(); pk.FixedHeader.Type != packets.Publish {
			t.Fatalf("got %s, want the queued deliveries", packets.PacketNames[pk.FixedHeader.Type])
		}
	}
	c.publish("test-adv/full-own", 1, 7, "own")
	c.expect("puback of the own message", packets.Puback, 7)
	cl, _ = b.srv.Clients.Get(id)
	if e, ok := cl.State.Inflight.Get(7); !ok || e.FixedHeader.Type != packets.Publish {
		t.Fatalf("the queued delivery 7 was dropped by the client's own publish with id 7 (queue of %d)", queued)
	}
}
