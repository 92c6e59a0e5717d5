package mqttconn

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// readBufferSize is the read buffer of a connection: paho reads a packet's
// fixed header one byte at a time, which without a buffer is one read(2)
// per byte.
const readBufferSize = 64 << 10

// closeFlushWait bounds how long Close waits for queued packets (a final
// PUBACK, the DISCONNECT) to reach the socket; closeLinger how long it then
// waits for the broker to close the connection.
const (
	closeFlushWait = time.Second
	closeLinger    = time.Second
)

// openBuffered returns a paho.OpenConnectionFunc for tcp:// and ssl://
// brokers that opens a bufferedConn and makes it acker's current connection
// (acker may be nil). Other schemes (ws, wss, unix) never reach it: Connect
// leaves paho's own dialler in place for them.
func openBuffered(acker *Acker, readDelay time.Duration, direct func(paho.Message)) paho.OpenConnectionFunc {
	return func(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
		c, err := dialBuffered(uri, o, readDelay)
		if err == nil {
			c.direct = direct
			if acker != nil {
				acker.cur.Store(c)
			}
		}
		return c, err
	}
}

func dialBuffered(uri *url.URL, o paho.ClientOptions, readDelay time.Duration) (*bufferedConn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second}
	}
	var (
		c   net.Conn
		err error
	)
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "tcps":
		c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	default:
		return nil, errors.New("mqttconn: no buffered dialler for scheme " + uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(c, readDelay), nil
}

// bufferedConn is the connection under paho with two changes that cut the
// system calls per message (docs/benchmarks.md):
//
//   - reads go through a 64 KiB bufio.Reader, so a burst of PUBLISH packets
//     costs one read(2) per buffer instead of three or four per packet;
//   - writes are queued and written by one goroutine, which takes
//     everything queued since its last write in one write(2): a batch of
//     5,000 PUBACKs after an InfluxDB write leaves in a few system calls
//     instead of 5,000. A lone packet is written at once (no timer), so an
//     idle connection adds only a goroutine hand-off to its latency.
//
// Write returns once the bytes are queued; a write error is returned by the
// next Write (and by Close), and the connection is closed so that paho's
// reader notices and reconnects. Deadlines are passed to the socket and so
// apply to the writer goroutine's system call as well.
type bufferedConn struct {
	net.Conn
	r   *bufio.Reader
	src *lastRead

	// direct, if set, receives the QoS 0 and 1 PUBLISH packets read from
	// the connection (direct.go); pending is the rest of a packet for
	// paho. bodies and msgs are the arenas of direct messages. All four
	// belong to the goroutine that calls Read.
	direct  func(paho.Message)
	pending []byte
	bodies  []byte
	msgs    []directMessage

	mu      sync.Mutex
	queued  []byte // bytes waiting for the writer
	spare   []byte // the writer's last buffer, reused
	err     error  // first write error; sticky
	closing bool
	writes  int           // Write calls so far (the first is paho's CONNECT)
	wake    chan struct{} // one token: queued is non-empty or closing
	done    chan struct{} // closed when the writer has returned

	readEnd     chan struct{} // closed when a read has failed (EOF included)
	readEndOnce sync.Once
	closeOnce   sync.Once
	closeErr    error
}

func newBufferedConn(c net.Conn, readDelay time.Duration) *bufferedConn {
	src := &lastRead{Conn: c, delay: readDelay}
	if tc, ok := c.(*net.TCPConn); ok && readDelay > 0 {
		src.lowat = newLowatReader(tc, readDelay)
	}
	b := &bufferedConn{
		Conn:    c,
		r:       bufio.NewReaderSize(src, readBufferSize),
		src:     src,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		readEnd: make(chan struct{}),
	}
	go b.writeLoop()
	return b
}

// Read reads through the buffer. With a read delay set, a read that finds
// the buffer empty after a short fill (less than readShort bytes: the
// sender is not far ahead) first waits the delay, so that the next fill
// takes what arrived meanwhile in one system call. With a direct handler
// it returns only the packets that are paho's (direct.go).
func (b *bufferedConn) Read(p []byte) (n int, err error) {
	if b.direct != nil {
		n, err = b.readDirect(p)
	} else {
		n, err = b.r.Read(p)
	}
	if err != nil {
		b.readEndOnce.Do(func() { close(b.readEnd) })
	}
	return n, err
}

// readShort is the fill below which a read delay applies.
const readShort = 16 << 10

// lastRead is the socket under the read buffer; it remembers the size of
// its last read, and applies the read delay. The buffer reads from it only
// when it is empty.
type lastRead struct {
	net.Conn
	delay time.Duration
	last  int
	// lowat, on a TCP connection, replaces the sleep with a low-water
	// mark (lowat.go).
	lowat *lowatReader
}

func (l *lastRead) Read(p []byte) (n int, err error) {
	switch {
	case l.lowat != nil:
		n, err = l.lowat.read(p)
	case l.delay > 0 && l.last < readShort:
		time.Sleep(l.delay)
		fallthrough
	default:
		n, err = l.Conn.Read(p)
	}
	l.last = n
	return n, err
}

// Write queues p for the writer goroutine.
func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	if b.closing {
		b.mu.Unlock()
		return 0, net.ErrClosed
	}
	b.queued = append(b.queued, p...)
	b.writes++
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writeLoop writes what is queued, all of it per system call, until Close.
func (b *bufferedConn) writeLoop() {
	defer close(b.done)
	for range b.wake {
		for {
			b.mu.Lock()
			buf := b.queued
			b.queued = b.spare[:0]
			closing := b.closing
			b.mu.Unlock()
			if len(buf) == 0 {
				b.spare = buf
				if closing {
					return
				}
				break
			}
			_, err := b.Conn.Write(buf)
			b.spare = buf
			if err != nil {
				b.mu.Lock()
				if b.err == nil {
					b.err = err
				}
				b.mu.Unlock()
				// Unblock paho's reader: it reports the lost connection.
				_ = b.Conn.Close()
				return
			}
		}
	}
}

// Close writes what is still queued (within closeFlushWait), then closes
// the socket gracefully: it shuts down its sending side and waits (up to
// closeLinger) for the broker to close its own, as a broker does after
// DISCONNECT. Closing at once could reset the connection: the kernel
// sends a reset when the socket closes with received data unread, and
// a reset makes the broker drop what it has received and not yet read,
// such as the last PUBACKs (seen with Mosquitto 2.0:
// TestAckerAgainstMosquitto). paho calls Close more than once, also
// concurrently; every call returns after the first has finished.
func (b *bufferedConn) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closing = true
		// Only the CONNECT went out (a refused or abandoned connect):
		// there are no PUBACKs to protect from a reset, and nobody reads
		// the socket to see the broker's end, so lingering would only
		// cost closeLinger per attempt.
		linger := b.writes > 1
		b.mu.Unlock()
		_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
		select {
		case b.wake <- struct{}{}:
		default:
		}
		select {
		case <-b.done:
		case <-time.After(closeFlushWait + 100*time.Millisecond):
		}
		if cw, ok := b.Conn.(interface{ CloseWrite() error }); linger && ok && cw.CloseWrite() == nil {
			select {
			case <-b.readEnd:
			case <-time.After(closeLinger):
			}
		}
		b.closeErr = b.Conn.Close()
	})
	return b.closeErr
}

// Acker acknowledges received QoS 1 messages in batches: the PUBACKs of a
// batch go to the connection as one write, instead of one trip through
// paho's outgoing queue each. Give one to Options.Acker, take a Receipt for
// each message inside the message handler, and pass the receipts to Ack
// once the messages are stored.
//
// A receipt remembers the connection its message arrived on: paho runs the
// handlers of a connection before it opens the next one, so the connection
// current during the handler is that message's. Ack writes a PUBACK only on
// that connection; when it has gone, the acknowledgement is dropped and the
// broker delivers the message again on the next connection of the
// persistent session (MQTT 3.1.1 section 4.4), which is the at-least-once
// contract. paho's own Message.Ack is used for ws:// connections, where
// Connect does not own the socket.
//
// With Plain set, Connect leaves paho's own connection in place and Ack
// calls paho's Message.Ack for every message: the plain library path
// (ingest --plain puback; docs/speed.md).
type Acker struct {
	// Plain switches the batched PUBACK writer and the buffered connection
	// off, and with them Options.Direct. Set it before Connect.
	Plain bool
	// PlainReceive switches Options.Direct off only: messages go through
	// paho's goroutines and router to the handlers (ingest --plain
	// receive). Set it before Connect.
	PlainReceive bool
	cur          atomic.Pointer[bufferedConn]
}

// Receipt is what Acker.Ack needs to acknowledge one message.
type Receipt struct {
	conn *bufferedConn
	msg  paho.Message
}

// Receipt records m's connection. Call it in the message handler.
// A message read directly (Options.Direct) carries its connection.
func (a *Acker) Receipt(m paho.Message) Receipt {
	if d, ok := m.(*directMessage); ok {
		return Receipt{conn: d.conn, msg: m}
	}
	return Receipt{conn: a.cur.Load(), msg: m}
}

// Message returns the receipt's message.
func (r Receipt) Message() paho.Message { return r.msg }

// Ack acknowledges the messages of rs (QoS 0 ones need nothing): one write
// per connection for a run of receipts of the same connection.
func (a *Acker) Ack(rs []Receipt) {
	var buf []byte
	var conn *bufferedConn
	send := func() {
		if conn != nil && len(buf) > 0 {
			_, _ = conn.Write(buf) // a dead connection: the broker sends them again
		}
		buf = buf[:0]
	}
	for _, r := range rs {
		if r.msg.Qos() == 0 {
			continue
		}
		if r.conn == nil || r.msg.Qos() != 1 {
			r.msg.Ack()
			continue
		}
		if r.conn != conn {
			send()
			conn = r.conn
			if buf == nil {
				buf = make([]byte, 0, 4*len(rs))
			}
		}
		id := r.msg.MessageID()
		buf = append(buf, 0x40, 0x02, byte(id>>8), byte(id)) // PUBACK, remaining length 2, packet id
	}
	send()
}
