package ingest

import (
	"hash/maphash"
	"sync"
)

// dedupKey identifies one message: the protocol's message id is strictly
// increasing per device and boot (docs/protocol.md).
type dedupKey struct {
	device string
	boot   uint32
	id     uint64
}

// dedupWindow remembers roughly the last size keys in two generations of
// size/2 each: when the current generation is full it becomes the previous
// one and the oldest is dropped. Memory is bounded by size keys (8 bytes
// each: a key is kept as its 64-bit hash); a key is remembered for at least
// size/2 and at most size later additions. Two keys share a hash with
// probability about size/2^64, which would only miscount
// eldercare_ingest_redelivered_total: InfluxDB, not this window, stores a
// redelivery once.
type dedupWindow struct {
	mu        sync.Mutex
	seed      maphash.Seed
	half      int
	cur, prev map[uint64]struct{}
}

func newDedupWindow(size int) *dedupWindow {
	half := max(1, size/2)
	return &dedupWindow{seed: maphash.MakeSeed(), half: half, cur: make(map[uint64]struct{}, half)}
}

// add records k and reports whether it was already in the window.
func (w *dedupWindow) add(k dedupKey) bool {
	// The device's hash, mixed with boot and id (a 64-bit multiplicative
	// mix: distinct (boot, id) of one device land far apart).
	h := maphash.String(w.seed, k.device) ^ (uint64(k.boot)<<40|k.id)*0x9E3779B97F4A7C15
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.cur[h]; ok {
		return true
	}
	_, ok := w.prev[h]
	if len(w.cur) >= w.half {
		w.prev, w.cur = w.cur, make(map[uint64]struct{}, w.half)
	}
	w.cur[h] = struct{}{}
	return ok
}
