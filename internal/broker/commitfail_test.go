package broker

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestNoPubackForFailedJournalWrite: when the journal entry of a QoS 1
// message cannot be written (a full or broken disk), the broker must not
// acknowledge the message: it closes the connection instead, so the client
// keeps the message and sends it again. A message whose entry is written
// on another connection is acknowledged as usual, and the client that was
// cut off gets its PUBACK once the store works again.
func TestNoPubackForFailedJournalWrite(t *testing.T) {
	t.Parallel()
	b := quietBroker(t, filepath.Join(t.TempDir(), "store.db"))
	defer b.Close()
	diskFull := errors.New("no space left on device (test)")
	// Every write about the fall fails: its journal entry and the copy
	// queued for the persistent subscriber (when the entry and its end
	// fall into one commit, that copy is what keeps the message).
	fail := func(o *storeOp) error {
		switch v := o.val.(type) {
		case journalEntry:
			if strings.HasSuffix(v.Topic, "/fall") {
				return diskFull
			}
		case storage.Message:
			if strings.HasSuffix(v.TopicName, "/fall") {
				return diskFull
			}
		}
		return nil
	}
	sub, _ := dialRaw(t, b, "commitfail-sub", false)
	sub.subscribe("test-adv/#", 1, 1)
	b.store.failWrite.Store(&fail)

	ok, _ := dialRaw(t, b, "commitfail-ok", true)
	ok.publish("test-adv/reading", 1, 7, "r")
	ok.expect("PUBACK of a journalled reading", packets.Puback, 7)

	c, _ := dialRaw(t, b, "commitfail-fall", true)
	c.publish("test-adv/fall", 1, 1, "fall")
	_ = c.conn.SetReadDeadline(time.Now().Add(rawReadWait))
	hb, err := c.r.ReadByte()
	if err == nil {
		t.Fatalf("got a packet (first byte %#x) for a message whose journal entry failed; want the connection closed", hb)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read after the failed journal write: %v; want the connection closed (EOF)", err)
	}

	// The disk works again: the client's resend (DUP) is journalled and acknowledged.
	b.store.failWrite.Store(nil)
	c2, _ := dialRaw(t, b, "commitfail-fall", true)
	c2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: true}, TopicName: "test-adv/fall",
		PacketID: 1, Payload: []byte("fall")})
	c2.expect("PUBACK of the resent fall", packets.Puback, 1)
}
