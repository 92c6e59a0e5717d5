package zigbee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// DefaultBaseTopic is zigbee2mqtt's default base topic
// (configuration.yaml: mqtt.base_topic).
const DefaultBaseTopic = "zigbee2mqtt"

// Sink receives what a source produces. The gateway runtime implements it
// (spool, uplink and local alarm); its method set matches the gateway's.
type Sink interface {
	// Reading hands over one reading: ts is the device time, values maps a
	// protocol field (unit in the name) to a finite number.
	Reading(ctx context.Context, deviceID string, ts time.Time, values map[string]float64) error
	// Event hands over one event (fall, sos, bed_entry, ...).
	Event(ctx context.Context, deviceID string, ts time.Time, typ device.EventType, attrs map[string]any) error
	// Fault reports a sensor or source problem for a device ("" for the
	// source itself).
	Fault(deviceID string, err error)
}

// Presence is implemented by a sink that tracks device liveness besides
// readings and events (the gateway runtime): zigbee2mqtt's availability
// (<base>/<friendly>/availability, online or offline, from zigbee2mqtt's own
// 10 min / 25 h checks) and the last_seen it puts in state messages. A
// device that reports only on change is then not taken for silent.
type Presence interface {
	Availability(deviceID string, online bool)
	LastSeen(deviceID string, t time.Time)
}

// DefaultPairWindow is how close the two copies of one action must arrive
// to be one press: zigbee2mqtt publishes the state message and, with its
// Home Assistant integration (legacy action sensor), the plain-text
// <friendly>/action message back to back.
const DefaultPairWindow = 3 * time.Second

// Config configures a zigbee2mqtt source.
type Config struct {
	// MQTTURL is the local broker zigbee2mqtt publishes to, e.g.
	// tcp://127.0.0.1:1883 (user:password@ allowed).
	MQTTURL string
	// BaseTopic is zigbee2mqtt's base topic; "" is DefaultBaseTopic.
	BaseTopic string
	// ClientID of the source's MQTT connection; it keeps a persistent
	// session so that messages published during a reconnect are kept.
	ClientID string
	// MappingFile is a mapping YAML file; "" uses the embedded default
	// (mapping.yaml).
	MappingFile string
	// Mapping, when not nil, is used instead of MappingFile.
	Mapping *Mapping
	// Devices maps friendly names onto registry devices.
	Devices []Device
	// PublishTimeout bounds each subscribe; 0 = 10 s.
	PublishTimeout time.Duration
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Registerer for the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now stamps readings and events on receipt; nil is time.Now.
	Now func() time.Time
	// PairWindow: see DefaultPairWindow; 0 = default.
	PairWindow time.Duration
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.MQTTURL == "" {
		errs = append(errs, errors.New("zigbee: MQTT URL of the zigbee2mqtt broker is required"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("zigbee: client id is required"))
	}
	if strings.ContainsAny(c.BaseTopic, "+#") || strings.HasSuffix(c.BaseTopic, "/") {
		errs = append(errs, fmt.Errorf("zigbee: base topic %q must have no wildcard and no trailing /", c.BaseTopic))
	}
	if err := ValidateDevices(c.Devices); err != nil {
		errs = append(errs, fmt.Errorf("zigbee devices: %w", err))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("zigbee: publish timeout %s is negative", c.PublishTimeout))
	}
	return errors.Join(errs...)
}

// Source is a zigbee2mqtt source. Create it with New and run it with Run.
type Source struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	base   string
	met    *metrics
	mu     sync.Mutex // guards mapper and reported
	mapper *Mapper
	// reported holds every unknown device, key and value already reported.
	reported map[string]bool
	// client is the connection to the zigbee2mqtt broker while Run runs
	// (nil before); Actuate publishes /set messages on it.
	client paho.Client
	// unpaired holds, per device, event type and topic form ("state" or
	// "action"), when actions were raised that the other form has not
	// repeated yet (see pair).
	unpaired map[string][]time.Time
}

type metrics struct {
	messages *prometheus.CounterVec
	unknown  *prometheus.CounterVec
	events   *prometheus.CounterVec
	paired   prometheus.Counter
}

// New validates cfg, loads the mapping and registers the metrics
// eldercare_gateway_zigbee_messages_total{result},
// eldercare_gateway_zigbee_unknown_total{what} (device, field or value; each
// counted once, when first reported),
// eldercare_gateway_zigbee_events_total{type} and
// eldercare_gateway_zigbee_action_duplicates_total.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := cfg.Mapping
	if m == nil && cfg.MappingFile != "" {
		b, err := os.ReadFile(cfg.MappingFile)
		if err != nil {
			return nil, fmt.Errorf("zigbee mapping: %w", err)
		}
		if m, err = ParseMapping(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.MappingFile, err)
		}
	}
	if m == nil {
		m = DefaultMapping()
	}
	mp, err := NewMapper(m, cfg.Devices)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger, now: cfg.Now, base: cfg.BaseTopic, mapper: mp, reported: map[string]bool{},
		unpaired: map[string][]time.Time{}}
	if s.cfg.PairWindow <= 0 {
		s.cfg.PairWindow = DefaultPairWindow
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("source", "zigbee2mqtt")
	if s.now == nil {
		s.now = time.Now
	}
	if s.base == "" {
		s.base = DefaultBaseTopic
	}
	if s.cfg.PublishTimeout == 0 {
		s.cfg.PublishTimeout = 10 * time.Second
	}
	s.met = &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_zigbee_messages_total",
			Help: "zigbee2mqtt messages received, by result: mapped, unknown_device, invalid, skipped (bridge, availability, set/get), sink_error."}, []string{"result"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_zigbee_unknown_total",
			Help: "Distinct unknown zigbee2mqtt devices, keys and values reported (each once), by what: device, field, value."}, []string{"what"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_zigbee_events_total",
			Help: "Events mapped from zigbee2mqtt messages, by type."}, []string{"type"}),
		paired: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_zigbee_action_duplicates_total",
			Help: "Actions that arrived a second time on the other topic (state JSON and <friendly>/action) within the pair window and were not raised again."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.met.messages, s.met.unknown, s.met.events, s.met.paired} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("zigbee metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run subscribes to <base>/# on the zigbee2mqtt broker (QoS 1, again after
// every reconnect) and hands every mapped reading and event to sink until
// ctx is cancelled; then it returns nil. A message is acknowledged to the
// broker only after sink took all of it. It returns an error only when the
// first connection fails.
func (s *Source) Run(ctx context.Context, sink Sink) error {
	filter := s.base + "/#"
	handle := func(_ paho.Client, m paho.Message) {
		if err := s.Handle(ctx, sink, m.Topic(), m.Payload()); err != nil {
			// Not acknowledged: a persistent session redelivers it after a
			// reconnect.
			return
		}
		m.Ack()
	}
	c, err := mqttconn.Connect(ctx, mqttconn.Options{
		URL:             s.cfg.MQTTURL,
		ClientID:        s.cfg.ClientID,
		CleanSession:    false,
		AutoAckDisabled: true,
		OrderMatters:    true,
		DefaultHandler:  handle,
		Logger:          s.log,
		OnConnect: func(c paho.Client) {
			// OnConnect runs in paho's goroutine: never wait without a bound.
			tok := c.Subscribe(filter, 1, handle)
			go func() {
				if err := mqttconn.Wait(ctx, tok, s.cfg.PublishTimeout, "subscribe "+filter); err != nil && ctx.Err() == nil {
					s.log.Error("zigbee2mqtt subscribe failed", "err", err)
					sink.Fault("", err)
				}
			}()
		},
	})
	if err != nil {
		return fmt.Errorf("zigbee2mqtt source: %w", err)
	}
	s.mu.Lock()
	s.client = c
	s.mu.Unlock()
	s.log.Info("zigbee2mqtt source running", "broker", s.cfg.MQTTURL, "base_topic", s.base, "devices", len(s.cfg.Devices))
	<-ctx.Done()
	s.mu.Lock()
	s.client = nil
	s.mu.Unlock()
	c.Disconnect(250)
	return nil
}

// Handle maps one message from the zigbee2mqtt broker and hands the result
// to sink. It returns an error only when sink refused a reading or event
// (the caller then leaves the message unacknowledged); unknown devices,
// keys and values are reported once and malformed payloads are counted,
// logged and reported to sink.Fault.
func (s *Source) Handle(ctx context.Context, sink Sink, topic string, payload []byte) error {
	name, ok := strings.CutPrefix(topic, s.base+"/")
	if !ok {
		s.met.messages.WithLabelValues("skipped").Inc()
		return nil
	}
	s.mu.Lock()
	var out Output
	var err error
	form := "state"
	_, listed := s.mapper.Lookup(name)
	switch {
	case listed:
		out, err = s.mapper.Map(name, payload)
	case strings.HasPrefix(name, "bridge/"):
		s.mu.Unlock()
		s.met.messages.WithLabelValues("skipped").Inc()
		return nil
	case strings.HasSuffix(name, "/action"):
		// Legacy per-action topic with a plain-text payload.
		form = "action"
		out, err = s.mapper.MapAction(strings.TrimSuffix(name, "/action"), string(bytes.TrimSpace(payload)))
	case strings.HasSuffix(name, "/availability"):
		d, ok := s.mapper.Lookup(strings.TrimSuffix(name, "/availability"))
		s.mu.Unlock()
		online, valid := parseAvailability(payload)
		p, isPresence := sink.(Presence)
		if !ok || !valid || !isPresence {
			s.met.messages.WithLabelValues("skipped").Inc()
			return nil
		}
		p.Availability(d.ID, online)
		s.met.messages.WithLabelValues("availability").Inc()
		return nil
	case strings.HasSuffix(name, "/set"), strings.HasSuffix(name, "/get"),
		strings.Contains(name, "/set/"), strings.Contains(name, "/get/"):
		s.mu.Unlock()
		s.met.messages.WithLabelValues("skipped").Inc()
		return nil
	default:
		out, err = s.mapper.Map(name, payload)
	}
	var fresh []string
	for _, u := range out.Unknown {
		key := out.DeviceID + "\x00" + u
		if !s.reported[key] {
			s.reported[key] = true
			fresh = append(fresh, u)
		}
	}
	newDevice := false
	if errors.Is(err, ErrUnknownDevice) {
		key := "device\x00" + name
		newDevice = !s.reported[key]
		s.reported[key] = true
	}
	ts := s.now()
	// One action, two topics: zigbee2mqtt publishes the state JSON
	// {"action":"emergency",...} and, with its Home Assistant integration,
	// <friendly>/action "emergency". The second copy raises nothing.
	events := out.Events[:0:0]
	dups := 0
	for _, e := range out.Events {
		if e.Key == "action" && err == nil && s.pair(out.DeviceID, e.Type, form, ts) {
			dups++
			continue
		}
		events = append(events, e)
	}
	s.mu.Unlock()
	for range dups {
		s.met.paired.Inc()
		s.log.Info("zigbee2mqtt: action repeated on the other topic; one event raised", "device", out.DeviceID, "topic", topic)
	}

	for _, u := range fresh {
		what := "field"
		if strings.Contains(u, "=") {
			what = "value"
		}
		s.met.unknown.WithLabelValues(what).Inc()
		s.log.Warn("zigbee2mqtt: unknown "+what+"; add it to the mapping file", "friendly_name", name, "device", out.DeviceID, what, u)
	}
	switch {
	case errors.Is(err, ErrUnknownDevice):
		s.met.messages.WithLabelValues("unknown_device").Inc()
		if newDevice {
			s.met.unknown.WithLabelValues("device").Inc()
			s.log.Warn("zigbee2mqtt: unknown device; add its friendly name to the device list", "friendly_name", name, "topic", topic)
		}
		return nil
	case err != nil:
		s.met.messages.WithLabelValues("invalid").Inc()
		s.log.Warn("zigbee2mqtt: bad message", "topic", topic, "err", err)
		sink.Fault(out.DeviceID, err)
		return nil
	}
	if p, ok := sink.(Presence); ok && !out.LastSeen.IsZero() {
		p.LastSeen(out.DeviceID, out.LastSeen)
	}
	for _, e := range events {
		if err := sink.Event(ctx, out.DeviceID, ts, e.Type, e.Attrs); err != nil {
			s.met.messages.WithLabelValues("sink_error").Inc()
			s.log.Error("zigbee2mqtt: event not taken", "device", out.DeviceID, "type", e.Type, "err", err)
			return fmt.Errorf("event %s of %s: %w", e.Type, out.DeviceID, err)
		}
		s.met.events.WithLabelValues(string(e.Type)).Inc()
		s.log.Info("zigbee2mqtt event", "device", out.DeviceID, "type", e.Type)
	}
	if len(out.Values) > 0 {
		if err := sink.Reading(ctx, out.DeviceID, ts, out.Values); err != nil {
			s.met.messages.WithLabelValues("sink_error").Inc()
			s.log.Error("zigbee2mqtt: reading not taken", "device", out.DeviceID, "err", err)
			return fmt.Errorf("reading of %s: %w", out.DeviceID, err)
		}
	}
	s.met.messages.WithLabelValues("mapped").Inc()
	return nil
}

// pair reports whether an action event of dev (typ, from topic form
// "state" or "action") at now is the second copy of one raised from the
// other form within PairWindow; if so that copy is consumed, else this one
// waits for its own. mu is held.
func (s *Source) pair(dev string, typ device.EventType, form string, now time.Time) bool {
	other := "action"
	if form == "action" {
		other = "state"
	}
	key := func(f string) string { return dev + "\x00" + string(typ) + "\x00" + f }
	fresh := func(ts []time.Time) []time.Time {
		i := 0
		for i < len(ts) && now.Sub(ts[i]) > s.cfg.PairWindow {
			i++
		}
		return ts[i:]
	}
	waiting := fresh(s.unpaired[key(other)])
	if len(waiting) > 0 {
		s.unpaired[key(other)] = waiting[1:] // the oldest copy pairs
		return true
	}
	s.unpaired[key(other)] = waiting
	s.unpaired[key(form)] = append(fresh(s.unpaired[key(form)]), now)
	return false
}

// parseAvailability reads zigbee2mqtt's availability payload: JSON
// {"state":"online"} (zigbee2mqtt 1.32 and later) or the legacy plain text
// "online" / "offline".
func parseAvailability(b []byte) (online, ok bool) {
	t := strings.TrimSpace(string(b))
	if strings.HasPrefix(t, "{") {
		var v struct {
			State string `json:"state"`
		}
		if json.Unmarshal([]byte(t), &v) != nil {
			return false, false
		}
		t = v.State
	}
	switch t {
	case "online":
		return true, true
	case "offline":
		return false, true
	}
	return false, false
}
