package broker

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// EstablishWait bounds how long Close waits for the connections accepted
// before it to reach mochi's connection handler (see trackListener).
var EstablishWait = 5 * time.Second

// ConnectTimeout is how long a new connection may take to send its CONNECT
// packet (and, on the TLS listener, to finish the handshake) before the
// broker closes it. MQTT 5.0 section 3.1.4 says a server should close a
// connection that sends no CONNECT "within a reasonable amount of time";
// mochi-mqtt v2.7.9 sets no deadline until it has read the CONNECT, so a
// silent connection held a goroutine and blocked Close until its peer went
// away. After the CONNECT, mochi replaces the deadline with the client's
// keep-alive (1.5 times it, or none for keep-alive 0).
var ConnectTimeout = 10 * time.Second

// ShutdownGrace is how long Close lets mochi disconnect its clients (each
// gets a DISCONNECT with reason "server shutting down") before it closes
// every connection still open itself: those mochi does not know as
// clients (no CONNECT yet, or a CONNECT still being handled).
var ShutdownGrace = time.Second

// trackListener is the net.Listener given to mochi: it records every
// accepted connection until mochi's goroutine for it first reads, writes or
// closes it, and every connection until it is closed (closeOpen).
//
// mochi-mqtt v2.7.9 (listeners/tcp.go, listeners/net.go) handles each
// accepted connection in a new goroutine whose first step is
// Listeners.ClientsWg.Add(1) (server.go attachClient), while Server.Close
// ends with ClientsWg.Wait() (listeners.go CloseAll). Nothing orders the two
// for a connection that is still being established (not yet in the clients
// map, or refused and never added): a WaitGroup.Add from zero concurrent
// with Wait, which is the misuse the race detector reports and can let Close
// return before that client goroutine has run (mochi-mqtt/server#488 is the
// related Close hang, which CloseTimeout bounds). Broker.Close therefore
// first stops accepting (stopAccepting) and then waits until every accepted
// connection's goroutine has passed its Add: the first Read, Write or Close
// of a tracked connection happens after the Add in that goroutine, and the
// channel it closes orders it before Server.Close.
type trackListener struct {
	net.Listener

	mu      sync.Mutex
	closed  bool
	pending map[*trackedConn]struct{} // accepted, not yet read, written or closed
	open    map[*trackedConn]struct{} // accepted, not yet closed
}

func newTrackListener(ln net.Listener) *trackListener {
	return &trackListener{Listener: ln, pending: map[*trackedConn]struct{}{}, open: map[*trackedConn]struct{}{}}
}

// Accept returns the next connection, tracked; after stopAccepting it
// closes any connection still coming in and returns net.ErrClosed.
func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if ConnectTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(ConnectTimeout))
	}
	tc := &trackedConn{Conn: c, l: l, started: make(chan struct{})}
	l.pending[tc] = struct{}{}
	l.open[tc] = struct{}{}
	return tc, nil
}

// closeOpen closes every accepted connection not yet closed and returns how
// many there were. mochi's goroutine for each then fails its read or write
// and ends. A connection under an ackConn is closed through it, so the
// acknowledgements it holds for a commit still go out once the commit ends
// (ackConn.Close waits at most ackFlushWait): closed from under it, they
// were lost, and their clients sent those messages again. Whatever is still
// open at until (a TLS close_notify that cannot be written) is closed from
// under it. Close gives all its listeners the same until and calls them
// side by side, so the TCP and TLS listeners do not wait one after another.
func (l *trackListener) closeOpen(until time.Time) int {
	l.mu.Lock()
	cs := make([]*trackedConn, 0, len(l.open))
	for c := range l.open {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		if ac := c.outer.Load(); ac != nil {
			wg.Go(func() { ac.Close() })
		} else {
			c.Close()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(until))
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	for _, c := range cs {
		c.Close()
	}
	return len(cs)
}

// stopAccepting closes the listener and returns the connections accepted
// and not yet started, so their goroutine has not provably passed mochi's
// ClientsWg.Add. It is safe to call more than once.
func (l *trackListener) stopAccepting() []*trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.Listener.Close()
	}
	out := make([]*trackedConn, 0, len(l.pending))
	for c := range l.pending {
		out = append(out, c)
	}
	return out
}

// waitStarted waits until every connection in cs has started, or until
// deadline; it returns how many had not.
func waitStarted(cs []*trackedConn, deadline time.Time) int {
	left := 0
	for _, c := range cs {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-c.started:
		case <-t.C:
			left++
		}
		t.Stop()
	}
	return left
}

// trackedConn marks itself started on its first Read, Write or Close.
type trackedConn struct {
	net.Conn
	l       *trackListener
	once    sync.Once
	started chan struct{}
	// outer is the ackConn over this connection (directly, or over its
	// TLS connection), set by ackListener; nil without a store.
	outer atomic.Pointer[ackConn]
}

// trackedOf returns the trackedConn under c (a TLS connection's own
// connection), or nil.
func trackedOf(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	t, _ := c.(*trackedConn)
	return t
}

func (c *trackedConn) start() {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.pending, c)
		c.l.mu.Unlock()
		close(c.started)
	})
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.start()
	return c.Conn.Read(p)
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.start()
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.start()
	c.l.mu.Lock()
	delete(c.l.open, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
