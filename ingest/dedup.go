package ingest

import "sync"

// dedupKey identifies one message: the protocol's message id is strictly
// increasing per device and boot (docs/protocol.md).
type dedupKey struct {
	device string
	boot   uint32
	id     uint64
}

// dedupWindow remembers roughly the last size keys in two generations of
// size/2 each: when the current generation is full it becomes the previous
// one and the oldest is dropped. Memory is bounded by size keys; a key is
// remembered for at least size/2 and at most size later additions.
type dedupWindow struct {
	mu        sync.Mutex
	half      int
	cur, prev map[dedupKey]struct{}
}

func newDedupWindow(size int) *dedupWindow {
	half := max(1, size/2)
	return &dedupWindow{half: half, cur: make(map[dedupKey]struct{}, half)}
}

// add records k and reports whether it was already in the window.
func (w *dedupWindow) add(k dedupKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.cur[k]; ok {
		return true
	}
	_, ok := w.prev[k]
	if len(w.cur) >= w.half {
		w.prev, w.cur = w.cur, make(map[dedupKey]struct{}, w.half)
	}
	w.cur[k] = struct{}{}
	return ok
}
