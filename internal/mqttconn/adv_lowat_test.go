//go:build linux

package mqttconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// startBatching makes l batch: one read of a 150-byte message.
func startBatching(t *testing.T, l *lowatReader, srv net.Conn) {
	t.Helper()
	write(t, srv, bytes.Repeat([]byte("m"), 150))
	buf := make([]byte, 4096)
	if n, err := l.read(buf); err != nil || n != 150 || !l.batching {
		t.Fatalf("entering batching: %d bytes, %v, batching %v", n, err, l.batching)
	}
}

// TestLowatTinyBufferNoDelayPerRead: while batching, bytes already queued
// (below the mark) are read with a buffer smaller than what is queued. The
// first read waits the delay; the rest of what was queued then must not
// wait a delay per read (before the fix: 10 reads of 100 bytes took 10
// delays, so the last message waited ten times the promised bound).
func TestLowatTinyBufferNoDelayPerRead(t *testing.T) {
	t.Parallel()
	c, srv := tcpPair(t)
	const delay = 500 * time.Millisecond // without the fix: 10 delays, 5 s; the bound is 3 delays
	l := newLowatReader(c, delay)
	if l == nil {
		t.Skip("no SO_RCVLOWAT")
	}
	startBatching(t, l, srv)
	const total = 1000
	write(t, srv, bytes.Repeat([]byte("q"), total))
	time.Sleep(20 * time.Millisecond) // queued before the reads start
	buf := make([]byte, 100)
	start := time.Now()
	for got := 0; got < total; {
		n, err := l.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if took := time.Since(start); took > 3*delay {
		t.Fatalf("%d queued bytes read 100 at a time took %v, more than 3 delays of %v", total, took, delay)
	}
}

// TestLowatTrickleLatency: a broker sending one byte at a time, every
// millisecond, while the reader batches: no byte waits much longer than
// the delay (a lost wake-up would show as a wait of many delays).
func TestLowatTrickleLatency(t *testing.T) {
	t.Parallel()
	c, srv := tcpPair(t)
	const delay = 100 * time.Millisecond // bound: 10 delays, room for a loaded CI machine
	l := newLowatReader(c, delay)
	if l == nil {
		t.Skip("no SO_RCVLOWAT")
	}
	startBatching(t, l, srv)
	const count = 300
	sent := make([]time.Time, count)
	go func() {
		for i := range count {
			sent[i] = time.Now()
			if _, err := srv.Write([]byte{byte(i)}); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	buf := make([]byte, 64<<10)
	var worst time.Duration
	for got := 0; got < count; {
		n, err := l.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i := got; i < got+n; i++ {
			if buf[i-got] != byte(i) {
				t.Fatalf("byte %d is %d", i, buf[i-got])
			}
			worst = max(worst, now.Sub(sent[i]))
		}
		got += n
	}
	// Generous for a loaded machine; a stall would be the test timeout.
	if worst > 10*delay {
		t.Fatalf("a byte waited %v, read delay %v", worst, delay)
	}
	t.Logf("worst wait %v (delay %v)", worst, delay)
}

// TestLowatEndWhileBatchingLongDelay: with a delay of a minute, the end of
// the stream, a reset and a local Close reach a batching reader at once,
// not after the delay.
func TestLowatEndWhileBatchingLongDelay(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"fin", "fin-after-partial", "reset", "reset-after-partial", "local-close"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			c, srv := tcpPair(t)
			l := newLowatReader(c, time.Minute)
			if l == nil {
				t.Skip("no SO_RCVLOWAT")
			}
			startBatching(t, l, srv)
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				buf := make([]byte, 64<<10)
				total := 0
				for {
					n, err := l.read(buf)
					total += n
					if err != nil {
						done <- result{total, err}
						return
					}
				}
			}()
			time.Sleep(50 * time.Millisecond) // the reader waits for the mark
			start := time.Now()
			switch how {
			case "fin":
				srv.Close()
			case "fin-after-partial": // a packet's start below the mark, then the end
				write(t, srv, bytes.Repeat([]byte("p"), 1000))
				time.Sleep(20 * time.Millisecond)
				srv.Close()
			case "reset":
				_ = srv.(*net.TCPConn).SetLinger(0)
				srv.Close()
			case "reset-after-partial":
				write(t, srv, bytes.Repeat([]byte("p"), 1000))
				time.Sleep(20 * time.Millisecond)
				_ = srv.(*net.TCPConn).SetLinger(0)
				srv.Close()
			case "local-close":
				c.Close()
			}
			select {
			case r := <-done:
				if took := time.Since(start); took > 10*time.Second {
					t.Fatalf("end seen after %v", took)
				}
				switch how {
				case "fin":
					if r.err != io.EOF {
						t.Fatalf("got %v, want io.EOF", r.err)
					}
				case "fin-after-partial":
					if r.err != io.EOF || r.n != 1000 {
						t.Fatalf("got %d bytes, %v; want 1000 bytes then io.EOF", r.n, r.err)
					}
				case "reset", "reset-after-partial":
					if r.err == nil || r.err == io.EOF {
						t.Fatalf("got %v, want a reset error", r.err)
					}
				case "local-close":
					if !errors.Is(r.err, net.ErrClosed) {
						t.Fatalf("got %v, want net.ErrClosed", r.err)
					}
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: the batching reader did not return within 20s (read delay 1m)", how)
			}
		})
	}
}

// TestLowatIdleBatchingCycles: idle -> batching -> idle, repeated: after
// each quiet spell the reader is idle with no deadline left set (a leaked
// deadline would fail the read of a message sent long after the delay),
// the message is read whole and the reader batches again.
func TestLowatIdleBatchingCycles(t *testing.T) {
	t.Parallel()
	c, srv := tcpPair(t)
	const delay = 30 * time.Millisecond
	l := newLowatReader(c, delay)
	if l == nil {
		t.Skip("no SO_RCVLOWAT")
	}
	startBatching(t, l, srv)
	msg := bytes.Repeat([]byte("c"), 200)
	buf := make([]byte, 64<<10)
	for cycle := range 6 {
		var wg sync.WaitGroup
		var n int
		var err error
		wg.Go(func() { n, err = l.read(buf) })
		time.Sleep(5 * delay) // several delays with nothing: idle, blocked
		write(t, srv, msg)
		wg.Wait()
		if err != nil || n != len(msg) {
			t.Fatalf("cycle %d: %d bytes, %v; want %d", cycle, n, err, len(msg))
		}
		// The next read batches again; a burst below the mark comes
		// within the delay (plus slack), not never.
		write(t, srv, msg[:100])
		if n, err = l.read(buf); err != nil || n != 100 {
			t.Fatalf("cycle %d: batching read %d, %v", cycle, n, err)
		}
	}
}

// TestLowatThroughBroker: a subscriber with a read delay of 1.5 s, through
// the embedded broker: a flow of 3,000 messages (batching; the last one
// waits at most about the delay), a 300 KiB message straddling the mark
// many times, then after a quiet spell a single message arrives at once
// (idle: far less than the delay), and Disconnect does not hang.
func TestLowatThroughBroker(t *testing.T) {
	t.Parallel()
	url := testenv.EmbeddedBroker(t).URL()
	const delay = 1500 * time.Millisecond
	topic := "adv/lowat/" + t.Name()
	got := make(chan time.Time, 4096)
	sizes := make(chan int, 4096)
	h := func(m paho.Message) {
		sizes <- len(m.Payload())
		got <- time.Now()
		m.Ack()
	}
	ctx := context.Background()
	sub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(t, "sub"), CleanSession: true, Acker: &Acker{},
		Direct: h, DefaultHandler: func(_ paho.Client, m paho.Message) { h(m) }, ReadDelay: delay, MaxInflight: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := Wait(ctx, sub.Subscribe(topic, 1, nil), 10*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	pub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)
	publish := func(payload []byte) {
		t.Helper()
		if err := Wait(ctx, pub.Publish(topic, 1, false, payload), 10*time.Second, "publish"); err != nil {
			t.Fatal(err)
		}
	}
	receive := func(what string, n int) (last time.Time) {
		t.Helper()
		for i := range n {
			select {
			case last = <-got:
				<-sizes
			case <-time.After(4*delay + 10*time.Second):
				t.Fatalf("%s: %d of %d messages after %v", what, i, n, 4*delay+10*time.Second)
			}
		}
		return last
	}
	// A flow: batching.
	msg := bytes.Repeat([]byte("r"), 150)
	for range 3000 {
		publish(msg)
	}
	sent := time.Now()
	if took := receive("flow", 3000).Sub(sent); took > delay+time.Second {
		t.Errorf("the last message of the flow came %v after it was sent (read delay %v)", took, delay)
	}
	// A large message.
	big := bytes.Repeat([]byte("B"), 300<<10)
	publish(big)
	sent = time.Now()
	select {
	case at := <-got:
		if n := <-sizes; n != len(big) {
			t.Fatalf("large message: %d bytes", n)
		}
		if took := at.Sub(sent); took > delay+time.Second {
			t.Errorf("the large message came %v after it was sent", took)
		}
	case <-time.After(4*delay + 10*time.Second):
		t.Fatal("the large message did not arrive")
	}
	// Quiet spell, then one message: read at once.
	time.Sleep(3 * delay)
	publish(msg)
	sent = time.Now()
	if took := receive("after a quiet spell", 1).Sub(sent); took > delay*2/3 { // batching would wait the whole delay
		t.Errorf("the first message after a quiet spell came %v after it was sent (read delay %v)", took, delay)
	}
	start := time.Now()
	sub.Disconnect(250)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Disconnect took %v", took)
	}
}
