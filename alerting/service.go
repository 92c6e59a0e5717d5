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
	// ClientID is the MQTT client id; the session is persistent, so it must
	// be stable across restarts and unique per replica.
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

	rules *ruleState // the rules of rulesvc.go
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
		recent:  newRecentEvents(DefaultEventDedup),
		vitals:  map[string]*vitals{},
		devices: newSupervisor(cfg),
		open:    map[string]int64{},
		rules:   newRuleState(cfg.Rules),
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{s.events, s.opened, s.notified, s.pending, s.rejected}, s.supervisionCollectors()...) {
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
	open, err := s.m.openKeys(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.open = open
	s.mu.Unlock()
	s.log.Info("alerting: open alerts reloaded", "open", len(open))

	msgs := make(chan paho.Message, 1024)
	filters := map[string]byte{}
	for _, ch := range []device.Channel{device.ChanTelemetry, device.ChanEvent, device.ChanStatus} {
		filters[device.Subscription(s.cfg.Root, ch)] = 1
	}
	// urgent carries fall and SOS events past queued telemetry, so a
	// backlog of readings never delays a fall alert (see urgentEvent).
	urgent := make(chan paho.Message, 256)
	handler := func(_ paho.Client, msg paho.Message) {
		q := msgs
		if urgentEvent(msg.Topic(), msg.Payload()) {
			q = urgent
		}
		select {
		case q <- msg:
		case <-ctx.Done():
		}
	}
	client, err := mqttconn.Connect(ctx, mqttconn.Options{
		URL: s.cfg.MQTTURL, ClientID: s.cfg.ClientID, CleanSession: false,
		AutoAckDisabled: true, Logger: s.log,
		// One at a time in arrival order, and queued messages of the
		// persistent session are handled even before the resubscribe.
		OrderMatters: true, DefaultHandler: handler,
		OnConnect: func(c paho.Client) {
			tok := c.SubscribeMultiple(filters, handler)
			go func() {
				if err := mqttconn.Wait(ctx, tok, 10*time.Second, "subscribe to device topics"); err != nil {
					s.log.Error("alerting: subscribe failed", "err", err)
				}
			}()
		},
	})
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	defer client.Disconnect(250)
	receivers := []Receiver{&mqttReceiver{client: client, root: s.cfg.Root}}
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
	if err := s.reloadThresholds(ctx); err != nil {
		return fmt.Errorf("alerting: %w", err)
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
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case msg := <-urgent:
			s.handleAndAck(ctx, msg)
		case msg := <-msgs:
			// Urgent first: a fall that arrived meanwhile goes next.
			select {
			case u := <-urgent:
				s.handleAndAck(ctx, u)
			default:
			}
			s.handleAndAck(ctx, msg)
		}
	}
}

// handleAndAck handles msg and acknowledges it when what it decided is
// stored.
func (s *Service) handleAndAck(ctx context.Context, msg paho.Message) {
	if err := s.handle(ctx, msg); err != nil {
		s.log.Error("alerting: message not handled", "topic", msg.Topic(), "err", err)
	}
	msg.Ack()
}
