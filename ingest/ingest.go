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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
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
	subscribeWait  = 10 * time.Second       // SUBACK deadline
	logPayloadMax  = 200                    // bytes of a rejected payload in the log
	writeTimeout   = 30 * time.Second       // one HTTP write request
	disconnectWait = 250                    // ms for paho's Disconnect
	deadLetterWait = 10 * time.Second       // storing one dead letter, retries included
)

// lineWriter writes line protocol in one request; api.WriteAPIBlocking is
// one.
type lineWriter interface {
	WriteRecord(ctx context.Context, line ...string) error
}

// Service is one ingest replica. Create it with New and start it with Run.
type Service struct {
	cfg       Config
	residents Residents
	log       *slog.Logger
	m         *metrics
	now       func() time.Time
	sem       chan struct{} // one token per message in flight

	client influxdb2.Client
	// writers holds one blocking writer per bucket (database/policy).
	writers map[string]lineWriter
	dedup   *dedupWindow
	// createDB creates the database and is called on start and after a 404.
	createDB func(ctx context.Context) error
	// connect opens the MQTT connection; tests may replace it.
	connect func(ctx context.Context, o mqttconn.Options) (paho.Client, error)
	// subscribed is closed after the first successful subscription.
	subscribed chan struct{}
	// subscriptions counts successful subscriptions (one per connect).
	subscriptions atomic.Int64
}

// item is one valid message waiting for its points to be written.
type item struct {
	msg      paho.Message
	topic    device.Topic
	received time.Time
	points   []*point
	buckets  []string // bucket of points[i]
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
		sem:       make(chan struct{}, cfg.MaxInFlight),
		client:    client,
		writers:   map[string]lineWriter{},
		dedup:     newDedupWindow(cfg.DedupWindow),
		connect:   mqttconn.Connect,

		subscribed: make(chan struct{}),
	}
	for _, g := range Groups {
		b := cfg.GroupBucket(g)
		if s.writers[b] == nil {
			s.writers[b] = client.WriteAPIBlocking("", b)
		}
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
// it holds (within 5 s), disconnects and returns nil; messages it could not
// write stay unacknowledged and the broker delivers them again.
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

	// items holds few: the semaphore, not this buffer, bounds what is held.
	items := make(chan *item, 256)
	batchCtx, stopBatch := context.WithCancel(ctx)
	defer stopBatch()
	batchDone := make(chan struct{})
	go func() {
		defer close(batchDone)
		s.batchLoop(batchCtx, items)
	}()

	// paho calls handler in its receive loop (OrderMatters), so that no
	// goroutine is started per message; handler only queues the message,
	// and decodeWorkers goroutines decode it and wait for a slot of
	// MaxInFlight.
	queue := newMsgQueue(s.m.queued)
	var workers sync.WaitGroup
	workCtx, stopWork := context.WithCancel(ctx)
	defer func() { stopWork(); workers.Wait() }()
	for range decodeWorkers() {
		workers.Go(func() { s.decodeLoop(workCtx, queue, items) })
	}
	handler := s.enqueue(queue)
	filters := map[string]byte{
		device.SharedSubscription(s.cfg.Group, device.Subscription(s.cfg.Root, device.ChanTelemetry)): 1,
		device.SharedSubscription(s.cfg.Group, device.Subscription(s.cfg.Root, device.ChanEvent)):     1,
	}
	firstSub := make(chan error, 1)
	var once sync.Once
	onConnect := func(c paho.Client) {
		// Routes first, so messages queued in the session find a handler.
		for f := range filters {
			c.AddRoute(f, handler)
		}
		err := mqttconn.Wait(ctx, c.SubscribeMultiple(filters, handler), subscribeWait,
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
		URL:             s.cfg.MQTTURL,
		ClientID:        s.cfg.ClientID,
		CleanSession:    false,
		OnConnect:       onConnect,
		DefaultHandler:  handler, // messages of the session that come before OnConnect runs
		AutoAckDisabled: true,
		OrderMatters:    true, // handler never blocks: it only queues
		MaxInflight:     s.cfg.MaxInFlight,
		Logger:          s.log,
	})
	if err != nil {
		stopBatch()
		<-batchDone
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ingest: %w", err)
	}
	defer c.Disconnect(disconnectWait)
	select {
	case err := <-firstSub:
		if err != nil {
			stopBatch()
			<-batchDone
			return fmt.Errorf("ingest: %w", err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	// The batch loop writes and acknowledges what it holds before we
	// disconnect; handlers still waiting give up without acknowledging.
	<-batchDone
	return nil
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

// decodeWorkers is the number of goroutines that decode messages: enough
// to keep every core busy, and a few more so that a slow dead-letter store
// does not stop decoding.
func decodeWorkers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// enqueue returns the MQTT message handler. paho runs it in its receive
// loop, so it must never wait (paho's keepalive and acknowledgements wait
// behind it): it appends the message to queue. The message stays
// unacknowledged until written.
func (s *Service) enqueue(queue *msgQueue) paho.MessageHandler {
	return func(_ paho.Client, msg paho.Message) { queue.push(msg) }
}

// decodeLoop handles queued messages until ctx ends.
func (s *Service) decodeLoop(ctx context.Context, queue *msgQueue, items chan<- *item) {
	for {
		msg := queue.pop(ctx)
		if msg == nil {
			return
		}
		s.handle(ctx, msg, items)
	}
}

// msgQueue is a FIFO of received messages between paho's receive loop and
// the decode workers. It never blocks the pusher. Its length is bounded by
// what the broker sends before acknowledgements: the broker's in-flight
// window (Mosquitto 2.0 max_inflight_messages) when it enforces one, and
// gauge eldercare_ingest_queued shows it. A slice, not a channel with a
// goroutine per overflowing message: a waiting message costs its 16 bytes
// here, not a goroutine stack.
type msgQueue struct {
	mu    sync.Mutex
	buf   []paho.Message
	head  int
	ready chan struct{} // one token: buf may be non-empty
	gauge prometheus.Gauge
}

func newMsgQueue(g prometheus.Gauge) *msgQueue {
	return &msgQueue{ready: make(chan struct{}, 1), gauge: g}
}

func (q *msgQueue) push(m paho.Message) {
	q.mu.Lock()
	if len(q.buf) == cap(q.buf) && q.head > len(q.buf)/2 {
		// Reuse the consumed front instead of growing: a backlog that
		// never drains must not grow the slice with every message.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, m)
	q.mu.Unlock()
	q.gauge.Inc()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the oldest message, waiting for one; nil when ctx ended.
func (q *msgQueue) pop(ctx context.Context) paho.Message {
	for {
		q.mu.Lock()
		if q.head < len(q.buf) {
			m := q.buf[q.head]
			q.buf[q.head] = nil
			q.head++
			if q.head == len(q.buf) {
				q.buf, q.head = q.buf[:0], 0
			} else {
				// Others may be waiting: pass the token on.
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			q.mu.Unlock()
			q.gauge.Dec()
			return m
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil
		}
	}
}

// handle decodes one message at receive time. A malformed message is
// counted, logged and acknowledged at once; a valid one takes a slot of
// MaxInFlight and goes to the batch loop, which acknowledges it after the
// write.
func (s *Service) handle(ctx context.Context, msg paho.Message, items chan<- *item) {
	now := s.now()
	it, err := s.decode(msg, now)
	if err != nil {
		if s.reject(ctx, msg, now, err) {
			msg.Ack()
		}
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return // not acknowledged: the broker delivers it again
		}
	}
	s.m.inFlight.Inc()
	select {
	case items <- it:
	default:
		select {
		case items <- it:
		case <-ctx.Done():
			s.release(1)
		}
	}
}

func (s *Service) release(n int) {
	for range n {
		<-s.sem
	}
	s.m.inFlight.Sub(float64(n))
}

// decode parses the topic and payload of msg received at now and builds its
// points.
func (s *Service) decode(msg paho.Message, now time.Time) (*item, error) {
	topic, err := device.ParseTopic(s.cfg.Root, msg.Topic())
	if err != nil {
		s.m.received.WithLabelValues("unknown").Inc()
		return nil, err
	}
	s.m.received.WithLabelValues(string(topic.Channel)).Inc()
	it := &item{msg: msg, topic: topic, received: now}
	switch topic.Channel {
	case device.ChanTelemetry:
		tel, err := device.DecodeTelemetryFast(msg.Payload(), now, s.cfg.Limits)
		if err != nil {
			return nil, err
		}
		if err := device.CheckTopicDevice(topic, tel.Device); err != nil {
			return nil, err
		}
		it.points, err = readingPoints(tel, topic, now, s.residents)
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
		it.points = []*point{p}
		s.seen(msg, ev.Device, ev.Boot, ev.ID)
	default:
		return nil, &device.ValidationError{Field: "topic", Rule: "channel", Detail: fmt.Sprintf("ingest takes telemetry and event, not %s", topic.Channel)}
	}
	it.buckets = make([]string, len(it.points))
	for i, p := range it.points {
		if d := now.Sub(p.Time()); d > s.cfg.Skew || -d > s.cfg.Skew {
			p.addField(field{Key: FieldSkewed, kind: kindBool, b: true})
			s.m.skewed.Inc()
		}
		it.buckets[i] = s.bucketOf(p)
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
	return s.cfg.InfluxDatabase + "/" + s.cfg.Retention[g].Policy
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

// deadLetter stores d, retrying for up to deadLetterWait; it reports
// whether d was stored (always true without a store).
func (s *Service) deadLetter(ctx context.Context, d DeadLetter) bool {
	if s.cfg.DeadLetters == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterWait)
	defer cancel()
	backoff := retryMin
	for {
		err := s.cfg.DeadLetters.AddDeadLetter(ctx, d)
		if err == nil {
			s.m.deadLetters.WithLabelValues(d.Reason).Inc()
			return true
		}
		s.log.Error("ingest: dead-letter store failed", "topic", d.Topic, "reason", d.Reason, "err", err)
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
