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
//
// Each generation is an open-addressing table of hashes (linear probing,
// 0 = empty) at most 50 % full, not a Go map: a message costs two probes
// and one store instead of three map operations (it was 9 % of ingest's CPU
// per single reading; docs/benchmarks.md).
type dedupWindow struct {
	mu        sync.Mutex
	seed      maphash.Seed
	half      int
	shift     uint     // slot of hash h: (h * golden) >> shift
	cur, prev []uint64 // len a power of two >= 2*half
	n         int      // keys in cur
}

const golden = 0x9E3779B97F4A7C15

func newDedupWindow(size int) *dedupWindow {
	half := max(1, size/2)
	bits := uint(1)
	for 1<<bits < 2*half {
		bits++
	}
	return &dedupWindow{seed: maphash.MakeSeed(), half: half, shift: 64 - bits,
		cur: make([]uint64, 1<<bits), prev: make([]uint64, 1<<bits)}
}

// add records k and reports whether it was already in the window.
func (w *dedupWindow) add(k dedupKey) bool {
	h := w.hash(k)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.has(w.cur, h) {
		return true
	}
	ok := w.has(w.prev, h)
	if w.n >= w.half {
		w.prev, w.cur = w.cur, w.prev
		clear(w.cur)
		w.n = 0
	}
	mask := len(w.cur) - 1
	for i := int((h * golden) >> w.shift); ; i = (i + 1) & mask {
		if w.cur[i] == 0 {
			w.cur[i] = h
			break
		}
	}
	w.n++
	return ok
}

// hash is k's hash: the device's, mixed with boot and id (a 64-bit
// multiplicative mix: distinct (boot, id) of one device land far apart);
// never 0, which marks an empty slot.
func (w *dedupWindow) hash(k dedupKey) uint64 {
	h := maphash.String(w.seed, k.device) ^ (uint64(k.boot)<<40|k.id)*golden
	if h == 0 {
		h = 1
	}
	return h
}

// has reports whether table t holds h.
func (w *dedupWindow) has(t []uint64, h uint64) bool {
	mask := len(t) - 1
	for i := int((h * golden) >> w.shift); ; i = (i + 1) & mask {
		switch t[i] {
		case h:
			return true
		case 0:
			return false
		}
	}
}
