//go:build linux

package mqttconn

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is loopback with the client's end as the *net.TCPConn a
// lowatReader takes.
func tcpPair(t *testing.T) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	c, srv := loopback(t)
	return c.(*net.TCPConn), srv
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestLowatReader: idle, the first bytes are read at once (a delay of a
// minute would show); batching, a read after a short one waits the delay
// and then returns what came meanwhile in one read; a burst over the low
// water mark is read without waiting for the delay; a delay with nothing
// makes the connection idle again; the end of the stream is io.EOF.
func TestLowatReader(t *testing.T) {
	t.Parallel()
	c, srv := tcpPair(t)
	const delay = 300 * time.Millisecond
	l := newLowatReader(c, delay)
	buf := make([]byte, 256<<10)

	msg := bytes.Repeat([]byte("m"), 150) // a single reading's PUBLISH
	write(t, srv, msg)
	n, err := l.read(buf)
	if err != nil || n != len(msg) {
		t.Fatalf("idle read: %d bytes, %v; want %d", n, err, len(msg))
	}
	if !l.batching {
		t.Fatal("a 150-byte read did not start batching")
	}

	// Batching: three messages written now are read together, after the delay.
	start := time.Now()
	for range 3 {
		write(t, srv, msg)
	}
	n, err = l.read(buf)
	if took := time.Since(start); err != nil || n != 3*len(msg) || took < delay*9/10 {
		t.Fatalf("batching read: %d bytes, %v after %v; want %d bytes after the %v delay", n, err, took, 3*len(msg), delay)
	}

	// A burst over the mark wakes the reader long before the delay ends;
	// the rest, below the mark, comes after the delay.
	l.delay = time.Minute
	burst := bytes.Repeat([]byte("b"), 2*lowWaterMark)
	go func() { _, _ = srv.Write(burst) }()
	got := 0
	start = time.Now()
	for got < lowWaterMark {
		n, err = l.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("%d bytes queued took %v: the low water mark did not wake the reader", got, took)
	}
	l.delay = delay
	for got < len(burst) {
		n, err = l.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}

	// A delay with nothing: idle again, and the next message is read at once.
	l.delay = delay
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err = l.read(buf)
	}()
	time.Sleep(2 * delay) // past the delay: the reader is idle, waiting for any byte
	write(t, srv, []byte("x"))
	<-done
	if err != nil || n != 1 {
		t.Fatalf("after an idle delay: %d bytes, %v; want 1", n, err)
	}
	if l.batching {
		t.Fatal("a 1-byte read after an idle delay left the reader batching")
	}

	// The end of the stream, while batching.
	write(t, srv, msg)
	if n, err = l.read(buf); err != nil || !l.batching {
		t.Fatalf("read %d, %v, batching %v", n, err, l.batching)
	}
	srv.Close()
	if n, err = l.read(buf); err != io.EOF {
		t.Fatalf("after the broker closed: %d bytes, %v; want io.EOF", n, err)
	}
}
