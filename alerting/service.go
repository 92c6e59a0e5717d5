// The engine: configuration, the MQTT subscription, the urgent and normal lanes, and the loop that takes a
// message through the stages (decode.go -> rulesvc.go/offline.go -> raise.go/store.go -> outbox.go) and
// acknowledges it once its decisions are stored.

package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Residents tells which resident a device measured at a time (device time of
// the reading or event). A registry Snapshot satisfies it; wrap a registry
// Cache with [ResidentsFunc].
type Residents interface {
	ResidentAt(deviceID string, t time.Time) (registry.Resident, bool)
}

// ResidentsFunc adapts a function to [Residents].
type ResidentsFunc func(deviceID string, t time.Time) (registry.Resident, bool)

// ResidentAt implements Residents.
func (f ResidentsFunc) ResidentAt(deviceID string, t time.Time) (registry.Resident, bool) {
	return f(deviceID, t)
}

// DefaultOfflineTimeout is the report interval (wall time) of a device the
// registry does not know and that announces no kind; registered devices use
// their own (see Supervisor).
const DefaultOfflineTimeout = 2 * time.Minute

// Config configures the alerting [Service].
type Config struct {
	// MQTTURL is the broker, e.g. tcp://127.0.0.1:1883.
	MQTTURL string
	// Root is the topic root ("" = device.DefaultRoot).
	Root string
	// ClientID is the MQTT client id of the session that takes events;
	// readings and status come on a second session,
	// [StatusTelemetryClientID]. Both sessions are persistent, so it must be
	// stable across restarts and unique per replica.
	ClientID string
	// OfflineTimeout is the report interval (wall time) of a device the
	// registry does not know and that announces no kind; default 2 min.
	// Registered devices go offline past their own interval (offline.go).
	OfflineTimeout time.Duration
	// MaxGap is the longest gap between two samples of a field, in device
	// time, that keeps a sustain window going; default 10 s.
	MaxGap time.Duration
	// Thresholds are the vitals rules; nil means DefaultThresholds.
	// Residents' own thresholds (Manager.SetResidentThreshold) replace
	// these by type.
	Thresholds []Threshold
	// Rules configures the NEWS2, absence, battery and unprotected rules
	// (see rulesvc.go); the zero value uses the defaults.
	Rules RuleConfig
	// Commands sets how commands to devices are tracked (commands.go).
	Commands CommandConfig
	// Programme configures the scheduled programme rules (dose_missed,
	// overdue visits; medication.go).
	Programme ProgrammeConfig
	// WebhookURL, if set, receives every notification (see docs/alerting.md).
	WebhookURL string
	// WebhookSecret signs webhook bodies (HMAC-SHA256). Never printed.
	WebhookSecret Secret
	// Receivers are extra receivers (besides the webhook and MQTT).
	Receivers []Receiver
	// PollEvery is the delivery workers' polling period; default 1 s.
	PollEvery time.Duration
	// MaxAttempts caps deliveries of a notification to one receiver before
	// it is recorded as failed; default 20 (about 1.5 h with backoff).
	MaxAttempts int
	// UnsubscribeOnStop: on a clean stop (ctx cancelled), unsubscribe from
	// every subscription before disconnecting. For a replica retired for
	// good: the broker then stops queueing messages for sessions nobody
	// will resume (alerting's subscriptions are not shared, so the other
	// replicas receive everything anyway). Off (default) for a restart: the
	// persistent sessions keep what arrives meanwhile.
	UnsubscribeOnStop bool
	// Wards, if set, resolves alerts to wards for escalation (a ward's
	// roster wins over its site's; see [Manager.SetWards]), e.g.
	// NewRegistryWards(cache.Current, store.Rooms). nil: site rosters only.
	Wards Wards
	// Limits bounds payloads (device.Limits zero value = protocol defaults).
	Limits device.Limits
	// Now is the wall clock (offline timer, received time); default time.Now.
	Now func() time.Time
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.MQTTURL == "" {
		errs = append(errs, errors.New("mqtt url is required"))
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		errs = append(errs, fmt.Errorf("root: %w", err))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client id is required (persistent session)"))
	}
	if c.OfflineTimeout < 0 {
		errs = append(errs, fmt.Errorf("offline timeout %s is negative", c.OfflineTimeout))
	}
	if c.MaxGap < 0 {
		errs = append(errs, fmt.Errorf("max gap %s is negative", c.MaxGap))
	}
	if c.PollEvery < 0 {
		errs = append(errs, fmt.Errorf("poll period %s is negative", c.PollEvery))
	}
	if c.WebhookURL != "" && !strings.HasPrefix(c.WebhookURL, "http://") && !strings.HasPrefix(c.WebhookURL, "https://") {
		errs = append(errs, fmt.Errorf("webhook url %q: want http:// or https://", c.WebhookURL))
	}
	if c.WebhookURL != "" && c.WebhookSecret == "" {
		errs = append(errs, errors.New("webhook secret is required with a webhook url"))
	}
	if err := c.Rules.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.OfflineTimeout == 0 {
		c.OfflineTimeout = DefaultOfflineTimeout
	}
	if c.MaxGap == 0 {
		c.MaxGap = DefaultMaxGap
	}
	if c.Thresholds == nil {
		c.Thresholds = DefaultThresholds
	}
	if c.PollEvery == 0 {
		c.PollEvery = time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Root == "" {
		c.Root = device.DefaultRoot
	}
	return c
}

// Service is the alerting engine: it subscribes to every device's
// telemetry, events and status under the root, applies the rules, keeps
// alerts in the [Manager]'s store and dispatches notifications.
type Service struct {
	cfg       Config
	m         *Manager
	residents Residents
	log       *slog.Logger

	events   *prometheus.CounterVec
	opened   *prometheus.CounterVec
	notified *prometheus.CounterVec
	pending  prometheus.Gauge
	rejected *prometheus.CounterVec

	// recent remembers the (device, boot, seq) of recent fall and SOS
	// events, so a redelivery raises nothing.
	recent *recentEvents

	mu      sync.Mutex // guards the maps below
	vitals  map[string]*vitals
	devices *Supervisor      // device supervision (offline.go)
	open    map[string]int64 // dedup keys of alerts known open
	// refusedLog: device and reason -> when a refusal was last logged.
	refusedLog map[string]time.Time

	rules *ruleState // the rules of rulesvc.go
	cmds  *commander // commands to devices (commands.go)

	lanes   *lanes
	started atomic.Bool // Run reloaded the open alerts
	store   storeHealth // see durably
	// offlineChecks counts the offline checks done (offlineLoop), so a
	// test that moves the injected clock can wait for a check after it.
	offlineChecks atomic.Uint64
}

// New checks cfg and registers the metrics (eldercare_alerting_*) on reg.
// residents may be nil: every alert is then unassigned.
func New(cfg Config, m *Manager, residents Residents, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alerting config: %w", err)
	}
	if m == nil {
		return nil, errors.New("alerting: nil manager")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Wards != nil {
		m.SetWards(cfg.Wards) // wards.go
	}
	s := &Service{
		cfg: cfg.withDefaults(), m: m, residents: residents, log: log,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_events_total",
			Help: "Device events received, by event type."}, []string{"type"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_alerts_opened_total",
			Help: "Alerts opened, by alert type."}, []string{"type"}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_notifications_total",
			Help: "Notification delivery attempts, by receiver and result (sent, retry, failed)."}, []string{"receiver", "result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "eldercare_alerting_outbox_pending",
			Help: "Notifications in the outbox not yet delivered to every receiver."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_alerting_rejected_total",
			Help: "Malformed or misaddressed MQTT messages rejected, by channel (telemetry, event, status, or unknown when the topic is bad) and reason (the validation rule, e.g. unit_ms). A rejected fall or SOS event still raises its alert."}, []string{"channel", "reason"}),
		recent:     newRecentEvents(DefaultEventDedup),
		vitals:     map[string]*vitals{},
		devices:    newSupervisor(cfg),
		open:       map[string]int64{},
		refusedLog: map[string]time.Time{},
		rules:      newRuleState(cfg.Rules),
		cmds:       newCommander(cfg.Commands),
		lanes:      newLanes(),
	}
	s.store.failing = prometheus.NewGauge(prometheus.GaugeOpts{Name: "eldercare_alerting_store_failing",
		Help: "1 while a decision (an alert opened, repeated or resolved, a note) cannot be written to the alert store and is retried; the message that led to it is held unacknowledged. /readyz fails meanwhile."})
	s.store.retries = prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_alerting_store_retries_total",
		Help: "Failed writes or reads of the alert store that were retried with backoff (SQLITE_BUSY beyond busy_timeout, a lost PostgreSQL connection, ...)."})
	var queued []prometheus.Collector
	for _, lane := range []string{"urgent", "normal"} {
		urgent := lane == "urgent"
		queued = append(queued, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_alerting_queue_messages",
			Help:        "Received MQTT messages waiting to be handled, by lane (urgent: fall and SOS events; normal: the rest).",
			ConstLabels: prometheus.Labels{"lane": lane}}, func() float64 { return float64(s.lanes.len(urgent)) }))
	}
	s.initCounters() // metrics.go
	if reg != nil {
		for _, c := range append([]prometheus.Collector{s.events, s.opened, s.notified, s.pending, s.rejected, s.store.failing, s.store.retries}, append(append(append(queued, s.supervisionCollectors()...), s.rules.collectors()...), s.UnknownCollectors()...)...) {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register alerting metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run connects to the broker, reloads the open alerts and runs the rules,
// the offline timer and one notification delivery worker per receiver until
// ctx is cancelled.
// It returns nil after a cancellation, or the error that stopped it.
func (s *Service) Run(ctx context.Context) error {
	var open map[string]int64
	err := s.durably(ctx, "reload of open alerts", func(ctx context.Context) error {
		var err error
		open, err = s.m.openKeys(ctx)
		return err
	})
	if err != nil {
		return nil // cancelled while the store was down
	}
	s.mu.Lock()
	s.open = open
	s.mu.Unlock()
	s.log.Info("alerting: open alerts reloaded", "open", len(open))

	// The handler only queues: paho's router is never blocked by a slow
	// store, and fall and SOS events go on the urgent lane, which its own
	// worker drains (see lanes).
	handler := func(_ paho.Client, msg paho.Message) { s.lanes.push(msg, urgentEvent(msg.Topic(), msg.Payload())) }
	// Two persistent sessions: events on ClientID, readings and status on
	// StatusTelemetryClientID. A backlog of readings (at the broker, where
	// Mosquitto drops past max_queued_messages per client, in the socket)
	// is never ahead of a fall. A device's readings and its status stay in
	// one session, in order: a reading handled after a clean-shutdown
	// status would re-arm the offline timer.
	eventFilter := device.Subscription(s.cfg.Root, device.ChanEvent)
	bulkFilters := []string{device.Subscription(s.cfg.Root, device.ChanTelemetry), device.Subscription(s.cfg.Root, device.ChanStatus)}
	// The events session drops what a session of an older version (one
	// client id for every channel) still has.
	subscribed := make(chan struct{}, 2)
	client, err := s.connect(ctx, s.cfg.ClientID, []string{eventFilter, device.Subscription(s.cfg.Root, device.ChanCommandAck)}, bulkFilters, handler, subscribed)
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	defer client.Disconnect(250)
	bulk, err := s.connect(ctx, StatusTelemetryClientID(s.cfg.ClientID), bulkFilters, nil, handler, subscribed)
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	defer bulk.Disconnect(250)
	receivers := []Receiver{&mqttReceiver{client: client, root: s.cfg.Root},
		&callAssurance{client: client, root: s.cfg.Root, now: s.cfg.Now}} // assurance.go
	if s.cfg.WebhookURL != "" {
		receivers = append(receivers, &Webhook{URL: s.cfg.WebhookURL, Secret: s.cfg.WebhookSecret, Now: s.cfg.Now})
	}
	receivers = append(receivers, s.cfg.Receivers...)
	var names []string
	for _, rc := range receivers {
		if slices.Contains(names, rc.Name()) {
			return fmt.Errorf("alerting: two receivers are named %q", rc.Name())
		}
		names = append(names, rc.Name())
	}
	s.initNotified(names) // metrics.go

	var wg sync.WaitGroup
	for _, rc := range receivers {
		d := &dispatcher{
			m: s.m, rc: rc, all: names, now: s.cfg.Now, lease: time.Minute, maxTries: s.cfg.MaxAttempts,
			onResult:  func(r, res string) { s.notified.WithLabelValues(r, res).Inc() },
			onPending: func(n int) { s.pending.Set(float64(n)) },
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.dispatch(ctx, d)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.offlineLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.commandLoop(ctx, client)
	}()
	if err := s.durably(ctx, "load of per-resident thresholds", s.reloadThresholds); err != nil {
		wg.Wait()
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.rulesLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		NewEscalator(s.m, s.cfg.Now, s.cfg.PollEvery, s.log).Run(ctx)
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.work(withLane(ctx, true), true)
	}()
	go func() {
		defer wg.Done()
		s.work(withLane(ctx, false), false)
	}()
	// Ready once both sessions are subscribed (messages queued for them
	// are handled meanwhile).
	for range 2 {
		select {
		case <-subscribed:
		case <-ctx.Done():
		}
	}
	if ctx.Err() == nil {
		s.started.Store(true)
	}
	<-ctx.Done()
	wg.Wait()
	// By default a clean stop keeps the persistent sessions and their
	// subscriptions: the broker queues what arrives meanwhile for the next
	// start. A replica retired for good drops its subscriptions first.
	if s.cfg.UnsubscribeOnStop {
		for c, filters := range map[paho.Client][]string{client: {eventFilter}, bulk: bulkFilters} {
			if err := mqttconn.Wait(context.Background(), c.Unsubscribe(filters...), 5*time.Second, "unsubscribe before retiring"); err != nil {
				s.log.Error("alerting: unsubscribe on stop failed", "err", err)
			}
		}
		s.log.Info("alerting: unsubscribed before disconnecting (retired replica)")
	}
	return nil
}

// work takes the messages of one lane in order and acknowledges each once
// its decisions are stored. A message whose decisions could not be stored
// before ctx ended is not acknowledged: the broker delivers it again to
// the persistent session.
func (s *Service) work(ctx context.Context, urgent bool) {
	for {
		msg, ok := s.lanes.next(ctx, urgent)
		if !ok {
			return
		}
		err := s.handle(ctx, msg)
		if err == nil {
			msg.Ack()
		} else {
			s.log.Warn("alerting: message left unacknowledged for redelivery", "topic", msg.Topic(), "err", err)
		}
		if urgent {
			s.lanes.doneUrgent()
		}
	}
}

// lanes are the engine's two queues of received messages: urgent (fall
// and SOS events, see urgentEvent) and normal (everything else). push never
// blocks, so paho's router is never held up by the store; each lane has its
// own worker, so a fall is never queued behind telemetry, even while a
// decision of a reading waits for the store. Their length is bounded by the
// broker: a QoS 1 message stays unacknowledged (in flight) until handled,
// and the broker sends no more than its in-flight window per client.
type lanes struct {
	mu     sync.Mutex
	q      [2][]paho.Message // 0 normal, 1 urgent
	wake   [2]chan struct{}
	active atomic.Int32 // urgent messages queued or being handled
}

func newLanes() *lanes {
	return &lanes{wake: [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}}
}

func laneIndex(urgent bool) int {
	if urgent {
		return 1
	}
	return 0
}

// push queues msg on its lane without blocking.
func (l *lanes) push(msg paho.Message, urgent bool) {
	i := laneIndex(urgent)
	if urgent {
		l.active.Add(1)
	}
	l.mu.Lock()
	l.q[i] = append(l.q[i], msg)
	l.mu.Unlock()
	select {
	case l.wake[i] <- struct{}{}:
	default:
	}
}

// next returns the oldest message of a lane, waiting for one; false when
// ctx ends.
func (l *lanes) next(ctx context.Context, urgent bool) (paho.Message, bool) {
	i := laneIndex(urgent)
	for {
		l.mu.Lock()
		if len(l.q[i]) > 0 {
			msg := l.q[i][0]
			l.q[i][0] = nil
			l.q[i] = l.q[i][1:]
			if len(l.q[i]) == 0 {
				l.q[i] = nil // let the backing array go
			}
			l.mu.Unlock()
			return msg, true
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-l.wake[i]:
		}
	}
}

// doneUrgent marks one urgent message handled (acknowledged or left for
// redelivery).
func (l *lanes) doneUrgent() { l.active.Add(-1) }

// urgentActive reports whether a fall or SOS event is queued or being
// handled.
func (l *lanes) urgentActive() bool { return l.active.Load() > 0 }

// len returns the number of messages queued on a lane.
func (l *lanes) len(urgent bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.q[laneIndex(urgent)])
}

// laneKey marks a context as the urgent lane's (see withLane).
type laneKey struct{}

// withLane returns ctx marked as the urgent lane's or not: a store retry
// of the normal lane yields to a pending fall (see durably).
func withLane(ctx context.Context, urgent bool) context.Context {
	return context.WithValue(ctx, laneKey{}, urgent)
}

func urgentLane(ctx context.Context) bool {
	u, _ := ctx.Value(laneKey{}).(bool)
	return u
}

// StatusTelemetryClientID is the client id of the alerting session that
// takes readings and status, given the main one (Config.ClientID, which
// takes events): clientID + "-telemetry-status". A broker that reserves the
// platform's client ids must reserve both.
func StatusTelemetryClientID(clientID string) string { return clientID + "-telemetry-status" }

// connect opens one persistent session (clean session off, manual
// acknowledgement, in arrival order) that, on every (re)connect,
// unsubscribes from drop (if any) and subscribes to filters at QoS 1. It
// sends on subscribed after the first subscription is acknowledged.
func (s *Service) connect(ctx context.Context, clientID string, filters, drop []string, handler paho.MessageHandler, subscribed chan<- struct{}) (paho.Client, error) {
	var once sync.Once
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	return mqttconn.Connect(ctx, mqttconn.Options{
		URL: s.cfg.MQTTURL, ClientID: clientID, CleanSession: false,
		AutoAckDisabled: true, Logger: s.log,
		// One at a time in arrival order, and queued messages of the
		// persistent session are handled even before the resubscribe.
		OrderMatters: true, DefaultHandler: handler,
		OnConnect: func(c paho.Client) {
			var unsub paho.Token
			if len(drop) > 0 {
				unsub = c.Unsubscribe(drop...)
			}
			tok := c.SubscribeMultiple(subs, handler)
			go func() {
				if unsub != nil {
					if err := mqttconn.Wait(ctx, unsub, 10*time.Second, "unsubscribe"); err != nil {
						s.log.Error("alerting: unsubscribe failed", "client_id", clientID, "err", err)
					}
				}
				if err := mqttconn.Wait(ctx, tok, 10*time.Second, "subscribe to device topics"); err != nil {
					s.log.Error("alerting: subscribe failed", "client_id", clientID, "err", err)
					return
				}
				once.Do(func() { subscribed <- struct{}{} })
			}()
		},
	})
}
