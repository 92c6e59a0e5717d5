// Package ingest moves readings and events from MQTT into InfluxDB.
//
// It takes the telemetry and event channels of every device through one
// MQTT shared subscription (so replicas with the same group share the
// load), decodes and validates each message with the device package,
// tags it with the site, the device, the device's kind and the resident
// bound to the device at the reading's device time, and writes the points
// in batches through the InfluxDB v2 client (InfluxDB 1.8 and later).
//
// Delivery is at least once: the session is persistent, paho's automatic
// acknowledgement is off, and a message is acknowledged only once every
// point it carries was written (or refused by InfluxDB as invalid), or once
// it was rejected as malformed. A redelivered message produces identical
// points, which InfluxDB overwrites, so it is stored once. The schema is in
// docs/schema.md.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Tunables that are not worth a flag.
const (
	retryMin       = 100 * time.Millisecond // first backoff after a failed write
	retryMax       = 10 * time.Second       // longest backoff
	shutdownGrace  = 5 * time.Second        // final flush on shutdown
	leaveQuiet     = 300 * time.Millisecond // after UNSUBACK: no message for this long = the broker's queue is empty
	leaveDrain     = 5 * time.Second        // after UNSUBACK: receive what was queued for at most this long
	subscribeWait  = 10 * time.Second       // SUBACK deadline
	logPayloadMax  = 200                    // bytes of a rejected payload in the log
	writeTimeout   = 30 * time.Second       // one HTTP write request
	disconnectWait = 250                    // ms for paho's Disconnect
	deadLetterWait = 10 * time.Second       // one attempt to store a dead letter
)

// Service is one ingest replica. Create it with New and start it with Run.
type Service struct {
	cfg       Config
	residents Residents
	log       *slog.Logger
	m         *metrics
	now       func() time.Time
	acker     *mqttconn.Acker
	buckets   map[Group]string // database/policy of each group
	// held counts messages received and not yet acknowledged; warnedAt is
	// when ingest last warned that held exceeded MaxInFlight (unix ns).
	// droppedAt is when it last warned of dropped QoS 0 messages.
	// heldQoS0 counts the QoS 0 messages among held.
	held, heldQoS0, warnedAt, droppedAt atomic.Int64
	batches                             *batcher
	heldSince                           heldSince // first-message times of unacknowledged batches
	acks                                *ackOrder
	rejects                             *fifo[rejected]

	client influxdb2.Client
	// writeURLs holds the v2 write endpoint of each bucket
	// (database/policy), millisecond precision.
	writeURLs map[string]string
	dedup     *dedupWindow
	// createDB creates the database and is called on start and after a 404.
	createDB func(ctx context.Context) error
	// connect opens the MQTT connection; tests may replace it.
	connect func(ctx context.Context, o mqttconn.Options) (paho.Client, error)
	// subscribed is closed after the first successful subscription.
	subscribed chan struct{}
	// subscriptions counts successful subscriptions (one per connect).
	subscriptions atomic.Int64
	// lastMessage is when the last message arrived (Unix ns).
	lastMessage atomic.Int64
}

// item is one valid message waiting for its points to be written.
type item struct {
	msg      paho.Message
	receipt  mqttconn.Receipt
	topic    device.Topic
	received time.Time
	lines    []byte   // line protocol of the points, back to back
	ends     []int    // point i is lines[ends[i-1]:ends[i]] (ends[-1] = 0)
	buckets  []string // bucket of point i
	// end1 and bucket1 hold ends and buckets of a single-point message,
	// which then costs no allocation of its own for them.
	end1    [1]int
	bucket1 [1]string
	// line1 holds lines when they fit: a single reading's point (about
	// 110-150 bytes) then shares the item's allocation.
	line1 [176]byte
}

// line returns point i as line protocol.
func (it *item) line(i int) []byte {
	start := 0
	if i > 0 {
		start = it.ends[i-1]
	}
	return it.lines[start:it.ends[i]]
}

// New checks cfg (Config.Validate, after defaults), registers the metrics on
// reg (nil: not registered) and prepares the InfluxDB client with
// millisecond precision. residents may be nil: points then carry no
// resident and kind tags. log nil means slog.Default(). It does not connect
// to anything; Run does.
func New(cfg Config, residents Residents, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	opts := influxdb2.DefaultOptions().
		SetPrecision(time.Millisecond).
		SetHTTPRequestTimeout(uint(writeTimeout / time.Second)).
		SetBatchSize(uint(cfg.BatchSize))
	client := influxdb2.NewClientWithOptions(cfg.InfluxURL, string(cfg.InfluxToken), opts)
	s := &Service{
		cfg:       cfg,
		residents: residents,
		log:       log.With("role", "ingest"),
		m:         m,
		now:       time.Now,
		acker:     &mqttconn.Acker{Plain: cfg.plain(PlainPUBACK), PlainReceive: cfg.plain(PlainReceive)},
		client:    client,
		writeURLs: map[string]string{},
		dedup:     newDedupWindow(cfg.DedupWindow),
		connect:   mqttconn.Connect,

		subscribed: make(chan struct{}),
	}
	if reg != nil {
		oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eldercare_ingest_oldest_held_seconds",
			Help: "Age in seconds of the oldest message ingest holds unacknowledged in a batch being filled, waiting for a writer or being written (0 when none). It grows while InfluxDB is slow or down; messages waiting for the dead-letter store are not counted (see eldercare_ingest_dead_letter_store_failing).",
		}, func() float64 { return s.heldSince.age(time.Now()).Seconds() })
		if err := reg.Register(oldest); err != nil {
			return nil, fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	s.buckets = make(map[Group]string, len(Groups))
	for _, g := range Groups {
		b := cfg.GroupBucket(g)
		s.buckets[g] = b
		q := url.Values{"org": {""}, "bucket": {b}, "precision": {"ms"}}
		s.writeURLs[b] = strings.TrimSuffix(cfg.InfluxURL, "/") + "/api/v2/write?" + q.Encode()
	}
	rps := cfg.policies()
	s.createDB = func(ctx context.Context) error {
		return influxd.CreateDatabase(ctx, cfg.InfluxURL, cfg.InfluxDatabase, rps...)
	}
	return s, nil
}

// Run creates the database if missing (retrying with backoff while
// InfluxDB is unreachable), connects to the broker with a persistent
// session, subscribes (again after every reconnect) and writes batches
// until ctx is cancelled. On cancellation it writes and acknowledges what
// it holds (for at most 5 s), then disconnects (sending the last PUBACKs
// and waiting for the broker to close: normally milliseconds, at most about
// 2 s) and returns nil; messages it could not write stay unacknowledged and
// the broker delivers them again.
//
// Errors: the first connection or subscription failing (wrapped with the
// broker and filter), or a database that InfluxDB refuses to create for a
// reason other than being unreachable.
func (s *Service) Run(ctx context.Context) error {
	defer s.client.Close()
	if err := s.ensureDatabase(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	// The pipeline: paho's router goroutine runs handler, which decodes
	// the message and adds it to the batcher (or, malformed, to the
	// dead-letter queue); Writers goroutines take sealed batches from the
	// ready queue, write them and acknowledge their messages in one write
	// of PUBACKs. Nothing in it blocks paho's receive loop, and nothing
	// starts a goroutine per message. The writers' context outlives ctx by
	// shutdownGrace, so that what was received is written on the way out.
	s.batches = &batcher{size: s.cfg.BatchSize, interval: s.cfg.FlushInterval, ready: newFIFO[*batch](s.m.queued), held: &s.heldSince}
	s.acks = &ackOrder{held: &s.heldSince, send: func(rs []mqttconn.Receipt) {
		// Released before the PUBACKs leave, so that the next message the
		// broker sends for them never finds the count still including them.
		s.releaseReceipts(rs)
		s.acker.Ack(rs)
	}}
	s.rejects = newFIFO[rejected](s.m.deadLetterQueue)
	wctx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriters()
	var writers, rejecter sync.WaitGroup
	for range s.cfg.Writers {
		writers.Go(func() { s.writeLoop(wctx) })
	}
	rejecter.Go(func() { s.rejectLoop(wctx) })
	shutdown := func() {
		t := time.AfterFunc(shutdownGrace, stopWriters)
		defer t.Stop()
		s.batches.close()
		writers.Wait() // they may still hand refused points to the dead-letter loop
		s.rejects.close()
		rejecter.Wait()
	}

	handler := s.handler()
	filters := map[string]byte{}
	for _, ch := range []device.Channel{device.ChanTelemetry, device.ChanEvent} {
		f := device.Subscription(s.cfg.Root, ch)
		if !s.cfg.Unshared {
			f = device.SharedSubscription(s.cfg.Group, f)
		}
		filters[f] = 1
	}
	firstSub := make(chan error, 1)
	var once sync.Once
	onConnect := func(c paho.Client) {
		if ctx.Err() != nil {
			return // stopping (and with LeaveGroupOnStop, left the group): no new subscription
		}
		// No routes: every message goes to the default handler, which
		// spares paho matching each topic against each filter.
		err := mqttconn.Wait(ctx, c.SubscribeMultiple(filters, nil), subscribeWait,
			fmt.Sprintf("subscribe %v", keys(filters)))
		if err != nil {
			s.log.Error("ingest: subscribe failed", "err", err)
		} else {
			s.subscriptions.Add(1)
			s.log.Info("ingest: subscribed", "filters", keys(filters), "client", s.cfg.ClientID)
		}
		once.Do(func() {
			firstSub <- err
			if err == nil {
				close(s.subscribed)
			}
		})
	}
	c, err := s.connect(ctx, mqttconn.Options{
		URL:            s.cfg.MQTTURL,
		ClientID:       s.cfg.ClientID,
		CleanSession:   false,
		OnConnect:      onConnect,
		DefaultHandler: handler, // every message, also those of the session sent before OnConnect runs
		// The same handler, called from the reading goroutine without
		// paho's hand-offs (unless --plain receive or puback).
		Direct:          func(m paho.Message) { handler(nil, m) },
		AutoAckDisabled: true,
		OrderMatters:    true, // handler never blocks
		MaxInflight:     s.cfg.MaxInFlight,
		// PUBACKs go out a batch at a time; paho keeps no store (ingest
		// publishes nothing, and an unacknowledged message is the
		// broker's to send again).
		Acker: s.acker,
		// Batches wait FlushInterval anyway: 5 ms of gathering costs
		// nothing and saves a system call per message or two.
		ReadDelay: s.cfg.ReadDelay,
		Logger:    s.log,
	})
	if err != nil {
		shutdown()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ingest: %w", err)
	}
	defer c.Disconnect(disconnectWait)
	select {
	case err := <-firstSub:
		if err != nil {
			shutdown()
			return fmt.Errorf("ingest: %w", err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	if s.cfg.LeaveGroupOnStop && !s.cfg.Unshared {
		s.leaveGroup(c, keys(filters))
	}
	// Write and acknowledge what is held before disconnecting (the
	// connection's Close sends the PUBACKs still queued); messages that
	// arrive from now on are left unacknowledged.
	shutdown()
	return nil
}

// leaveGroup unsubscribes from the shared subscription, then keeps
// receiving until the broker has sent what it had already queued for this
// client: until no message arrived for leaveQuiet, at most leaveDrain.
func (s *Service) leaveGroup(c paho.Client, filters []string) {
	start := time.Now()
	err := mqttconn.Wait(context.Background(), c.Unsubscribe(filters...), subscribeWait, fmt.Sprintf("unsubscribe %v", filters))
	if err != nil {
		s.log.Warn("ingest: could not leave the shared subscription; the broker may keep this replica's share until it returns", "err", err)
		return
	}
	for time.Since(start) < leaveDrain {
		last := time.Unix(0, s.lastMessage.Load())
		if time.Since(last) >= leaveQuiet {
			break
		}
		time.Sleep(leaveQuiet / 5)
	}
	s.log.Info("ingest: left the shared subscription; the other replicas of the group get the new messages",
		"filters", filters, "client", s.cfg.ClientID, "took", time.Since(start).Round(time.Millisecond))
}

func keys(m map[string]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ensureDatabase runs CREATE DATABASE, retrying with backoff while
// InfluxDB cannot be reached.
func (s *Service) ensureDatabase(ctx context.Context) error {
	backoff := retryMin
	for attempt := 1; ; attempt++ {
		err := s.createDB(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("ingest: create database failed; retrying", "db", s.cfg.InfluxDatabase, "attempt", attempt,
			"retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = nextBackoff(backoff)
	}
}

// rejected is a malformed message waiting for the dead-letter store.
type rejected struct {
	receipt  mqttconn.Receipt
	received time.Time
	err      error // why the message was refused, or
	// deadLetters: its points that InfluxDB refused (the others are
	// written).
	deadLetters []DeadLetter
}

// handler returns the MQTT message handler. paho runs it in its receive
// loop (OrderMatters), one message at a time, so it must never wait
// (paho's keepalive waits behind it): it decodes the message and hands it
// to the batcher, or a malformed one to the dead-letter queue. Either way
// the message stays unacknowledged until it is stored.
func (s *Service) handler() paho.MessageHandler {
	return func(_ paho.Client, msg paho.Message) {
		s.lastMessage.Store(time.Now().UnixNano())
		if msg.Qos() == 0 {
			if s.heldQoS0.Load() >= int64(s.cfg.MaxInFlight) {
				s.dropQoS0(msg)
				return
			}
			s.heldQoS0.Add(1)
		}
		now := s.now()
		r := s.acker.Receipt(msg)
		s.hold(1)
		it, err := s.decode(msg, now)
		if err != nil {
			s.rejects.push(rejected{receipt: r, received: now, err: err}, 1)
			return
		}
		it.receipt = r
		if !s.batches.add(it) {
			s.releaseReceipts([]mqttconn.Receipt{r}) // shutting down: the broker delivers it again
		}
	}
}

// hold counts n messages as received and not yet acknowledged, and warns
// (once a minute) while clearly more than MaxInFlight are held: the
// broker's in-flight window is larger than ingest's. The 1 % slack (at
// least one message) is for the broker: with a window of 10,000,
// Mosquitto 2.0.11 was seen to have 10,001 messages out while PUBACKs were
// on their way.
func (s *Service) hold(n int) {
	held := s.held.Add(int64(n))
	s.m.inFlight.Add(float64(n))
	if held > int64(s.cfg.MaxInFlight+max(1, s.cfg.MaxInFlight/100)) {
		if aMinuteSince(&s.warnedAt) {
			s.log.Warn("ingest: holding more unacknowledged messages than --max-in-flight; set the broker's in-flight window (Mosquitto max_inflight_messages) to at most --max-in-flight",
				"held", held, "max_in_flight", s.cfg.MaxInFlight)
		}
	}
}

// dropQoS0 drops a QoS 0 message that arrived while ingest already held
// MaxInFlight QoS 0 messages (QoS 1 ones have the broker's window and do
// not count here): QoS 0 escapes that window, so
// without this a QoS 0 flood during an InfluxDB outage would grow memory
// without bound. QoS 0 is at most once by definition; it is counted and
// logged (once a minute), never silent.
func (s *Service) dropQoS0(msg paho.Message) {
	ch := "unknown"
	if t, err := device.ParseTopic(s.cfg.Root, msg.Topic()); err == nil {
		ch = string(t.Channel)
	}
	s.m.dropped.WithLabelValues(ch).Inc()
	if aMinuteSince(&s.droppedAt) {
		s.log.Warn("ingest: dropping QoS 0 messages while --max-in-flight messages are held (InfluxDB slow or down); devices should publish at QoS 1",
			"topic", msg.Topic(), "max_in_flight", s.cfg.MaxInFlight)
	}
}

// release counts n messages as acknowledged or dropped.
func (s *Service) release(n int) {
	s.held.Add(-int64(n))
	s.m.inFlight.Sub(float64(n))
}

// releaseReceipts is release for the messages of rs, which also gives back
// the QoS 0 ones' share of MaxInFlight.
func (s *Service) releaseReceipts(rs []mqttconn.Receipt) {
	var qos0 int64
	for _, r := range rs {
		if r.Message().Qos() == 0 {
			qos0++
		}
	}
	if qos0 > 0 {
		s.heldQoS0.Add(-qos0)
	}
	s.release(len(rs))
}

// aMinuteSince reports whether at least a minute has passed since the time
// (unix ns) in at, and if so sets it to now: at most one caller a minute
// gets true. It rate-limits warnings.
func aMinuteSince(at *atomic.Int64) bool {
	last := at.Load()
	return time.Since(time.Unix(0, last)) > time.Minute && at.CompareAndSwap(last, time.Now().UnixNano())
}

// writeLoop writes ready batches until the queue is closed and empty or
// ctx ends.
func (s *Service) writeLoop(ctx context.Context) {
	for {
		b, ok := s.batches.ready.pop(ctx)
		if !ok {
			return
		}
		s.flush(ctx, b)
	}
}

// rejectLoop stores malformed messages, and the points InfluxDB refused,
// as dead letters and acknowledges their messages.
func (s *Service) rejectLoop(ctx context.Context) {
	for {
		r, ok := s.rejects.pop(ctx)
		if !ok {
			return
		}
		stored := true
		if r.err != nil {
			stored = s.reject(ctx, r.receipt.Message(), r.received, r.err)
		}
		for _, d := range r.deadLetters {
			stored = stored && s.deadLetter(ctx, d)
		}
		s.releaseReceipts([]mqttconn.Receipt{r.receipt})
		if stored {
			s.acker.Ack([]mqttconn.Receipt{r.receipt})
		}
	}
}

// decode parses the topic and payload of msg received at now and builds its
// points.
func (s *Service) decode(msg paho.Message, now time.Time) (*item, error) {
	topic, err := device.ParseTopic(s.cfg.Root, msg.Topic())
	if err != nil {
		s.m.received.WithLabelValues("unknown").Inc()
		return nil, err
	}
	switch topic.Channel {
	case device.ChanTelemetry:
		s.m.receivedTelemetry.Inc()
	case device.ChanEvent:
		s.m.receivedEvent.Inc()
	default:
		s.m.received.WithLabelValues(string(topic.Channel)).Inc()
	}
	it := &item{msg: msg, topic: topic, received: now}
	var points []*point
	sc := scratchPool.Get().(*pointScratch)
	defer scratchPool.Put(sc)
	switch topic.Channel {
	case device.ChanTelemetry:
		var tel *device.Telemetry
		if s.cfg.plain(PlainJSON) {
			tel, err = device.DecodeTelemetry(msg.Payload(), now, s.cfg.Limits)
		} else {
			tel, err = sc.dec.Decode(msg.Payload(), now, s.cfg.Limits)
		}
		if err != nil {
			return nil, err
		}
		if err := device.CheckTopicDevice(topic, tel.Device); err != nil {
			return nil, err
		}
		points, err = readingPointsIn(sc, tel, topic, s.residents)
		if err != nil {
			return nil, err
		}
		s.seen(msg, tel.Device, tel.Boot, tel.ID)
	case device.ChanEvent:
		ev, err := device.DecodeEvent(msg.Payload(), now, s.cfg.Limits)
		if err != nil {
			return nil, err
		}
		if err := device.CheckTopicDevice(topic, ev.Device); err != nil {
			return nil, err
		}
		p, err := eventPoint(ev, topic, now, s.residents)
		if err != nil {
			return nil, err
		}
		points = []*point{p}
		s.seen(msg, ev.Device, ev.Boot, ev.ID)
	default:
		return nil, &device.ValidationError{Field: "topic", Rule: "channel", Detail: fmt.Sprintf("ingest takes telemetry and event, not %s", topic.Channel)}
	}
	// Keep the points as line protocol: a fifth of their size as structs,
	// which matters for what the broker's in-flight window lets in.
	if len(points) == 1 {
		it.buckets, it.ends = it.bucket1[:], it.end1[:]
	} else {
		it.buckets = make([]string, len(points))
		it.ends = make([]int, len(points))
	}
	lines := sc.lines[:0]
	for i, p := range points {
		if d := now.Sub(p.Time()); d > s.cfg.Skew || -d > s.cfg.Skew {
			// The receive time says something only here: a reading's
			// own time is within Skew of it otherwise (events carry it
			// always). One field less per point is a fifth less field
			// work for InfluxDB on a single reading (docs/benchmarks.md).
			if p.Name() == MeasurementReadings {
				p.addField(intField(FieldReceivedMS, now.UnixMilli()))
			}
			p.addField(field{Key: FieldSkewed, kind: kindBool, b: true})
			s.m.skewed.Inc()
		}
		it.buckets[i] = s.bucketOf(p)
		if s.cfg.plain(PlainLineProtocol) {
			if lines, err = p.appendLineEncoder(lines); err != nil {
				return nil, err
			}
		} else {
			lines = p.appendLine(lines)
		}
		it.ends[i] = len(lines)
	}
	sc.lines = lines
	// One allocation of the exact size: the item keeps its lines until
	// the batch is written.
	if len(lines) <= len(it.line1) {
		it.lines = append(it.line1[:0], lines...)
	} else {
		it.lines = bytes.Clone(lines)
	}
	return it, nil
}

// bucketOf returns the bucket of p's measurement group: events, readings
// of env_sensor devices (environment), other readings (vitals).
func (s *Service) bucketOf(p *point) string {
	g := GroupVitals
	if p.Name() == MeasurementEvents {
		g = GroupEvents
	} else {
		for _, t := range p.tags {
			if t.Key == "kind" && t.Value == string(device.EnvSensor) {
				g = GroupEnvironment
			}
		}
	}
	return s.buckets[g]
}

// seen counts msg as redelivered when the broker flagged it DUP or its key
// is in the dedup window.
func (s *Service) seen(msg paho.Message, dev string, boot uint32, id uint64) {
	if s.dedup.add(dedupKey{dev, boot, id}) || msg.Duplicate() {
		s.m.redelivered.Inc()
	}
}

// reject counts and logs a malformed message and stores it as a dead
// letter. It reports whether the message may be acknowledged: false when
// the dead-letter store failed (the message then stays unacknowledged and
// the broker delivers it again after a reconnect).
func (s *Service) reject(ctx context.Context, msg paho.Message, received time.Time, err error) bool {
	reason := device.Reason(err)
	var pe *PointError
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	s.m.rejected.WithLabelValues(reason).Inc()
	s.log.Warn("ingest: rejected malformed message", "topic", msg.Topic(), "reason", reason, "err", err,
		"payload", truncate(msg.Payload(), logPayloadMax))
	return s.deadLetter(ctx, DeadLetter{Received: received, Topic: msg.Topic(), Reason: reason, Detail: err.Error(), Payload: msg.Payload()})
}

// deadLetter stores d, retrying with backoff until it is stored or ctx
// ends (each attempt gets deadLetterWait); it reports whether d was stored
// (always true without a store). It does not give up while running: a
// message that is neither stored nor acknowledged would keep a slot of the
// broker's in-flight window until the next reconnect, and enough of them
// would stop delivery. While the store fails, the message stays in
// eldercare_ingest_in_flight and eldercare_ingest_dead_letter_store_failing
// is 1.
func (s *Service) deadLetter(ctx context.Context, d DeadLetter) bool {
	if s.cfg.DeadLetters == nil {
		return true
	}
	limit := s.cfg.Limits.MaxPayload
	if limit <= 0 {
		limit = device.DefaultLimits.MaxPayload
	}
	if len(d.Payload) > limit {
		d.Detail += fmt.Sprintf(" (payload of %d bytes, stored: the first %d)", len(d.Payload), limit)
		d.Payload = d.Payload[:limit]
	}
	backoff := retryMin
	failing := false
	defer func() {
		if failing {
			s.m.deadLetterFailing.Dec()
		}
	}()
	for {
		actx, cancel := context.WithTimeout(ctx, deadLetterWait)
		err := s.cfg.DeadLetters.AddDeadLetter(actx, d)
		cancel()
		if err == nil {
			s.m.deadLetters.WithLabelValues(d.Reason).Inc()
			return true
		}
		if !failing {
			failing = true
			s.m.deadLetterFailing.Inc()
		}
		s.log.Error("ingest: dead-letter store failed; retrying, the message stays unacknowledged", "topic", d.Topic,
			"reason", d.Reason, "retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = nextBackoff(backoff)
	}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + fmt.Sprintf("...(%d bytes)", len(b))
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// nextBackoff doubles d up to retryMax, with +-20 % jitter so replicas do
// not retry in step.
func nextBackoff(d time.Duration) time.Duration {
	d *= 2
	if d > retryMax {
		d = retryMax
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Ready reports whether Run has made its first subscription; a health check
// answers 503 until then.
func (s *Service) Ready() bool {
	select {
	case <-s.subscribed:
		return true
	default:
		return false
	}
}
