package mqttconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// encode returns cp as paho writes it (minimal remaining length).
func encode(t *testing.T, cp packets.ControlPacket) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := cp.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func publishPacket(t *testing.T, topic string, qos byte, dup, retain bool, id uint16, payload []byte) []byte {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.Dup, p.Retain, p.MessageID, p.Payload = topic, qos, dup, retain, id, payload
	return encode(t, p)
}

// nonMinimal re-encodes the remaining length of packet pkt in four bytes
// (0x80 continuation bytes), which MQTT 3.1.1 readers must accept.
func nonMinimal(pkt []byte) []byte {
	n := 1
	for pkt[n]&0x80 != 0 {
		n++
	}
	rl := 0
	for i := n; i >= 1; i-- {
		rl = rl<<7 | int(pkt[i]&0x7f)
	}
	out := []byte{pkt[0], byte(rl&0x7f) | 0x80, byte(rl>>7&0x7f) | 0x80, byte(rl>>14&0x7f) | 0x80, byte(rl >> 21)}
	return append(out, pkt[n+1:]...)
}

type gotMsg struct {
	topic   string
	payload string
	qos     byte
	dup     bool
	retain  bool
	id      uint16
}

// TestDirectSplitsPackets: with a direct handler, the bufferedConn hands
// QoS 0 and 1 PUBLISH packets to it with their topic, payload, flags and
// packet id, and every other packet (CONNACK, SUBACK, PINGRESP, a QoS 2
// PUBLISH, a PUBACK) to its reader byte for byte and in order; whatever
// the sizes the stream arrives in (one byte at a time here), with one-
// and several-byte remaining lengths, non-minimal ones included.
func TestDirectSplitsPackets(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 20000) // 3-byte remaining length, and past bodyOwnAlloc
	mid := bytes.Repeat([]byte("m"), 300)   // 2-byte remaining length
	connack := encode(t, packets.NewControlPacket(packets.Connack))
	suback := func() []byte {
		p := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
		p.MessageID, p.ReturnCodes = 1, []byte{1, 1}
		return encode(t, p)
	}()
	pingresp := encode(t, packets.NewControlPacket(packets.Pingresp))
	puback := func() []byte {
		p := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
		p.MessageID = 0xBEEF
		return encode(t, p)
	}()
	qos2 := publishPacket(t, "a/q2", 2, false, false, 77, []byte("exactly once"))

	var stream, forPaho bytes.Buffer
	var want []gotMsg
	add := func(pkt []byte, paho bool) {
		stream.Write(pkt)
		if paho {
			forPaho.Write(pkt)
		}
	}
	add(connack, true)
	for i := range 300 {
		g := gotMsg{topic: fmt.Sprintf("ec/s1/d%d/telemetry", i), payload: fmt.Sprintf(`{"i":%d}`, i), qos: byte(i % 2), dup: i%3 == 1 && i%2 == 1, retain: i%5 == 0, id: uint16(i % 2 * (i + 1))}
		if i == 7 {
			g.payload = string(mid)
		}
		if i == 8 {
			g.payload = string(big)
		}
		if i == 9 {
			g.payload = "" // an empty message
		}
		want = append(want, g)
		pkt := publishPacket(t, g.topic, g.qos, g.dup, g.retain, g.id, []byte(g.payload))
		if i%4 == 2 {
			pkt = nonMinimal(pkt)
		}
		add(pkt, false)
		switch i {
		case 0:
			add(suback, true)
		case 10:
			add(qos2, true)
		case 100:
			add(pingresp, true)
		case 200:
			add(nonMinimal(puback), true)
		}
	}

	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	defer b.Close()
	var got []gotMsg
	b.direct = func(m paho.Message) {
		got = append(got, gotMsg{m.Topic(), string(m.Payload()), m.Qos(), m.Duplicate(), m.Retained(), m.MessageID()})
	}
	go func() {
		for _, x := range stream.Bytes() {
			if _, err := srv.Write([]byte{x}); err != nil {
				return
			}
		}
		_ = srv.(*net.TCPConn).CloseWrite()
	}()
	// paho reads a packet as a 1-byte header, the length byte by byte,
	// then the rest: small reads exercise the pending packet.
	var read bytes.Buffer
	buf := make([]byte, 3)
	for {
		n, err := b.Read(buf)
		read.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v", err)
			}
			break
		}
	}
	if !bytes.Equal(read.Bytes(), forPaho.Bytes()) {
		t.Errorf("paho read % x, want % x", read.Bytes(), forPaho.Bytes())
	}
	if len(got) != len(want) {
		t.Fatalf("direct handler got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: got %+v, want %+v", i, short(got[i]), short(want[i]))
		}
	}
}

func short(g gotMsg) gotMsg {
	if len(g.payload) > 20 {
		g.payload = fmt.Sprintf("%s...(%d bytes)", g.payload[:20], len(g.payload))
	}
	return g
}

// TestDirectMalformed: a packet that cannot be MQTT 3.1.1 ends the
// connection's reading with an error (paho then reconnects), and so does
// a stream cut inside a packet; nothing reaches the handler.
func TestDirectMalformed(t *testing.T) {
	t.Parallel()
	for name, stream := range map[string][]byte{
		"5-byte remaining length": {0x30, 0x80, 0x80, 0x80, 0x80, 0x01},
		"topic past the packet":   {0x30, 0x04, 0x00, 0x09, 'a', 'b'},
		"QoS 1 without packet id": {0x32, 0x03, 0x00, 0x01, 'a'},
		"cut inside the body":     {0x32, 0x10, 0x00, 0x01, 'a'},
		"cut inside the length":   {0x30, 0x80},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, srv := loopback(t)
			b := newBufferedConn(c, 0)
			defer b.Close()
			b.direct = func(m paho.Message) { t.Errorf("handler got %q", m.Topic()) }
			_, _ = srv.Write(stream)
			_ = srv.(*net.TCPConn).CloseWrite()
			_, err := b.Read(make([]byte, 1))
			if err == nil || errors.Is(err, io.EOF) {
				t.Errorf("read error %v, want a malformed packet or an unexpected end", err)
			}
		})
	}
}

// TestDirectAck: a direct message's own Ack writes one PUBACK with its
// packet id (once, however often it is called), none for QoS 0; the
// Acker writes the same for receipts of direct messages.
func TestDirectAck(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	var msgs []paho.Message
	b.direct = func(m paho.Message) { msgs = append(msgs, m) }
	go func() {
		_, _ = srv.Write(publishPacket(t, "t", 1, false, false, 0x0102, []byte("a")))
		_, _ = srv.Write(publishPacket(t, "t", 0, false, false, 0, []byte("b")))
		_, _ = srv.Write(publishPacket(t, "t", 1, true, false, 0xA0B0, []byte("c")))
		_ = srv.(*net.TCPConn).CloseWrite()
	}()
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want EOF after the three messages", err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	msgs[0].Ack()
	msgs[0].Ack()
	msgs[1].Ack()
	var a Acker
	a.Ack([]Receipt{a.Receipt(msgs[1]), a.Receipt(msgs[2])})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(srv)
	want := []byte{0x40, 0x02, 0x01, 0x02, 0x40, 0x02, 0xA0, 0xB0}
	if !bytes.Equal(got, want) {
		t.Errorf("wire = % x, want % x", got, want)
	}
}

// TestDirectAgainstBrokers: with a direct handler and a persistent
// session, on Mosquitto and on the embedded broker, every message
// published at QoS 1 reaches the handler once and not paho's handler;
// after a reconnect exactly the messages left unacknowledged come again,
// flagged DUP; acknowledged ones do not; and paho still works the
// connection (SUBSCRIBE, a publish of its own, UNSUBSCRIBE).
func TestDirectAgainstBrokers(t *testing.T) {
	t.Parallel()
	for _, bk := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"mosquitto", func(t *testing.T) string { return testenv.OwnMosquitto(t, "max_inflight_messages 0") }},
		{"embedded", func(t *testing.T) string { return testenv.EmbeddedBroker(t).URL() }},
	} {
		for _, plain := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/plain=%v", bk.name, plain), func(t *testing.T) {
				t.Parallel()
				url := bk.url(t)
				ctx := context.Background()
				const n = 2000
				topic := testenv.TopicRoot(t) + "/direct"
				sub := testenv.ClientID(t, "sub")
				type got struct {
					mu    sync.Mutex
					n     map[string]int
					dups  int
					recs  []Receipt
					viaPa int
				}
				connect := func(g *got, a *Acker) paho.Client {
					h := func(m paho.Message) {
						g.mu.Lock()
						g.n[string(m.Payload())]++
						if m.Duplicate() {
							g.dups++
						}
						g.recs = append(g.recs, a.Receipt(m))
						g.mu.Unlock()
					}
					o := Options{URL: url, ClientID: sub, CleanSession: false, AutoAckDisabled: true,
						OrderMatters: true, Acker: a, MaxInflight: n,
						DefaultHandler: func(_ paho.Client, m paho.Message) {
							g.mu.Lock()
							g.viaPa++
							g.mu.Unlock()
						},
						Direct: h}
					if a.PlainReceive {
						o.DefaultHandler = func(_ paho.Client, m paho.Message) { h(m) }
					}
					c, err := Connect(ctx, o)
					if err != nil {
						t.Fatal(err)
					}
					if err := Wait(ctx, c.Subscribe(topic, 1, nil), 10*time.Second, "subscribe"); err != nil {
						t.Fatal(err)
					}
					return c
				}
				count := func(g *got) int {
					g.mu.Lock()
					defer g.mu.Unlock()
					return len(g.recs)
				}
				first := &got{n: map[string]int{}}
				a1 := &Acker{PlainReceive: plain}
				c1 := connect(first, a1)
				pub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true})
				if err != nil {
					t.Fatal(err)
				}
				defer pub.Disconnect(100)
				for i := range n {
					if err := Wait(ctx, pub.Publish(topic, 1, false, fmt.Sprintf("m%05d", i)), 10*time.Second, "publish"); err != nil {
						t.Fatal(err)
					}
					if i%500 == 0 {
						// paho's own PUBLISH/PUBACK flow beside the direct reading:
						// the broker's PUBACK reaches paho. (On the embedded broker
						// this once lost an unacknowledged message whose packet id
						// the own publish reused: mochi's shared id map, worked
						// around by internal/broker's packetIDHook.)
						if err := Wait(ctx, c1.Publish(topic+"-own", 1, false, "own"), 10*time.Second, "publish from the subscriber"); err != nil {
							t.Fatal(err)
						}
					}
				}
				testenv.Eventually(t, 30*time.Second, func() string {
					if have := count(first); have < n {
						return fmt.Sprintf("received %d of %d", have, n)
					}
					return ""
				})
				var even []Receipt
				first.mu.Lock()
				for _, r := range first.recs {
					var i int
					fmt.Sscanf(string(r.Message().Payload()), "m%05d", &i)
					if i%2 == 0 {
						even = append(even, r)
					}
				}
				if len(first.n) != n || first.viaPa != 0 || first.dups != 0 {
					t.Errorf("first connection: %d distinct of %d, %d through paho's handler, %d DUP; want %d, 0, 0", len(first.n), len(first.recs), first.viaPa, first.dups, n)
				}
				first.mu.Unlock()
				a1.Ack(even)
				if err := Wait(ctx, c1.Unsubscribe(topic+"-own"), 10*time.Second, "unsubscribe"); err != nil {
					t.Error(err) // paho's UNSUBSCRIBE/UNSUBACK flow beside the direct reading
				}
				c1.Disconnect(500)

				second := &got{n: map[string]int{}}
				c2 := connect(second, &Acker{PlainReceive: plain})
				defer c2.Disconnect(100)
				testenv.Eventually(t, 30*time.Second, func() string {
					if have := count(second); have < n/2 {
						second.mu.Lock()
						var missing []int
						for i := 1; i < n; i += 2 {
							if second.n[fmt.Sprintf("m%05d", i)] == 0 {
								missing = append(missing, i)
							}
						}
						second.mu.Unlock()
						return fmt.Sprintf("redelivered %d of %d; missing %v", have, n/2, missing)
					}
					return ""
				})
				time.Sleep(300 * time.Millisecond) // anything more would arrive now
				second.mu.Lock()
				defer second.mu.Unlock()
				if len(second.recs) != n/2 || second.dups != n/2 || second.viaPa != 0 {
					t.Errorf("redelivered %d messages (%d DUP, %d through paho's handler), want the %d unacknowledged, all DUP, none", len(second.recs), second.dups, second.viaPa, n/2)
				}
				for id := range second.n {
					var i int
					fmt.Sscanf(id, "m%05d", &i)
					if i%2 == 0 {
						t.Errorf("%s was acknowledged and delivered again", id)
					}
				}
			})
		}
	}
}
