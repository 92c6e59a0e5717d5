// Stage 2, rules: the recent-event set that drops redelivered device events before the store sees them
// (the store's alert_event_keys table is the durable check across replicas and restarts).

package alerting

import (
	"container/list"
	"fmt"
	"sync"
)

// DefaultEventDedup is how many recent fall and SOS events (device, boot,
// seq) the engine remembers to drop redeliveries.
const DefaultEventDedup = 10000

// eventKey identifies a device event for deduplication.
type eventKey struct {
	device string
	boot   uint32
	seq    uint64
}

func (k eventKey) String() string { return fmt.Sprintf("%s boot %d seq %d", k.device, k.boot, k.seq) }

// recentEvents is a bounded LRU set of event keys. It is safe for
// concurrent use.
type recentEvents struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recent; values are eventKey
	index map[eventKey]*list.Element
}

func newRecentEvents(max int) *recentEvents {
	if max <= 0 {
		max = DefaultEventDedup
	}
	return &recentEvents{max: max, order: list.New(), index: map[eventKey]*list.Element{}}
}

// seen reports whether k was added and not yet evicted; a hit counts as a
// use.
func (r *recentEvents) seen(k eventKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.index[k]; ok {
		r.order.MoveToFront(e)
		return true
	}
	return false
}

// add remembers k, evicting the least recently used key when full.
func (r *recentEvents) add(k eventKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.index[k]; ok {
		r.order.MoveToFront(e)
		return
	}
	r.index[k] = r.order.PushFront(k)
	for r.order.Len() > r.max {
		old := r.order.Back()
		r.order.Remove(old)
		delete(r.index, old.Value.(eventKey))
	}
}

// len returns how many keys are remembered.
func (r *recentEvents) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}
