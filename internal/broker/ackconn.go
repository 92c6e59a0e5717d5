package broker

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ackFlushWait bounds how long Close waits for held writes whose commit is
// still running (normally a few milliseconds: one fsync).
const ackFlushWait = 2 * time.Second

// errJournalFailed is what an ackConn answers once a journal entry of its
// client could not be written: the connection is closed instead of
// acknowledging that message.
var errJournalFailed = errors.New("broker store: a journal entry could not be written; connection closed instead of acknowledging it")

// ackListener hands mochi ackConns, so that the PUBACK of a journalled
// message waits for the journal's commit in the connection instead of in
// the client's goroutine (storeHook.OnPublish).
type ackListener struct {
	net.Listener
	store *storeHook
}

func (l ackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ac := &ackConn{Conn: c, store: l.store}
	if tc := trackedOf(c); tc != nil {
		tc.outer.Store(ac) // Close's closeOpen closes it through ac
	}
	return ac, nil
}

// ackConn holds what mochi writes to a client after that client's last
// journalled publish (its PUBACK first) until the journal entry is
// committed, then writes it, in order, from its own goroutine; what is
// written while nothing is held goes out at once. mochi, which reads the
// next packet while the commit runs, can journal a client's next messages
// into the same commit: one commit for many of one client's messages,
// instead of one each, and still no PUBACK before its message is stored.
//
// A write that fails after it was held closes the connection; the client
// sends the unacknowledged messages again when it reconnects.
type ackConn struct {
	net.Conn
	store *storeHook
	// need is the seq of the client's last journal entry: writes wait for
	// its commit. Set by the client's goroutine before the PUBACK's write.
	need atomic.Uint64

	mu       sync.Mutex
	held     []heldWrite
	flushing chan struct{} // non-nil while the flusher runs; closed when it ends
	err      error
}

type heldWrite struct {
	seq  uint64
	data []byte
}

// holdUntil makes every later write wait for the commit of the op seq.
func (c *ackConn) holdUntil(seq uint64) {
	if seq > c.need.Load() {
		c.need.Store(seq)
	}
}

// Write writes p now, or holds a copy for the flusher and returns
// len(p). mochi never calls Write concurrently (its client lock).
func (c *ackConn) Write(p []byte) (int, error) {
	need := c.need.Load()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.flushing == nil && need <= c.store.committed.Load() {
		// Nothing held and nothing to wait for: no flusher runs, and only
		// Write starts one.
		if c.store.journalFailed(need) {
			c.err = errJournalFailed
			c.mu.Unlock()
			c.Conn.Close()
			return 0, errJournalFailed
		}
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	c.held = append(c.held, heldWrite{seq: need, data: append([]byte(nil), p...)})
	if c.flushing == nil {
		c.flushing = make(chan struct{})
		go c.flush(c.flushing)
	}
	c.mu.Unlock()
	return len(p), nil
}

// flush writes the held writes as their commits complete, each run of
// them in one write, until none is left.
func (c *ackConn) flush(done chan struct{}) {
	defer close(done)
	var buf []byte
	for {
		c.mu.Lock()
		if len(c.held) == 0 || c.err != nil {
			c.held = nil
			c.flushing = nil
			c.mu.Unlock()
			return
		}
		first := c.held[0].seq
		c.mu.Unlock()
		c.store.waitCommitted(first)
		committed := c.store.committed.Load()
		c.mu.Lock()
		buf = buf[:0]
		n := 0
		failed := false
		for ; n < len(c.held) && c.held[n].seq <= committed; n++ {
			if n == 0 || c.held[n].seq != c.held[n-1].seq {
				failed = c.store.journalFailed(c.held[n].seq) || failed
			}
			buf = append(buf, c.held[n].data...)
		}
		c.held = append(c.held[:0], c.held[n:]...)
		if failed {
			// A journal entry of this client could not be written: its
			// PUBACK (and what follows it) must not go out. Closing the
			// connection makes the client send the unacknowledged
			// messages again, to a store that may work by then.
			c.err = errJournalFailed
			c.held = nil
			c.mu.Unlock()
			c.Conn.Close()
			continue
		}
		c.mu.Unlock()
		if _, err := c.Conn.Write(buf); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.Conn.Close()
		}
	}
}

// Close writes what is held once it is committed (waiting at most
// ackFlushWait), then closes the connection.
func (c *ackConn) Close() error {
	c.mu.Lock()
	done := c.flushing
	c.mu.Unlock()
	if done != nil {
		t := time.NewTimer(ackFlushWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}
