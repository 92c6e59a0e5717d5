package ingest

import (
	"fmt"
	"testing"
)

// TestDedupWindowGenerations: a key is found again while fewer than size/2
// keys were added after it, forgotten once more than size were, and keys
// never added are not found (the open-addressing tables of dedupWindow).
func TestDedupWindowGenerations(t *testing.T) {
	t.Parallel()
	const size = 1000
	w := newDedupWindow(size)
	key := func(i int) dedupKey { return dedupKey{fmt.Sprintf("d-%05d", i%97), uint32(i % 3), uint64(i)} }
	remembered := func(i int) bool {
		h := w.hash(key(i))
		return w.has(w.cur, h) || w.has(w.prev, h)
	}
	for i := range 5 * size {
		if w.add(key(i)) {
			t.Fatalf("key %d found before it was added", i)
		}
		if j := i - size/2 + 1; j >= 0 && !remembered(j) {
			t.Fatalf("key %d forgotten after %d later keys", j, size/2-1)
		}
		if j := i - size - 1; j >= 0 && remembered(j) {
			t.Fatalf("key %d remembered after %d later keys", j, size+1)
		}
	}
	if !w.add(key(5*size - 1)) {
		t.Error("the last key added is not found again")
	}
	if w.n > w.half || len(w.cur) < 2*w.half {
		t.Errorf("generation holds %d keys in %d slots, want at most %d in at least %d", w.n, len(w.cur), w.half, 2*w.half)
	}
}

// BenchmarkDedupWindow is one add of a new key to a full window of the
// default size (100,000).
func BenchmarkDedupWindow(b *testing.B) {
	w := newDedupWindow(100_000)
	for i := range 100_000 {
		w.add(dedupKey{fmt.Sprintf("d-%05d", i%10000), 1, uint64(i)})
	}
	devs := make([]string, 10000)
	for i := range devs {
		devs[i] = fmt.Sprintf("d-%05d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.add(dedupKey{devs[i%10000], 1, uint64(100_000 + i)})
	}
}
