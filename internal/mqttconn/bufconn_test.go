package mqttconn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// loopback returns both ends of a TCP connection on 127.0.0.1.
func loopback(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestBufferedConnWrites: writes from several goroutines arrive whole
// (one Write is never split by another) and in each writer's order, and
// Close sends what is still queued before it closes the socket.
func TestBufferedConnWrites(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec := fmt.Appendf(nil, "<%d:%05d>", w, i)
				if _, err := b.Write(rec); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	got := make(chan []byte)
	go func() { all, _ := io.ReadAll(srv); got <- all }()
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	all := <-got
	next := make([]int, writers)
	n := 0
	for len(all) > 0 {
		var w, i int
		if _, err := fmt.Sscanf(string(all[:9]), "<%d:%05d>", &w, &i); err != nil {
			t.Fatalf("record %d: %q is not whole: %v", n, all[:min(9, len(all))], err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: record %d after %d", w, i, next[w]-1)
		}
		next[w]++
		all = all[9:]
		n++
	}
	if n != writers*each {
		t.Errorf("received %d records, want %d", n, writers*each)
	}
}

// TestBufferedConnWriteError: once the peer is gone the error comes back
// from a later Write, and the socket is closed so that a reader notices.
func TestBufferedConnWriteError(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = b.Write(bytes.Repeat([]byte("x"), 4096))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding for 5 s")
	}
	if _, rerr := b.Read(make([]byte, 1)); rerr == nil {
		t.Error("read after the write error succeeded, want the closed socket's error")
	}
	_ = b.Close()
}

// TestBufferedConnReadDelay: with a read delay, data written in small
// pieces arrives complete and in order.
func TestBufferedConnReadDelay(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, time.Millisecond)
	defer b.Close()
	var want bytes.Buffer
	go func() {
		for i := range 2000 {
			rec := fmt.Appendf(nil, "%06d|", i)
			_, _ = srv.Write(rec)
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 2000 {
		fmt.Fprintf(&want, "%06d|", i)
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("bytes read through the delayed buffer differ from those written")
	}
}

// TestAckerPUBACKs: Ack writes one 4-byte PUBACK per QoS 1 message on the
// message's connection, skips QoS 0, and falls back to the message's own
// Ack without a connection (ws://).
func TestAckerPUBACKs(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	var a Acker
	a.cur.Store(b)
	var own atomic.Int32
	rs := []Receipt{
		a.Receipt(testMsg{id: 0x0102, qos: 1}),
		a.Receipt(testMsg{id: 7, qos: 0}),
		a.Receipt(testMsg{id: 0xFFFF, qos: 1}),
		{msg: testMsg{id: 9, qos: 1, acked: &own}}, // no connection
	}
	a.Ack(rs)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(srv)
	want := []byte{0x40, 0x02, 0x01, 0x02, 0x40, 0x02, 0xFF, 0xFF}
	if !bytes.Equal(got, want) {
		t.Errorf("wire = % x, want % x", got, want)
	}
	if own.Load() != 1 {
		t.Errorf("message without a connection acknowledged %d times by itself, want 1", own.Load())
	}
}

type testMsg struct {
	id    uint16
	qos   byte
	acked *atomic.Int32
}

func (testMsg) Duplicate() bool     { return false }
func (m testMsg) Qos() byte         { return m.qos }
func (testMsg) Retained() bool      { return false }
func (testMsg) Topic() string       { return "t" }
func (m testMsg) MessageID() uint16 { return m.id }
func (testMsg) Payload() []byte     { return nil }
func (m testMsg) Ack() {
	if m.acked != nil {
		m.acked.Add(1)
	}
}

// TestAckerAgainstMosquitto: with a real broker and a persistent session,
// the messages acknowledged through an Acker are not delivered again after
// a reconnect, and exactly the unacknowledged ones are.
func TestAckerAgainstMosquitto(t *testing.T) {
	t.Parallel()
	url := testenv.OwnMosquitto(t, "max_inflight_messages 0")
	ctx := context.Background()
	const n = 1000
	topic := testenv.TopicRoot(t) + "/acks"
	sub := testenv.ClientID(t, "sub")

	type got struct {
		mu   sync.Mutex
		ids  map[string]int
		recs []Receipt
	}
	connect := func(g *got, a *Acker) paho.Client {
		h := func(_ paho.Client, m paho.Message) {
			g.mu.Lock()
			g.ids[string(m.Payload())]++
			g.recs = append(g.recs, a.Receipt(m))
			g.mu.Unlock()
		}
		c, err := Connect(ctx, Options{URL: url, ClientID: sub, CleanSession: false, AutoAckDisabled: true,
			OrderMatters: true, DefaultHandler: h, Acker: a, MaxInflight: n})
		if err != nil {
			t.Fatal(err)
		}
		if err := Wait(ctx, c.Subscribe(topic, 1, nil), 10*time.Second, "subscribe"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	wait := func(g *got, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			g.mu.Lock()
			have := len(g.recs)
			g.mu.Unlock()
			if have >= want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("received %d messages, want %d", len(g.recs), want)
	}

	first := &got{ids: map[string]int{}}
	a1 := &Acker{}
	c1 := connect(first, a1)
	pub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(100)
	for i := range n {
		if err := Wait(ctx, pub.Publish(topic, 1, false, fmt.Sprintf("m%04d", i)), 10*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	wait(first, n)
	// Acknowledge the even messages only, in one call, then disconnect.
	var even []Receipt
	for _, r := range first.recs {
		var i int
		fmt.Sscanf(string(r.Message().Payload()), "m%04d", &i)
		if i%2 == 0 {
			even = append(even, r)
		}
	}
	a1.Ack(even)
	c1.Disconnect(500) // the PUBACKs still queued go out before the connection closes

	second := &got{ids: map[string]int{}}
	c2 := connect(second, &Acker{})
	defer c2.Disconnect(100)
	wait(second, n/2)
	time.Sleep(500 * time.Millisecond) // anything more would arrive now
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(second.recs) != n/2 {
		t.Errorf("redelivered %d messages, want the %d unacknowledged", len(second.recs), n/2)
	}
	for id := range second.ids {
		var i int
		fmt.Sscanf(id, "m%04d", &i)
		if i%2 == 0 {
			t.Errorf("%s was acknowledged through the Acker and delivered again", id)
		}
	}
}

// TestBufferedConnRefusedConnectNoLinger: a connection that carried only
// the CONNECT (refused by the broker, which need not close at once) closes
// without waiting closeLinger for the broker's end: a gateway with a wrong
// password paid it on every attempt. One with more writes still lingers
// until the broker closes (so its last PUBACKs are not reset away).
func TestBufferedConnRefusedConnectNoLinger(t *testing.T) {
	t.Parallel()
	c, srv := loopback(t)
	b := newBufferedConn(c, 0)
	if _, err := b.Write([]byte{0x10, 0x00}); err != nil { // the CONNECT
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= closeLinger/2 {
		t.Errorf("closing after the CONNECT alone took %v: it lingered (closeLinger %v)", took, closeLinger)
	}
	srv.Close()

	c2, srv2 := loopback(t)
	b2 := newBufferedConn(c2, 0)
	for range 2 {
		if _, err := b2.Write([]byte{0x40, 0x02, 0x00, 0x01}); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() { _ = b2.Close(); close(closed) }()
	// The broker's side sees the FIN of the graceful close first, while
	// Close still waits for the broker to close its own side.
	buf := make([]byte, 16)
	for {
		if _, err := srv2.Read(buf); err != nil {
			break
		}
	}
	select {
	case <-closed:
		t.Fatal("Close returned before the broker closed its side")
	default:
	}
	srv2.Close()
	<-closed
}
