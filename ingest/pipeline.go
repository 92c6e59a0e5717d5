package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/eldercare-iot/eldercare/internal/mqttconn"

	"github.com/prometheus/client_golang/prometheus"
)

// fifo is an unbounded first-in first-out queue that never blocks the
// pusher (paho's receive loop must never wait) and lets any number of
// consumers wait for an element. gauge counts the weight of what is queued
// (messages, not elements).
type fifo[T any] struct {
	mu     sync.Mutex
	buf    []entry[T]
	head   int
	closed bool
	ready  chan struct{} // one token: buf may be non-empty, or closed
	gauge  prometheus.Gauge
}

// entry is a queued element and its weight in the gauge.
type entry[T any] struct {
	v T
	w int
}

func newFIFO[T any](g prometheus.Gauge) *fifo[T] {
	return &fifo[T]{ready: make(chan struct{}, 1), gauge: g}
}

func (q *fifo[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// push appends v, which weighs w in the gauge.
func (q *fifo[T]) push(v T, w int) {
	q.mu.Lock()
	if len(q.buf) == cap(q.buf) && q.head > len(q.buf)/2 {
		// Reuse the consumed front instead of growing: a backlog that
		// never drains must not grow the slice with every element.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, entry[T]{v, w})
	q.mu.Unlock()
	q.gauge.Add(float64(w))
	q.signal()
}

// close makes pop return false once the queue is empty.
func (q *fifo[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// pop returns the oldest element, waiting for one; false when ctx ended or
// the queue is closed and empty.
func (q *fifo[T]) pop(ctx context.Context) (T, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.buf) {
			e := q.buf[q.head]
			q.buf[q.head] = entry[T]{}
			q.head++
			if q.head == len(q.buf) {
				q.buf, q.head = q.buf[:0], 0
			}
			more := q.head < len(q.buf) || q.closed
			q.mu.Unlock()
			if more {
				q.signal() // others may be waiting
			}
			q.gauge.Sub(float64(e.w))
			return e.v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.signal()
			var zero T
			return zero, false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// batch is the messages whose points are written in one request. seq
// numbers batches in the order they were started, which is the order they
// are sealed (only one batch fills at a time) and the order their messages
// arrived.
type batch struct {
	items  []*item
	points int
	seq    uint64
}

// heldSince records when each batch not yet acknowledged took its first
// message, by batch seq, for the age of the oldest message ingest holds
// (eldercare_ingest_oldest_held_seconds). Messages waiting for the
// dead-letter store are not in it: eldercare_ingest_dead_letter_store_failing
// covers them.
type heldSince struct {
	mu    sync.Mutex
	start map[uint64]time.Time
}

func (h *heldSince) begin(seq uint64, at time.Time) {
	h.mu.Lock()
	if h.start == nil {
		h.start = map[uint64]time.Time{}
	}
	h.start[seq] = at
	h.mu.Unlock()
}

func (h *heldSince) end(seq uint64) {
	h.mu.Lock()
	delete(h.start, seq)
	h.mu.Unlock()
}

// age is how long the oldest held batch has held its first message; 0 when
// nothing is held. It walks the held batches (at most the broker's window
// over the batch size), once a scrape.
func (h *heldSince) age(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var oldest time.Time
	for _, t := range h.start {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// batcher collects decoded messages into batches: a batch is sealed when it
// holds BatchSize points or FlushInterval after its first message, and goes
// to the ready queue, from which the writers take it.
type batcher struct {
	size     int
	interval time.Duration
	ready    *fifo[*batch]
	held     *heldSince // nil: not tracked

	mu      sync.Mutex
	cur     *batch
	closed  bool
	nextSeq uint64
}

// add puts it into the current batch. It reports false, and keeps nothing,
// once the batcher is closed (shutting down).
func (b *batcher) add(it *item) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	cur := b.cur
	if cur == nil {
		cur = &batch{items: make([]*item, 0, min(b.size, 1024)), seq: b.nextSeq}
		b.nextSeq++
		b.cur = cur
		if b.held != nil {
			b.held.begin(cur.seq, time.Now())
		}
		time.AfterFunc(b.interval, func() { b.seal(cur) })
	}
	cur.items = append(cur.items, it)
	cur.points += len(it.ends)
	full := cur.points >= b.size
	if full {
		b.cur = nil
	}
	b.mu.Unlock()
	if full {
		b.ready.push(cur, len(cur.items))
	}
	return true
}

// seal hands bt to the writers if it is still the batch being filled
// (its timer ran out before it filled up).
func (b *batcher) seal(bt *batch) {
	b.mu.Lock()
	if b.cur != bt {
		b.mu.Unlock()
		return
	}
	b.cur = nil
	b.mu.Unlock()
	b.ready.push(bt, len(bt.items))
}

// close seals the current batch and refuses further messages; the writers
// drain the ready queue and stop.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	cur := b.cur
	b.cur = nil
	b.mu.Unlock()
	if cur != nil {
		b.ready.push(cur, len(cur.items))
	}
	b.ready.close()
}

// ackOrder sends the PUBACKs of written batches in the order the batches
// were sealed, so that the broker receives them in the order it sent the
// messages. Writers finish batches out of order (several write at once);
// Mosquitto 2.0 finds each acknowledged message by walking its client's
// in-flight list from the oldest, so a PUBACK that overtakes older
// unacknowledged messages costs it a walk past all of them: with 4 writers
// and a window of 10,000 that made the broker spend about a quarter more
// CPU per reading (docs/benchmarks.md). A written batch waits only for
// older batches still being written; a batch that could not be written
// (shutdown) completes with no receipts and holds nothing up.
type ackOrder struct {
	mu      sync.Mutex
	next    uint64                        // seq of the oldest batch not yet completed
	waiting map[uint64][]mqttconn.Receipt // completed batches newer than next
	send    func([]mqttconn.Receipt)      // releases and acknowledges, in order
	held    *heldSince                    // nil: not tracked
}

// complete records batch seq as done with the receipts rs to acknowledge
// (nil: nothing to acknowledge) and sends, in order, every batch that no
// older batch holds up any more.
func (o *ackOrder) complete(seq uint64, rs []mqttconn.Receipt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq != o.next {
		if o.waiting == nil {
			o.waiting = map[uint64][]mqttconn.Receipt{}
		}
		o.waiting[seq] = rs
		return
	}
	for {
		if len(rs) > 0 {
			o.send(rs)
		}
		if o.held != nil {
			o.held.end(o.next)
		}
		o.next++
		var ok bool
		if rs, ok = o.waiting[o.next]; !ok {
			return
		}
		delete(o.waiting, o.next)
	}
}
