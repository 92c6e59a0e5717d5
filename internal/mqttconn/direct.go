package mqttconn

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"

	paho "github.com/eclipse/paho.mqtt.golang"
)

var _ paho.Message = (*directMessage)(nil)

// Direct reading of PUBLISH packets (Options.Direct).
//
// paho hands every received PUBLISH through four goroutines and three
// channels (its reader, its inbound logic, the comms fan-out and the
// router) before the handler runs: at tens of thousands of messages a
// second that was about a fifth of ingest's CPU plus most of its scheduler
// time (docs/speed.md). With a direct handler the bufferedConn splits the
// byte stream into MQTT packets itself, in paho's reading goroutine: a
// QoS 0 or QoS 1 PUBLISH goes straight to the handler and never reaches
// paho; every other packet (CONNACK, SUBACK, UNSUBACK, PINGRESP, PUBACK
// of paho's own publishes, and QoS 2 PUBLISH with its flow) is handed to
// paho byte for byte, so paho keeps the connection, the subscriptions,
// the keepalive and the reconnects.

// errMalformed is returned for a packet that cannot be MQTT 3.1.1; paho
// then reports the connection lost and reconnects, as it does for a
// packet its own reader cannot parse.
var errMalformed = errors.New("mqttconn: malformed packet from the broker")

// Arena sizes: the bodies of PUBLISH packets and their messages are cut
// from shared blocks, so that a message costs no allocation of its own
// most of the time. A block stays alive while any message cut from it
// does (until its PUBACK for ingest): at most a few blocks more than the
// in-flight window needs.
const (
	bodyBlock    = 32 << 10
	bodyOwnAlloc = bodyBlock / 4 // larger bodies get their own allocation
	msgBlock     = 256
)

// directMessage is a PUBLISH read by the bufferedConn; it implements
// paho.Message. Its topic and payload share one byte slice, never written
// after the message is handed out.
type directMessage struct {
	conn     *bufferedConn
	body     []byte // variable header and payload
	topicEnd int    // body[2:topicEnd] is the topic
	flags    byte   // fixed header's low nibble: DUP, QoS, RETAIN
	id       uint16
	acked    atomic.Bool
}

func (m *directMessage) Duplicate() bool   { return m.flags&0x08 != 0 }
func (m *directMessage) Qos() byte         { return (m.flags >> 1) & 0x03 }
func (m *directMessage) Retained() bool    { return m.flags&0x01 != 0 }
func (m *directMessage) MessageID() uint16 { return m.id }

// Topic returns the topic name; it shares the message's bytes.
func (m *directMessage) Topic() string {
	t := m.body[2:m.topicEnd]
	if len(t) == 0 {
		return ""
	}
	return unsafe.String(&t[0], len(t))
}

// Payload returns the application message; the caller must not modify it.
func (m *directMessage) Payload() []byte {
	p := m.topicEnd
	if m.Qos() > 0 {
		p += 2
	}
	return m.body[p:]
}

// Ack sends the PUBACK of a QoS 1 message on the connection it arrived on
// (once; nothing for QoS 0). A connection that has gone drops it and the
// broker delivers the message again.
func (m *directMessage) Ack() {
	if m.Qos() != 1 || !m.acked.CompareAndSwap(false, true) {
		return
	}
	_, _ = m.conn.Write([]byte{0x40, 0x02, byte(m.id >> 8), byte(m.id)})
}

// readPacket reads the next packet from the buffer. A QoS 0 or 1 PUBLISH
// goes to the direct handler; any other packet, fixed header included,
// is left in b.pending for paho.
func (b *bufferedConn) readPacket() error {
	first, err := b.r.ReadByte()
	if err != nil {
		return err
	}
	var lenBytes [4]byte
	n, rl := 0, 0
	for {
		c, err := b.r.ReadByte()
		if err != nil {
			return unexpected(err)
		}
		lenBytes[n] = c
		rl |= int(c&0x7f) << (7 * n)
		n++
		if c&0x80 == 0 {
			break
		}
		if n == 4 { // at most 268,435,455 (MQTT 3.1.1 section 2.2.3)
			return fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
		}
	}
	qos := (first >> 1) & 0x03
	if first>>4 != 3 || qos > 1 { // not PUBLISH, or QoS 2 (or the invalid 3): paho's
		pkt := make([]byte, 1+n+rl)
		pkt[0] = first
		copy(pkt[1:], lenBytes[:n])
		if _, err := io.ReadFull(b.r, pkt[1+n:]); err != nil {
			return unexpected(err)
		}
		b.pending = pkt
		return nil
	}
	body := b.bodyBytes(rl)
	if _, err := io.ReadFull(b.r, body); err != nil {
		return unexpected(err)
	}
	// Variable header: topic name (2-byte length, at least 1 byte in a
	// PUBLISH, section 3.3.2.1), then the packet id for QoS 1.
	need := 2
	if qos > 0 {
		need += 2
	}
	if rl < need {
		return fmt.Errorf("%w: PUBLISH of %d bytes", errMalformed, rl)
	}
	tl := int(body[0])<<8 | int(body[1])
	if tl+need > rl {
		return fmt.Errorf("%w: PUBLISH topic of %d bytes in a packet of %d", errMalformed, tl, rl)
	}
	m := b.newMessage()
	m.conn = b
	m.body = body
	m.topicEnd = 2 + tl
	m.flags = first & 0x0f
	if qos > 0 {
		m.id = uint16(body[2+tl])<<8 | uint16(body[3+tl])
	}
	b.direct(m)
	return nil
}

// unexpected turns a clean end of stream inside a packet into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// bodyBytes returns n bytes for a PUBLISH body, cut from the current block.
func (b *bufferedConn) bodyBytes(n int) []byte {
	if n > bodyOwnAlloc {
		return make([]byte, n)
	}
	if len(b.bodies) < n {
		b.bodies = make([]byte, bodyBlock)
	}
	s := b.bodies[:n:n]
	b.bodies = b.bodies[n:]
	return s
}

// newMessage returns a zero directMessage, cut from the current block.
func (b *bufferedConn) newMessage() *directMessage {
	if len(b.msgs) == 0 {
		b.msgs = make([]directMessage, msgBlock)
	}
	m := &b.msgs[0]
	b.msgs = b.msgs[1:]
	return m
}

// readDirect is Read with a direct handler: it reads packets until one is
// for paho and returns (a part of) that one.
func (b *bufferedConn) readDirect(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if err := b.readPacket(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}
