package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// TestPubackAfterCommit: when the publisher gets the PUBACK of a QoS 1
// message, the message is already committed to the store file (fsync on,
// the default): in the journal, or queued for the persistent subscriber
// that is away. One client publishes 200 messages without waiting, so
// their PUBACKs are held in its connection (ackConn) while the commits
// run; each one is checked as soon as its PUBACK arrives.
func TestPubackAfterCommit(t *testing.T) {
	t.Parallel()
	root := "test-puback" // a broker of its own: no other test's topics
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: quiet, StorePath: filepath.Join(t.TempDir(), "store.db"), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	sub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: "puback-sub", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(ctx, sub.Subscribe(root+"/#", 1, nil), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)
	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: "puback-pub", CleanSession: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)

	// stored reports whether payload is in the journal or the queues.
	stored := func(payload []byte) bool {
		want := []byte(base64.StdEncoding.EncodeToString(payload))
		found := false
		_ = b.store.db.View(func(tx *bbolt.Tx) error {
			for _, bk := range [][]byte{bucketJournal, bucketInflight} {
				_ = tx.Bucket(bk).ForEach(func(_, v []byte) error {
					found = found || bytes.Contains(v, want)
					return nil
				})
			}
			return nil
		})
		return found
	}
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var missing []int
	for i := range n {
		payload := fmt.Appendf(nil, `{"seq":%d}`, i)
		tok := pub.Publish(root+"/v1/s1/d1/telemetry", 1, false, payload)
		wg.Go(func() {
			if err := mqttconn.Wait(ctx, tok, 10*time.Second, "publish"); err != nil {
				t.Error(err)
				return
			}
			if !stored(payload) {
				mu.Lock()
				missing = append(missing, i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(missing) > 0 {
		t.Errorf("%d of %d messages were acknowledged before they were stored: %v", len(missing), n, missing)
	}
}

// TestOverwritten: within a batch, a put followed by a put or a delete of
// the same key is not written; a delete is always written (the key may
// exist from an earlier batch), and so is a put not overwritten later, and
// any other op.
func TestOverwritten(t *testing.T) {
	put := func(b, k string) storeOp { return storeOp{bucket: []byte(b), key: []byte(k), val: k} }
	del := func(b, k string) storeOp { return storeOp{bucket: []byte(b), key: []byte(k), del: true} }
	fn := storeOp{fn: func(*bbolt.Tx) error { return nil }}
	batch := []storeOp{
		put("journal", "a"),  // 0: deleted at 3
		put("inflight", "a"), // 1: another bucket, stays
		put("journal", "b"),  // 2: put again at 5
		del("journal", "a"),  // 3
		fn,                   // 4
		put("journal", "b"),  // 5: stays
		del("inflight", "x"), // 6: stays
		put("journal", "a"),  // 7: after the delete, stays
	}
	got := overwritten(batch, nil, map[string]int{})
	want := []bool{true, false, true, false, false, false, false, false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("overwritten = %v, want %v", got, want)
	}
}
