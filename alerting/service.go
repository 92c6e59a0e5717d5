package alerting

import (
	"bytes"
	"context"
	"encoding/json"
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
	// Receivers are extra receivers (besides webhook, MQTT and in-process).
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
	devices map[string]*deviceState
	open    map[string]int64 // dedup keys of alerts known open

	rules *ruleState // the rules of rulesvc.go
}

// deviceState is what the offline rule knows of a device (wall time).
type deviceState struct {
	site     string
	lastSeen time.Time
	armed    bool // a silence longer than the timeout raises an alert
	alerted  bool // an offline alert was raised and the device is silent
	// unknown: the device's gateway was lost, so nothing is known of it
	// until it is heard from again.
	unknown bool
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
		devices: map[string]*deviceState{},
		open:    map[string]int64{},
		rules:   newRuleState(cfg.Rules),
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
	receivers := []Receiver{&localReceiver{h: &s.m.hub}, &mqttReceiver{client: client, root: s.cfg.Root}}
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
			s.handle(ctx, msg)
			msg.Ack()
		case msg := <-msgs:
			// Urgent first: a fall that arrived meanwhile goes next.
			select {
			case u := <-urgent:
				s.handle(ctx, u)
				u.Ack()
			default:
			}
			s.handle(ctx, msg)
			msg.Ack()
		}
	}
}

// urgentEvent reports whether an MQTT message looks like a fall or SOS event
// (event channel, "fall" or "sos" in the payload). It only decides the
// processing order; handle still validates everything.
func urgentEvent(topic string, payload []byte) bool {
	if !strings.HasSuffix(topic, "/"+string(device.ChanEvent)) {
		return false
	}
	return bytes.Contains(payload, []byte(`"fall"`)) || bytes.Contains(payload, []byte(`"sos"`))
}

// dispatch runs one receiver's delivery worker: at once when a change is
// written in this process, again at once while it finds work, and every
// PollEvery for changes written by other processes and for retries.
func (s *Service) dispatch(ctx context.Context, d *dispatcher) {
	t := time.NewTicker(s.cfg.PollEvery)
	defer t.Stop()
	for {
		wake := s.m.woken()
		n, err := d.pass(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("alerting: dispatch notifications", "receiver", d.rc.Name(), "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		if n > 0 && err == nil {
			continue // more may be due: the next of an alert just delivered
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
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
// input: a malformed message is counted and logged; a malformed fall or SOS
// event still raises its alert (see malformedEvent).
func (s *Service) handle(ctx context.Context, msg paho.Message) {
	now := s.cfg.Now()
	topic, err := device.ParseTopic(s.cfg.Root, msg.Topic())
	if err != nil {
		s.reject(msg.Topic(), "unknown", err)
		return
	}
	switch topic.Channel {
	case device.ChanTelemetry:
		t, err := device.DecodeTelemetry(msg.Payload(), now, s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, t.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), string(topic.Channel), err)
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
			s.reject(msg.Topic(), string(topic.Channel), err)
			s.malformedEvent(ctx, topic, msg.Payload(), err, now)
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
			s.reject(msg.Topic(), string(topic.Channel), err)
			return
		}
		s.status(ctx, topic, st, msg.Retained(), now)
	default:
		// Not subscribed; a persistent-session route may still see it.
	}
}

func (s *Service) reject(topic, channel string, err error) {
	reason := device.Reason(err)
	s.rejected.WithLabelValues(channel, reason).Inc()
	s.log.Warn("alerting: message rejected", "topic", topic, "channel", channel, "reason", reason, "err", err)
}

// malformedEvent raises the alert of a fall or SOS event that failed
// validation (a timestamp in seconds, zero, missing or far ahead, an unknown
// field, a null attribute, a device field that is not the topic's ...):
// alerting never ignores a safety event. The payload is parsed leniently;
// when it is a JSON object whose "type" is "fall" or "sos", the alert is
// raised for the topic's device, stamped at the receive time, with a detail
// that names the validation error so the fault is visible to staff. A
// redelivery (same boot and seq, when the payload has them) raises nothing.
func (s *Service) malformedEvent(ctx context.Context, t device.Topic, payload []byte, verr error, now time.Time) {
	maxPayload := s.cfg.Limits.MaxPayload
	if maxPayload <= 0 {
		maxPayload = device.DefaultLimits.MaxPayload
	}
	if len(payload) > maxPayload {
		return
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(payload, &raw) != nil {
		return
	}
	var typ device.EventType
	if json.Unmarshal(raw["type"], &typ) != nil {
		return
	}
	var alertType, detail string
	switch typ {
	case device.EventFall:
		alertType, detail = TypeFall, "fall detected"
	case device.EventSOS:
		alertType, detail = TypeSOS, "SOS button pressed"
	default:
		return
	}
	s.events.WithLabelValues(string(typ)).Inc()
	var key *eventKey
	var boot uint32
	var seq uint64
	if json.Unmarshal(raw["boot"], &boot) == nil && json.Unmarshal(raw["seq"], &seq) == nil && seq > 0 {
		key = &eventKey{device: t.Device, boot: boot, seq: seq}
		if s.recent.seen(*key) {
			return
		}
	}
	msg := strings.ReplaceAll(verr.Error(), "\n", "; ")
	detail += " (from a malformed event, stamped at receive time: " + truncate(msg, 300) + ")"
	s.log.Error("alerting: malformed safety event raises its alert anyway", "device", t.Device, "type", typ, "err", verr)
	spec := openSpec{Site: t.Site, Device: t.Device, Type: alertType, Severity: SeverityCritical, At: now,
		Detail: detail, NotifyRepeat: true}
	if key != nil {
		spec.EventKey = key.String()
	}
	err := s.raise(ctx, spec)
	if err == nil && key != nil {
		s.recent.add(*key)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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
	st.site, st.lastSeen, st.armed, st.unknown = t.Site, now, true, false
	wasAlerted := st.alerted
	st.alerted = false
	key := dedupKey(nil, t.Device, TypeDeviceOffline)
	_, known := s.open[key]
	if known {
		delete(s.open, key) // one note per comeback
	}
	s.mu.Unlock()
	if wasAlerted || known {
		s.deviceUp(ctx, t.Device)
	}
	if wasAlerted || known {
		if _, err := s.m.commentByKey(ctx, key, ChannelRule, "device back online"); err != nil {
			s.log.Error("alerting: note device back online", "device", t.Device, "err", err)
		}
	}
}

func (s *Service) status(ctx context.Context, t device.Topic, st *device.Status, retained bool, now time.Time) {
	s.noteKind(t.Device, st.Kind)
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
	case st.Reason == device.ReasonGatewayLost:
		// A gateway's last will, {"state":"unknown","reason":"gateway_lost",
		// "devices":[...]} (or state offline): the gateway and every device
		// behind it are unknown, each gets device_offline at once.
		s.offline(ctx, t.Site, t.Device, st, retained, now, "device offline ("+st.Reason+")")
		for _, dev := range st.Devices {
			if dev == t.Device {
				continue
			}
			site := t.Site
			s.mu.Lock()
			if d := s.devices[dev]; d != nil && d.site != "" {
				site = d.site
			}
			s.mu.Unlock()
			s.offline(ctx, site, dev, st, retained, now, "gateway "+t.Device+" lost")
		}
	case st.State == device.Offline && (st.Reason == device.ReasonLastWill || st.Reason == device.ReasonNoReadings):
		s.offline(ctx, t.Site, t.Device, st, retained, now, "device offline ("+st.Reason+")")
	default:
		// unknown state of one device (published by its gateway), other
		// offline reasons: the gateway's own will covers a lost gateway.
	}
}

// offline marks a device offline (unknown when its gateway was lost) and
// raises device_offline for it at once. A retained will seen again after a
// restart raises nothing if an offline alert for the device was opened since
// the will was composed (st.TS).
func (s *Service) offline(ctx context.Context, site, dev string, st *device.Status, retained bool, now time.Time, detail string) {
	if retained {
		last, err := s.m.lastOpened(ctx, dedupKey(nil, dev, TypeDeviceOffline))
		if err != nil {
			s.log.Error("alerting: check offline alert", "device", dev, "err", err)
		} else if !last.IsZero() && !last.Before(time.UnixMilli(st.TS)) {
			return
		}
	}
	s.mu.Lock()
	d := s.devices[dev]
	if d == nil {
		d = &deviceState{site: site}
		s.devices[dev] = d
	}
	d.armed, d.alerted = false, true
	d.unknown = st.Reason == device.ReasonGatewayLost
	s.mu.Unlock()
	s.raise(ctx, openSpec{Site: site, Device: dev, Type: TypeDeviceOffline, Severity: SeverityWarning, At: now, Detail: detail})
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
		s.ruleEvent(ctx, t, e)
		return
	}
	// A redelivery of an event already raised (QoS 1, a reconnect, a
	// replayed spool) raises nothing, even if its alert was resolved since.
	key := eventKey{device: t.Device, boot: e.Boot, seq: e.Seq}
	if s.recent.seen(key) {
		s.log.Info("alerting: duplicate event ignored", "event", key.String(), "type", e.Type)
		return
	}
	// A new distinct event on an open alert is announced as "repeated".
	err := s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: typ, Severity: SeverityCritical, At: e.Time(), Detail: detail,
		NotifyRepeat: true, EventKey: key.String()})
	if err == nil {
		s.recent.add(key)
	}
}

func (s *Service) telemetry(ctx context.Context, t device.Topic, tel *device.Telemetry) {
	s.mu.Lock()
	var v *vitals
	if len(tel.Readings) > 0 {
		v = s.vitalsFor(t.Device, tel.Readings[0].Time())
	}
	var fired []firing
	for _, r := range tel.Readings {
		fired = append(fired, v.observe(tel.Boot, r.Seq, r.Time(), r.Values)...)
	}
	var cleared []clearing
	if v != nil {
		cleared = v.takeCleared()
	}
	s.mu.Unlock()
	for _, f := range fired {
		worst := f.Worst
		s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: f.Threshold.Type, Severity: f.Threshold.Severity,
			At: f.At, Detail: f.Detail(), Value: &worst})
	}
	s.afterTelemetry(ctx, t, tel, cleared)
}

// raise opens an alert (or notes a repeat). The resident is the one bound
// to the device at spec.At (device time for readings and events, wall time
// for offline and malformed events); device_offline alerts still
// deduplicate per device (see dedupKey), the resident only tells staff whose
// device went silent. The error is logged already.
func (s *Service) raise(ctx context.Context, spec openSpec) error {
	if s.residents != nil {
		if r, ok := s.residents.ResidentAt(spec.Device, spec.At); ok {
			id := r.ID
			spec.Resident = &id
		}
	}
	spec.Key = alertKey(spec.Resident, spec.Device, spec.Type)
	a, created, err := s.m.open(ctx, spec)
	if errors.Is(err, errDuplicateEvent) {
		// Raised already, by this or another replica (see openSpec.EventKey).
		s.log.Info("alerting: duplicate event ignored", "event", spec.EventKey, "type", spec.Type)
		return nil
	}
	if err != nil {
		// The store is down: log loudly. The message is still acked, as
		// redelivery would not help a dead store; see docs/alerting.md.
		s.log.Error("alerting: could not store alert", "type", spec.Type, "device", spec.Device, "err", err)
		return err
	}
	s.mu.Lock()
	s.open[spec.Key] = a.ID
	s.mu.Unlock()
	if created {
		s.opened.WithLabelValues(spec.Type).Inc()
		resident := "unassigned"
		if spec.Resident != nil {
			resident = *spec.Resident
		}
		s.log.Info("alert opened", "id", a.ID, "type", a.Type, "site", a.Site, "device", a.Device, "resident", resident, "detail", a.Detail)
	} else {
		level := slog.LevelDebug // a continuing vitals breach repeats every sustain period
		if spec.NotifyRepeat {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "alert repeated", "id", a.ID, "type", a.Type, "device", a.Device, "notified", spec.NotifyRepeat)
	}
	if spec.Type == TypeDeviceOffline {
		s.deviceDown(ctx, spec.Site, spec.Device, spec.At)
	}
	return nil
}
