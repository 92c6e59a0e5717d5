package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// DefaultOfflineTimeout is how long (wall time) a device may stay silent
// before a device_offline alert.
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
	// OfflineTimeout is the silence (wall time) after which a device that
	// has been heard from gets a device_offline alert; default 2 min.
	OfflineTimeout time.Duration
	// MaxGap is the longest gap between two samples of a field, in device
	// time, that keeps a sustain window going; default 10 s.
	MaxGap time.Duration
	// Thresholds are the vitals rules; nil means DefaultThresholds.
	Thresholds []Threshold
	// WebhookURL, if set, receives every notification (see docs/alerting.md).
	WebhookURL string
	// WebhookSecret signs webhook bodies (HMAC-SHA256). Never printed.
	WebhookSecret Secret
	// Receivers are extra receivers (besides webhook, MQTT and in-process).
	Receivers []Receiver
	// PollEvery is the dispatcher's polling period; default 1 s.
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

	mu      sync.Mutex // guards the maps below
	vitals  map[string]*vitals
	devices map[string]*deviceState
	open    map[string]int64 // dedup keys of alerts known open
}

// deviceState is what the offline rule knows of a device (wall time).
type deviceState struct {
	site     string
	lastSeen time.Time
	armed    bool // a silence longer than the timeout raises an alert
	alerted  bool // an offline alert was raised and the device is silent
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
			Help: "Malformed or misaddressed MQTT messages dropped, by reason (field:rule)."}, []string{"reason"}),
		vitals:  map[string]*vitals{},
		devices: map[string]*deviceState{},
		open:    map[string]int64{},
	}
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eldercare_alerting_subscriber_dropped_total",
		Help: "Alert changes lost by slow in-process subscribers."}, func() float64 { return float64(m.Dropped()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{s.events, s.opened, s.notified, s.pending, s.rejected, dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register alerting metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Subscribe returns the changes delivered by this service (see
// [Manager.Subscribe]).
func (s *Service) Subscribe() (<-chan Change, func()) { return s.m.Subscribe() }

// Run connects to the broker, reloads the open alerts and runs the rules,
// the offline timer and the notification dispatcher until ctx is cancelled.
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
	handler := func(_ paho.Client, msg paho.Message) {
		select {
		case msgs <- msg:
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
	receivers := []Receiver{&localReceiver{h: &s.m.hub}, &mqttReceiver{client: client, root: s.cfg.Root}}
	if s.cfg.WebhookURL != "" {
		receivers = append(receivers, &Webhook{URL: s.cfg.WebhookURL, Secret: s.cfg.WebhookSecret, Now: s.cfg.Now})
	}
	receivers = append(receivers, s.cfg.Receivers...)
	d := &dispatcher{
		m: s.m, receivers: receivers, now: s.cfg.Now, lease: time.Minute, maxTries: s.cfg.MaxAttempts,
		onResult:  func(r, res string) { s.notified.WithLabelValues(r, res).Inc() },
		onPending: func(n int) { s.pending.Set(float64(n)) },
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.dispatch(ctx, d)
	}()
	go func() {
		defer wg.Done()
		s.offlineLoop(ctx)
	}()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case msg := <-msgs:
			s.handle(ctx, msg)
			msg.Ack()
		}
	}
}

// dispatch runs the dispatcher: at once when a change is written in this
// process, and every PollEvery for changes written by other processes and
// for retries.
func (s *Service) dispatch(ctx context.Context, d *dispatcher) {
	t := time.NewTicker(s.cfg.PollEvery)
	defer t.Stop()
	for {
		if err := d.pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("alerting: dispatch notifications", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.m.wake:
		case <-t.C:
		}
	}
}

// offlineLoop checks the silence of every device on the wall clock.
func (s *Service) offlineLoop(ctx context.Context) {
	every := min(time.Second, s.cfg.OfflineTimeout/4)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkOffline(ctx)
		}
	}
}

// checkOffline raises device_offline for every armed device silent for
// longer than OfflineTimeout (wall time).
func (s *Service) checkOffline(ctx context.Context) {
	now := s.cfg.Now()
	type due struct{ id, site string }
	var list []due
	s.mu.Lock()
	for id, st := range s.devices {
		if st.armed && !st.alerted && now.Sub(st.lastSeen) > s.cfg.OfflineTimeout {
			st.alerted = true
			list = append(list, due{id, st.site})
		}
	}
	s.mu.Unlock()
	for _, d := range list {
		s.raise(ctx, openSpec{Site: d.site, Device: d.id, Type: TypeDeviceOffline, Severity: SeverityWarning, At: now,
			Detail: fmt.Sprintf("no message for %s", s.cfg.OfflineTimeout)})
	}
}

// handle decodes one message and applies the rules. It never blocks on bad
// input: a malformed message is counted and logged.
func (s *Service) handle(ctx context.Context, msg paho.Message) {
	now := s.cfg.Now()
	topic, err := device.ParseTopic(s.cfg.Root, msg.Topic())
	if err != nil {
		s.reject(msg.Topic(), err)
		return
	}
	switch topic.Channel {
	case device.ChanTelemetry:
		t, err := device.DecodeTelemetry(msg.Payload(), now, s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, t.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), err)
			return
		}
		s.seen(ctx, topic, now)
		s.telemetry(ctx, topic, t)
	case device.ChanEvent:
		e, err := device.DecodeEvent(msg.Payload(), now, s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, e.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), err)
			return
		}
		s.seen(ctx, topic, now)
		s.event(ctx, topic, e)
	case device.ChanStatus:
		st, err := device.DecodeStatus(msg.Payload(), s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, st.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), err)
			return
		}
		s.status(ctx, topic, st, msg.Retained(), now)
	default:
		// Not subscribed; a persistent-session route may still see it.
	}
}

func (s *Service) reject(topic string, err error) {
	reason := device.Reason(err)
	s.rejected.WithLabelValues(reason).Inc()
	s.log.Warn("alerting: message rejected", "topic", topic, "reason", reason, "err", err)
}

// seen records traffic from a device: it arms the offline timer and notes
// "device back online" on an offline alert raised earlier.
func (s *Service) seen(ctx context.Context, t device.Topic, now time.Time) {
	s.mu.Lock()
	st := s.devices[t.Device]
	if st == nil {
		st = &deviceState{}
		s.devices[t.Device] = st
	}
	st.site, st.lastSeen, st.armed = t.Site, now, true
	wasAlerted := st.alerted
	st.alerted = false
	key := dedupKey(nil, t.Device, TypeDeviceOffline)
	_, known := s.open[key]
	if known {
		delete(s.open, key) // one note per comeback
	}
	s.mu.Unlock()
	if wasAlerted || known {
		if _, err := s.m.commentByKey(ctx, key, ChannelRule, "device back online"); err != nil {
			s.log.Error("alerting: note device back online", "device", t.Device, "err", err)
		}
	}
}

func (s *Service) status(ctx context.Context, t device.Topic, st *device.Status, retained bool, now time.Time) {
	switch {
	case st.State == device.Online:
		s.seen(ctx, t, now)
	case st.Reason == device.ReasonShutdown:
		// A clean disconnect: disarm, no alert.
		s.mu.Lock()
		d := s.devices[t.Device]
		if d == nil {
			d = &deviceState{site: t.Site}
			s.devices[t.Device] = d
		}
		d.armed = false
		s.mu.Unlock()
	case st.State == device.Offline && (st.Reason == device.ReasonLastWill || st.Reason == device.ReasonGatewayLost || st.Reason == device.ReasonNoReadings):
		if retained {
			// A retained will seen again after a restart: raise only if
			// no offline alert was opened since the will was composed.
			last, err := s.m.lastOpened(ctx, dedupKey(nil, t.Device, TypeDeviceOffline))
			if err != nil {
				s.log.Error("alerting: check offline alert", "device", t.Device, "err", err)
			} else if !last.IsZero() && !last.Before(time.UnixMilli(st.TS)) {
				return
			}
		}
		s.mu.Lock()
		d := s.devices[t.Device]
		if d == nil {
			d = &deviceState{site: t.Site}
			s.devices[t.Device] = d
		}
		d.armed, d.alerted = false, true
		s.mu.Unlock()
		s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeDeviceOffline, Severity: SeverityWarning, At: now,
			Detail: "device offline (" + st.Reason + ")"})
	default:
		// unknown state (behind a lost gateway), other offline reasons:
		// the gateway's own alert covers it.
	}
}

func (s *Service) event(ctx context.Context, t device.Topic, e *device.Event) {
	s.events.WithLabelValues(string(e.Type)).Inc()
	var typ, detail string
	switch e.Type {
	case device.EventFall:
		typ, detail = TypeFall, "fall detected"
		if p, ok := e.Attrs["peak_accel_ms2"].(float64); ok {
			detail += fmt.Sprintf(", peak %g m/s^2", p)
		}
	case device.EventSOS:
		typ, detail = TypeSOS, "SOS button pressed"
	default:
		return
	}
	s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: typ, Severity: SeverityCritical, At: e.Time(), Detail: detail})
}

func (s *Service) telemetry(ctx context.Context, t device.Topic, tel *device.Telemetry) {
	s.mu.Lock()
	v := s.vitals[t.Device]
	if v == nil {
		v = newVitals(s.cfg.Thresholds, s.cfg.MaxGap)
		s.vitals[t.Device] = v
	}
	var fired []firing
	for _, r := range tel.Readings {
		fired = append(fired, v.observe(r.Time(), r.Values)...)
	}
	s.mu.Unlock()
	for _, f := range fired {
		worst := f.Worst
		s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: f.Threshold.Type, Severity: f.Threshold.Severity,
			At: f.At, Detail: f.Detail(), Value: &worst})
	}
}

// raise opens an alert (or notes a repeat). The resident is the one bound
// to the device at spec.At (device time for readings and events, wall time
// for offline); device_offline alerts still deduplicate per device (see
// dedupKey), the resident only tells staff whose device went silent.
func (s *Service) raise(ctx context.Context, spec openSpec) {
	if s.residents != nil {
		if r, ok := s.residents.ResidentAt(spec.Device, spec.At); ok {
			id := r.ID
			spec.Resident = &id
		}
	}
	spec.Key = dedupKey(spec.Resident, spec.Device, spec.Type)
	a, created, err := s.m.open(ctx, spec)
	if err != nil {
		// The store is down: log loudly. The message is still acked, as
		// redelivery would not help a dead store; see docs/alerting.md.
		s.log.Error("alerting: could not store alert", "type", spec.Type, "device", spec.Device, "err", err)
		return
	}
	s.mu.Lock()
	s.open[spec.Key] = a.ID
	s.mu.Unlock()
	if created {
		s.opened.WithLabelValues(spec.Type).Inc()
		s.log.Info("alert opened", "id", a.ID, "type", a.Type, "site", a.Site, "device", a.Device, "resident", spec.Resident, "detail", a.Detail)
	} else {
		s.log.Info("alert repeated", "id", a.ID, "type", a.Type, "device", a.Device)
	}
}
