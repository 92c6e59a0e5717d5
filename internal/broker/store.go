package broker

// The embedded broker's persistence: sessions, subscriptions, queued QoS 1
// and 2 messages and retained messages in one bbolt file, so that what the
// broker acknowledged survives a restart and a kill -9 of "eldercare up".

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The buckets of the store file.
var (
	bucketClients  = []byte("clients")  // client id -> storage.Client
	bucketSubs     = []byte("subs")     // client id \x00 filter -> storage.Subscription
	bucketInflight = []byte("inflight") // client id \x00 packet id (2 bytes) -> storage.Message
	bucketRetained = []byte("retained") // topic -> storage.Message
	// bucketJournal holds an inbound QoS 1/2 message from the moment the
	// broker accepts it (before its PUBACK) until it has been queued for
	// every subscriber (and those queues stored). mochi writes the PUBACK
	// before it fans the message out, so without the journal a kill -9 in
	// between would lose a message the publisher already forgot.
	bucketJournal = []byte("journal") // origin client id \x00 packet id -> journalEntry
)

// storeHook keeps the broker's state in a bbolt file. It follows the data
// model of mochi-mqtt's own storage hooks (storage.Client, Subscription and
// Message records, reloaded by the server at start) with three
// differences: queued messages keep their packet id (mochi's bolt hook
// drops it, so a session's queue collapses into one message on reload); a
// session taken over by a reconnecting client keeps its stored queue
// (mochi deletes the records the new connection has just inherited); and
// the journal above.
//
// Every write goes through one writer goroutine that commits whatever is
// queued in one transaction (group commit: one fsync pair for many
// messages and clients). A session and a subscription are written
// synchronously (the hook returns after the commit: before the CONNACK's
// successor, the SUBACK). A journal entry is committed before its PUBACK
// leaves: on a connection from our listeners (ackConn) the hook returns at
// once and the connection holds the PUBACK, and whatever mochi writes to
// that client after it, until the commit, so one client's consecutive
// publishes share a commit; elsewhere the hook waits for the commit. The
// rest (a message queued for a subscriber, its acknowledgement, the end
// of a journal entry, retained messages) is queued behind them in order,
// so a crash loses at most the last batch, which the journal covers.
//
// Within a batch, a record written and then deleted (a journal entry
// whose message was queued for its subscribers, a queued message its
// subscriber acknowledged) is not written: the delete alone has the same
// effect, and the value is never encoded.
type storeHook struct {
	mqtt.HookBase
	db      *bbolt.DB
	log     *slog.Logger
	errors  prometheus.Counter
	pending atomic.Int64 // journal entries

	ops     chan storeOp
	mu      sync.Mutex // closed, seq; held while sending on ops
	closed  bool
	seq     uint64 // of the last op queued
	stopped chan struct{}

	// committed is the seq of the last op committed (or failed); every op
	// queued before it is done too. commitCh is closed at each commit.
	committed atomic.Uint64
	cmu       sync.Mutex
	commitCh  chan struct{}
	// failed holds the seqs of journal entries of a batch in which a write
	// failed, until
	// the connection waiting for that entry's commit has seen it
	// (journalFailed): their PUBACKs must never be sent.
	failed  sync.Map     // uint64 -> struct{}
	failedN atomic.Int64 // entries in failed
	// failWrite, when set (tests only), is asked before each put is
	// applied and makes it fail with its error: a full or broken disk.
	failWrite atomic.Pointer[func(o *storeOp) error]
}

// storeOp is one write: fn, or a put (val encoded as JSON at commit) or
// delete of key in bucket. done, when set, receives the commit's result.
type storeOp struct {
	what        string
	seq         uint64
	fn          func(tx *bbolt.Tx) error
	bucket, key []byte
	del         bool
	val         any
	done        chan error
	fail        func(o *storeOp) error // storeHook.failWrite when the op was queued (tests only)
}

// apply performs o in tx.
func (o *storeOp) apply(tx *bbolt.Tx) error {
	switch {
	case o.fn != nil:
		return o.fn(tx)
	case o.del:
		return tx.Bucket(o.bucket).Delete(o.key)
	}
	b, err := json.Marshal(o.val)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if o.fail != nil {
		if err := o.fail(o); err != nil {
			return err
		}
	}
	return tx.Bucket(o.bucket).Put(o.key, b)
}

// maxBatch bounds the writes committed in one transaction. A QoS 1
// message makes about six (journal entry and its end, a queued copy per
// subscriber and its acknowledgement); one publisher's window of 1000
// unacknowledged messages (eldercare-bench ingest) then fits in one
// commit. With 2000, such a window took three commits, one after the
// other: on a disk where fdatasync is slow, three times the wait for the
// PUBACKs (eldercare-bench ingest --only up: 362-396 -> 544 messages/s on
// a loaded machine). The queue (ops) holds half as many: the writer keeps
// draining it while producers refill it.
const maxBatch = 16384

type journalEntry struct {
	Topic   string `json:"topic"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain,omitempty"`
	Payload []byte `json:"payload"`
	Origin  string `json:"origin"`
}

// openStore opens (or creates) the store file. noSync skips the fsync of
// each transaction: the file then survives a crash of the process (the
// kernel keeps what was written) but not a power loss.
func openStore(path string, noSync bool, log *slog.Logger) (*storeHook, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: noSync, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("broker store %s is locked: is another eldercare up using this data directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("broker store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketClients, bucketSubs, bucketInflight, bucketRetained, bucketJournal} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("broker store %s: %w", path, err)
	}
	h := &storeHook{db: db, log: log, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eldercare_broker_store_errors_total",
		Help: "Writes to the embedded broker's session store (DATA/broker/store.db) that failed; each is logged."}),
		ops: make(chan storeOp, maxBatch/2), stopped: make(chan struct{}), commitCh: make(chan struct{})}
	go h.writer()
	_ = db.View(func(tx *bbolt.Tx) error {
		h.pending.Store(int64(tx.Bucket(bucketJournal).Stats().KeyN))
		return nil
	})
	return h, nil
}

func (h *storeHook) ID() string { return "eldercare-store" }

func (h *storeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnWillSent, mqtt.OnClientExpired,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnPublish, mqtt.OnPublished,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages,
	}, []byte{b})
}

// Stop commits what is queued and closes the file; mochi calls it from
// Server.Close, after the listeners have closed.
func (h *storeHook) Stop() error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.ops)
	}
	h.mu.Unlock()
	<-h.stopped
	return h.db.Close()
}

// writer commits the queued writes in batches, in order.
func (h *storeHook) writer() {
	defer func() {
		h.markCommitted(math.MaxUint64) // nothing more will be written
		close(h.stopped)
	}()
	var (
		batch []storeOp
		skip  []bool
		puts  = map[string]int{}
	)
	for op := range h.ops {
		batch = append(batch[:0], op)
	drain:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-h.ops:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		skip = overwritten(batch, skip, puts)
		err := h.db.Update(func(tx *bbolt.Tx) error {
			for i := range batch {
				if skip[i] {
					continue
				}
				if err := batch[i].apply(tx); err != nil {
					return err
				}
			}
			return nil
		})
		failed := err != nil
		if err != nil && len(batch) > 1 {
			// One bad write must not take the batch with it: one by one.
			failed = false
			for i := range batch {
				var err error
				if !skip[i] {
					err = h.db.Update(batch[i].apply)
				}
				failed = failed || err != nil
				h.finish(batch[i], err)
			}
		} else {
			for _, o := range batch {
				h.finish(o, err)
			}
		}
		if failed {
			// A message's durability may rest on any write of its batch
			// (its journal entry, or, when the entry and its end cancel
			// out in one batch, the queued copies for its subscribers):
			// no message journalled in a batch with a failed write is
			// acknowledged (journalFailed).
			for _, o := range batch {
				if !o.del && o.fn == nil && bytes.Equal(o.bucket, bucketJournal) {
					if _, had := h.failed.LoadOrStore(o.seq, struct{}{}); !had {
						h.failedN.Add(1)
					}
				}
			}
		}
		h.markCommitted(batch[len(batch)-1].seq)
		clear(batch) // drop the references to the values
	}
}

// overwritten reports, for each op of batch, whether a later op of the
// batch puts or deletes the same key, so that it need not be written: a
// put followed by a delete of the same key is the delete alone. skip and
// puts are reused.
func overwritten(batch []storeOp, skip []bool, puts map[string]int) []bool {
	skip = append(skip[:0], make([]bool, len(batch))...)
	clear(puts)
	for i := range batch {
		o := &batch[i]
		if o.fn != nil || o.key == nil {
			continue
		}
		k := string(o.bucket) + "\x00" + string(o.key)
		if j, ok := puts[k]; ok {
			skip[j] = true
			delete(puts, k)
		}
		if !o.del {
			puts[k] = i
		}
	}
	return skip
}

// markCommitted records that every op up to seq is done and wakes the
// waiters.
func (h *storeHook) markCommitted(seq uint64) {
	h.committed.Store(seq)
	h.cmu.Lock()
	close(h.commitCh)
	h.commitCh = make(chan struct{})
	h.cmu.Unlock()
}

// journalFailed reports (once) whether the journal entry with seq failed
// to be written, forgetting it: the caller must then not acknowledge the
// message.
func (h *storeHook) journalFailed(seq uint64) bool {
	if h.failedN.Load() == 0 {
		return false // the common case: one atomic load on every write to a client
	}
	_, failed := h.failed.LoadAndDelete(seq)
	if failed {
		h.failedN.Add(-1)
	}
	return failed
}

// waitCommitted returns once the op with seq (and every op before it) is
// committed or has failed, or the store has stopped.
func (h *storeHook) waitCommitted(seq uint64) {
	for {
		h.cmu.Lock()
		ch := h.commitCh
		h.cmu.Unlock()
		if h.committed.Load() >= seq {
			return
		}
		<-ch
	}
}

func (h *storeHook) finish(o storeOp, err error) {
	if err != nil {
		h.errors.Inc()
		h.log.Error("broker store: write failed; this state is lost if the broker stops", "what", o.what, "err", err)
	}
	if o.done != nil {
		o.done <- err
	}
}

func clientPrefix(id string) []byte { return append([]byte(id), 0) }

func packetKey(id string, packetID uint16) []byte {
	return binary.BigEndian.AppendUint16(clientPrefix(id), packetID)
}

// update queues a write; with wait it returns after the commit.
func (h *storeHook) update(what string, wait bool, fn func(tx *bbolt.Tx) error) {
	h.queue(storeOp{what: what, fn: fn}, wait)
}

// queue queues op and returns its seq (0 when the store is closed); with
// wait it returns after the commit.
func (h *storeHook) queue(op storeOp, wait bool) uint64 {
	if wait {
		op.done = make(chan error, 1)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.errors.Inc()
		h.log.Error("broker store: write after the store closed; not stored", "what", op.what)
		return 0
	}
	h.seq++
	op.seq = h.seq
	if f := h.failWrite.Load(); f != nil {
		op.fail = *f
	}
	h.ops <- op
	h.mu.Unlock()
	if wait {
		<-op.done
	}
	return op.seq
}

// put queues the write of v (encoded as JSON) at key; it returns the op's
// seq.
func (h *storeHook) put(bucket, key []byte, v any, wait bool) uint64 {
	return h.queue(storeOp{what: string(bucket), bucket: bucket, key: key, val: v}, wait)
}

func (h *storeHook) del(bucket, key []byte) {
	h.queue(storeOp{what: string(bucket), bucket: bucket, key: key, del: true}, false)
}

// deletePrefix removes every key of bucket that starts with prefix.
func deletePrefix(tx *bbolt.Tx, bucket, prefix []byte) error {
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (h *storeHook) putClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	h.put(bucketClients, []byte(cl.ID), storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod, AuthenticationData: props.AuthenticationData,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}, true)
}

// deleteClient forgets a session: the client, its subscriptions and its
// queue.
func (h *storeHook) deleteClient(id string) {
	h.update("client", false, func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketClients).Delete([]byte(id)); err != nil {
			return err
		}
		if err := deletePrefix(tx, bucketSubs, clientPrefix(id)); err != nil {
			return err
		}
		return deletePrefix(tx, bucketInflight, clientPrefix(id))
	})
}

// maxClientID is the longest client id (in bytes) the store can key: its
// journal and queue keys are the id, a 0 byte and a packet id, and a bbolt
// key holds at most bbolt.MaxKeySize bytes. MQTT allows 65535.
const maxClientID = bbolt.MaxKeySize - 3

// OnConnect refuses a client id too long for the store's keys (the
// connection is closed, without CONNACK): neither its session nor the
// journal entries of its messages could be written, and its PUBACKs would
// acknowledge messages the store does not hold.
func (h *storeHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if len(cl.ID) > maxClientID {
		h.log.Warn("embedded broker: refused a client id too long for the store", "bytes", len(cl.ID), "max", maxClientID, "remote", cl.Net.Remote)
		return packets.ErrClientIdentifierNotValid
	}
	return nil
}

func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.putClient(cl)
}

func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) { h.putClient(cl) }

// OnDisconnect forgets a session that ends with its connection (clean
// session, or MQTT 5 session expiry 0); a persistent one stays.
func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || cl.IsTakenOver() {
		return
	}
	h.deleteClient(cl.ID)
}

func (h *storeHook) OnClientExpired(cl *mqtt.Client) { h.deleteClient(cl.ID) }

func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] >= 0x80 {
			continue // refused
		}
		h.put(bucketSubs, append(clientPrefix(cl.ID), f.Filter...), storage.Subscription{
			ID: cl.ID + ":" + f.Filter, T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		}, true)
	}
}

func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return // the new connection inherited these subscriptions
	}
	h.update("unsubscribe", false, func(tx *bbolt.Tx) error {
		for _, f := range pk.Filters {
			if err := tx.Bucket(bucketSubs).Delete(append(clientPrefix(cl.ID), f.Filter...)); err != nil {
				return err
			}
		}
		return nil
	})
}

func messageRecord(id, t, client string, pk packets.Packet, sent int64) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		ID: id, T: t, Client: client, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName,
		Payload: pk.Payload, Created: pk.Created, Sent: sent, PacketID: pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, TopicAlias: props.TopicAlias, User: props.User,
		},
	}
}

func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if strings.HasPrefix(pk.TopicName, "$") {
		return // $SYS: mochi publishes these again every few seconds
	}
	if r == -1 {
		h.del(bucketRetained, []byte(pk.TopicName))
		return
	}
	h.put(bucketRetained, []byte(pk.TopicName), messageRecord(pk.TopicName, storage.RetainedKey, cl.ID, pk, 0), false)
}

func (h *storeHook) OnRetainedExpired(topic string) { h.del(bucketRetained, []byte(topic)) }

// OnQosPublish stores a message queued for a client. The acknowledgements
// mochi keeps for a publisher's own QoS 1/2 messages (PUBACK, PUBREC) are
// not stored: the journal covers those messages.
func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return
	}
	h.put(bucketInflight, packetKey(cl.ID, pk.PacketID), messageRecord("", storage.InflightKey, cl.ID, pk, sent), false)
}

func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.del(bucketInflight, packetKey(cl.ID, pk.PacketID))
}

func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return // the new connection inherited the queue
	}
	h.OnQosComplete(cl, pk)
}

// OnPublish journals an inbound QoS 1/2 message before the broker
// acknowledges it: on an ackConn the acknowledgement waits in the
// connection for the commit, elsewhere the hook waits.
func (h *storeHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	ac, deferred := cl.Net.Conn.(*ackConn)
	seq := h.put(bucketJournal, packetKey(cl.ID, pk.PacketID), journalEntry{Topic: pk.TopicName, QoS: pk.FixedHeader.Qos,
		Retain: pk.FixedHeader.Retain, Payload: pk.Payload, Origin: cl.ID}, !deferred)
	if deferred {
		ac.holdUntil(seq)
	}
	h.pending.Add(1)
	return pk, nil
}

// OnPublished ends the journal entry: the message is queued (and stored)
// for every subscriber.
func (h *storeHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return
	}
	h.del(bucketJournal, packetKey(cl.ID, pk.PacketID))
	h.pending.Add(-1)
}

// replayJournal publishes again the messages that were acknowledged but
// not fanned out when the broker last stopped, then clears the journal.
// Subscribers may get such a message twice; never zero times.
func (h *storeHook) replayJournal(srv *mqtt.Server) (int, error) {
	var entries []journalEntry
	var keys [][]byte
	err := h.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
			var e journalEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			entries = append(entries, e)
			keys = append(keys, bytes.Clone(k))
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("broker store: read journal: %w", err)
	}
	for _, e := range entries {
		if err := srv.Publish(e.Topic, e.Payload, e.Retain, e.QoS); err != nil {
			return 0, fmt.Errorf("broker store: publish journalled message on %s from %s: %w", e.Topic, e.Origin, err)
		}
	}
	// Through the writer, after the replayed messages' own writes; only
	// these keys (clients may be journalling new messages already).
	h.update("journal replayed", true, func(tx *bbolt.Tx) error {
		for _, k := range keys {
			if err := tx.Bucket(bucketJournal).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	h.pending.Add(-int64(len(keys)))
	return len(entries), nil
}

func loadAll[T any](h *storeHook, bucket []byte) ([]T, error) {
	var out []T
	err := h.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				h.log.Error("broker store: skipping an unreadable record", "bucket", string(bucket), "key", string(k), "err", err)
				return nil
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

func (h *storeHook) StoredClients() ([]storage.Client, error) {
	return loadAll[storage.Client](h, bucketClients)
}

func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return loadAll[storage.Subscription](h, bucketSubs)
}

func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	return loadAll[storage.Message](h, bucketInflight)
}

func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	return loadAll[storage.Message](h, bucketRetained)
}

// fileSize is the size of the store file in bytes.
func (h *storeHook) fileSize() float64 {
	st, err := os.Stat(h.db.Path())
	if err != nil {
		return 0
	}
	return float64(st.Size())
}
