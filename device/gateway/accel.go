package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/fall"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// DefaultAccelTopicPrefix is the first topic level wristbands that stream
// raw acceleration publish under: <prefix>/<device id>/accel.
const DefaultAccelTopicPrefix = "wearable"

// MaxAccelSamples bounds the samples of one accel message.
const MaxAccelSamples = 5000

// AccelDevice is a wristband that streams raw acceleration to the gateway.
type AccelDevice struct {
	// ID is the device id (one topic level).
	ID string
	// Unit the band sends: fall.MS2 ("m/s^2", the default when "") or
	// fall.G ("g", converted). A message may override it with its own
	// "unit".
	Unit fall.Unit
}

// AccelConfig configures an AccelSource.
type AccelConfig struct {
	// MQTTURL is the home's or station's local broker the bands publish
	// to, e.g. tcp://127.0.0.1:1883.
	MQTTURL string
	// TopicPrefix; "" is DefaultAccelTopicPrefix.
	TopicPrefix string
	// ClientID of the source's connection (persistent session).
	ClientID string
	// Devices are the known bands. A band not listed is still run through
	// the detector (a fall from a freshly installed band must reach staff)
	// with unit m/s^2, and the gateway adds it to its devices.
	Devices []AccelDevice
	// PublishTimeout bounds the subscribe; 0 = 10 s.
	PublishTimeout time.Duration
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Registerer for the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Validate reports every problem of c.
func (c AccelConfig) Validate() error {
	var errs []error
	if c.MQTTURL == "" {
		errs = append(errs, errors.New("accel: MQTT URL of the local broker is required"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("accel: client id is required"))
	}
	if strings.ContainsAny(c.TopicPrefix, "+#/") {
		errs = append(errs, fmt.Errorf("accel: topic prefix %q must be one topic level without wildcards", c.TopicPrefix))
	}
	seen := map[string]bool{}
	for i, d := range c.Devices {
		if err := device.ValidateID(fmt.Sprintf("accel.devices[%d].id", i), d.ID); err != nil {
			errs = append(errs, err)
		}
		if seen[d.ID] {
			errs = append(errs, fmt.Errorf("accel.devices[%d].id: %q listed twice", i, d.ID))
		}
		seen[d.ID] = true
		if d.Unit != "" && d.Unit != fall.MS2 && d.Unit != fall.G {
			errs = append(errs, fmt.Errorf("accel.devices[%d].unit: %q, want %q or %q", i, d.Unit, fall.MS2, fall.G))
		}
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("accel: publish timeout %s is negative", c.PublishTimeout))
	}
	return errors.Join(errs...)
}

// FileAccel is the accel section of the gateway file:
//
//	accel:
//	  mqtt: tcp://127.0.0.1:1883   # the local broker the bands publish to
//	  topic_prefix: wearable       # <prefix>/<device>/accel; default wearable
//	  devices:
//	    - {device: wb-101, unit: m/s^2}
//	    - {device: wb-102, unit: g}
type FileAccel struct {
	MQTT        string `yaml:"mqtt"`
	TopicPrefix string `yaml:"topic_prefix"`
	ClientID    string `yaml:"client_id"`
	Devices     []struct {
		Device string    `yaml:"device"`
		Unit   fall.Unit `yaml:"unit"`
	} `yaml:"devices"`
}

// Config returns the AccelConfig of the section; clientID is used when the
// section gives none.
func (f *FileAccel) Config(clientID string) AccelConfig {
	c := AccelConfig{MQTTURL: f.MQTT, TopicPrefix: f.TopicPrefix, ClientID: cmpOr(f.ClientID, clientID)}
	for _, d := range f.Devices {
		c.Devices = append(c.Devices, AccelDevice{ID: d.Device, Unit: d.Unit})
	}
	return c
}

func (f *FileAccel) validate() error {
	if err := f.Config("x").Validate(); err != nil {
		return fmt.Errorf("accel: %w", err)
	}
	return nil
}

// AccelMessage is the payload a band publishes on <prefix>/<id>/accel:
//
//	{"ts": 1765070000000, "period_ms": 20, "unit": "m/s^2", "xyz": [[0.1, 1.1, 9.7], [0.2, 2.0, 9.7]]}
//
// TS is the device time of the first sample in Unix ms; PeriodMS the time
// between samples in ms (20 for 50 Hz, 50 for 20 Hz; 1-1000); Unit is
// optional ("m/s^2" or "g"); XYZ are the samples, acceleration along the
// device axes including gravity, at most MaxAccelSamples.
type AccelMessage struct {
	TS       int64        `json:"ts"`
	PeriodMS float64      `json:"period_ms"`
	Unit     fall.Unit    `json:"unit,omitempty"`
	XYZ      [][3]float64 `json:"xyz"`
}

// AccelSource is a gateway source for wristbands that stream raw
// acceleration instead of deciding falls themselves: it runs the product's
// fall detector (device/fall, the same the simulated wristband runs) per
// band and hands a fall event to the gateway for each fall, with attrs
// peak_accel_ms2 (largest raw magnitude near the impact, m/s^2) and
// confidence (the detector's fall probability, 0-1), stamped at the impact
// in device time. A band whose data is not in the unit it declares (about
// 9.8 m/s^2 at rest) is reported to Sink.Fault and raises no fall until its
// data is plausible again.
type AccelSource struct {
	cfg    AccelConfig
	log    *slog.Logger
	prefix string
	units  map[string]fall.Unit

	mu    sync.Mutex
	bands map[string]*band

	messages *prometheus.CounterVec
	samples  prometheus.Counter
	falls    prometheus.Counter
}

type band struct {
	det      *fall.Detector
	base     int64         // Unix ms of the detector's time 0
	last     time.Duration // detector time of the last sample
	unitBad  bool          // a unit error was reported and holds
	received bool
	lastWall time.Time  // when its last message arrived
	flushed  bool       // decided by FlushIdle since its last message
	retry    []heldFall // falls sink refused, handed over again first
}

// heldFall is a detection with the Unix ms of its detector's time 0.
type heldFall struct {
	base int64
	d    fall.Detection
}

// IdleFlush: a band silent this long (wall time) has its pending impact
// candidates decided with the signal received (fall.Detector.Flush), so a
// band that stops streaming right after a fall still raises it.
const IdleFlush = 5 * time.Second

// NewAccelSource validates cfg and registers the metrics
// eldercare_gateway_accel_messages_total{result} (ok, invalid, sink_error),
// eldercare_gateway_accel_samples_total and
// eldercare_gateway_accel_falls_total.
func NewAccelSource(cfg AccelConfig) (*AccelSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &AccelSource{cfg: cfg, log: cfg.Logger, prefix: cfg.TopicPrefix, units: map[string]fall.Unit{}, bands: map[string]*band{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("source", "accel")
	if s.prefix == "" {
		s.prefix = DefaultAccelTopicPrefix
	}
	if s.cfg.PublishTimeout == 0 {
		s.cfg.PublishTimeout = 10 * time.Second
	}
	for _, d := range cfg.Devices {
		s.units[d.ID] = d.Unit
	}
	s.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_accel_messages_total",
		Help: "Raw acceleration messages from wristbands, by result: ok, invalid, sink_error."}, []string{"result"})
	s.samples = prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_accel_samples_total",
		Help: "Acceleration samples run through the fall detector."})
	s.falls = prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_accel_falls_total",
		Help: "Falls the gateway's detector found in raw acceleration streams."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.messages, s.samples, s.falls} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("accel metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run subscribes to <prefix>/+/accel on the local broker (QoS 1, again
// after every reconnect) and runs every message through Handle until ctx
// is cancelled; then it returns nil. A message is acknowledged only after
// its falls were handed to sink. It returns an error only when the first
// connection fails.
func (s *AccelSource) Run(ctx context.Context, sink Sink) error {
	filter := s.prefix + "/+/accel"
	handle := func(_ paho.Client, m paho.Message) {
		if err := s.Handle(ctx, sink, m.Topic(), m.Payload()); err != nil {
			return // not acknowledged: redelivered after a reconnect
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
			tok := c.Subscribe(filter, 1, handle)
			go func() {
				if err := mqttconn.Wait(ctx, tok, s.cfg.PublishTimeout, "subscribe "+filter); err != nil && ctx.Err() == nil {
					s.log.Error("accel subscribe failed", "err", err)
					sink.Fault("", err)
				}
			}()
		},
	})
	if err != nil {
		return fmt.Errorf("accel source: %w", err)
	}
	s.log.Info("accel source running", "broker", s.cfg.MQTTURL, "topic", filter, "devices", len(s.cfg.Devices))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.Disconnect(250)
			return nil
		case now := <-tick.C:
			if err := s.FlushIdle(ctx, sink, now); err != nil {
				s.log.Error("accel: fall of an idle band not handed over", "err", err)
			}
		}
	}
}

// FlushIdle decides the pending candidates of every band whose last
// message arrived IdleFlush or more before now and hands its falls to
// sink. It returns the first error of sink.Event (that band is retried at
// the next call).
func (s *AccelSource) FlushIdle(ctx context.Context, sink Sink, now time.Time) error {
	type fallOf struct {
		id string
		heldFall
	}
	var out []fallOf
	s.mu.Lock()
	for id, b := range s.bands {
		if b.flushed || now.Sub(b.lastWall) < IdleFlush {
			continue
		}
		b.flushed = true
		for _, h := range b.retry {
			out = append(out, fallOf{id, h})
		}
		b.retry = nil
		for _, d := range b.det.Flush() {
			out = append(out, fallOf{id, heldFall{b.base, d}})
		}
	}
	s.mu.Unlock()
	var first error
	for _, f := range out {
		if err := s.emitFall(ctx, sink, f.id, f.base, f.d); err != nil {
			s.mu.Lock()
			if b := s.bands[f.id]; b != nil {
				b.retry = append(b.retry, f.heldFall)
				b.flushed = false // retried at the next call
			}
			s.mu.Unlock()
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (s *AccelSource) emitFall(ctx context.Context, sink Sink, id string, base int64, d fall.Detection) error {
	ts := time.UnixMilli(base).Add(d.At)
	attrs := map[string]any{"peak_accel_ms2": math.Round(min(d.RawPeakSVM, 1000)*100) / 100, "confidence": math.Round(d.Score*1000) / 1000}
	if err := sink.Event(ctx, id, ts, device.EventFall, attrs); err != nil {
		return fmt.Errorf("accel fall of %s: %w", id, err)
	}
	s.falls.Inc()
	s.log.Warn("fall detected in raw acceleration", "device", id, "at", ts, "peak_accel_ms2", attrs["peak_accel_ms2"], "confidence", attrs["confidence"])
	return nil
}

// Handle decodes one message of topic <prefix>/<id>/accel, feeds its
// samples to the band's detector and hands each fall to sink.Event. It
// returns an error only when sink refused an event (the message is then
// not acknowledged); a malformed message is counted, logged and reported to
// sink.Fault, and a message from an earlier time than the band's last one
// (a reboot or clock step) restarts that band's detector.
func (s *AccelSource) Handle(ctx context.Context, sink Sink, topic string, payload []byte) error {
	id, err := s.deviceOf(topic)
	if err == nil {
		err = device.ValidateID("device", id)
	}
	var m AccelMessage
	if err == nil {
		err = decodeAccel(payload, &m)
	}
	if err != nil {
		s.messages.WithLabelValues("invalid").Inc()
		s.log.Warn("accel message rejected", "topic", topic, "err", err)
		sink.Fault(id, fmt.Errorf("accel message on %s: %w", topic, err))
		return nil
	}
	unit := m.Unit
	if unit == "" {
		unit = s.units[id]
	}
	scale := 1.0
	if unit == fall.G {
		scale = fall.StandardGravity
	}

	s.mu.Lock()
	b := s.bands[id]
	period := time.Duration(m.PeriodMS * float64(time.Millisecond))
	// A message entirely before the band's last sample is a redelivery
	// (its samples were run already); a start more than a minute back is a
	// reboot or clock step: a new detector.
	if b == nil || !b.received || m.TS < b.base || time.Duration(m.TS-b.base)*time.Millisecond < b.last-time.Minute {
		if b != nil && b.received {
			s.log.Info("accel stream restarted (earlier time than before): new detector", "device", id)
		}
		var retry []heldFall
		if b != nil {
			retry = b.retry
		}
		b = &band{det: fall.NewDetector(fall.DefaultConfig()), base: m.TS, retry: retry}
		s.bands[id] = b
	}
	b.received, b.lastWall, b.flushed = true, time.Now(), false
	t0 := time.Duration(m.TS-b.base) * time.Millisecond
	dets := b.retry
	b.retry = nil
	for i, v := range m.XYZ {
		t := t0 + time.Duration(i)*period
		if d, ok := b.det.Push(fall.Sample{T: t, X: v[0] * scale, Y: v[1] * scale, Z: v[2] * scale}); ok {
			dets = append(dets, heldFall{b.base, d})
		}
		b.last = t
	}
	var unitErr error
	// Reported once when the stream goes implausible, again after it was
	// plausible in between.
	if e := b.det.UnitError(); e != nil && !b.unitBad {
		b.unitBad, unitErr = true, e
	} else if e == nil {
		b.unitBad = false
	}
	s.mu.Unlock()

	s.samples.Add(float64(len(m.XYZ)))
	if unitErr != nil {
		s.log.Error("accel stream in the wrong unit: no fall can be detected", "device", id, "declared_unit", cmpOr(string(unit), string(fall.MS2)), "err", unitErr)
		sink.Fault(id, fmt.Errorf("accel stream (declared unit %s): %w", cmpOr(string(unit), string(fall.MS2)), unitErr))
	}
	for i, h := range dets {
		if err := s.emitFall(ctx, sink, id, h.base, h.d); err != nil {
			s.messages.WithLabelValues("sink_error").Inc()
			s.mu.Lock()
			if cur := s.bands[id]; cur != nil {
				cur.retry = append(append([]heldFall(nil), dets[i:]...), cur.retry...)
			}
			s.mu.Unlock()
			return err
		}
	}
	s.messages.WithLabelValues("ok").Inc()
	return nil
}

func (s *AccelSource) deviceOf(topic string) (string, error) {
	rest, ok := strings.CutPrefix(topic, s.prefix+"/")
	if !ok {
		return "", fmt.Errorf("topic %q is not under %s/", topic, s.prefix)
	}
	id, ok := strings.CutSuffix(rest, "/accel")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("topic %q: want %s/<device>/accel", topic, s.prefix)
	}
	return id, nil
}

// Bounds of AccelMessage.TS: 2000-01-01 and 2200-01-01 UTC in Unix ms.
const (
	minAccelTS = 946_684_800_000
	maxAccelTS = 7_258_118_400_000
)

func decodeAccel(payload []byte, m *AccelMessage) error {
	if err := json.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	var errs []error
	if m.TS < minAccelTS || m.TS > maxAccelTS {
		errs = append(errs, fmt.Errorf("ts %d: want the Unix time of the first sample in ms (years 2000-2199)", m.TS))
	}
	if !(m.PeriodMS >= 1 && m.PeriodMS <= 1000) {
		errs = append(errs, fmt.Errorf("period_ms %v: want 1-1000 ms (20 for 50 Hz)", m.PeriodMS))
	}
	if m.Unit != "" && m.Unit != fall.MS2 && m.Unit != fall.G {
		errs = append(errs, fmt.Errorf("unit %q: want %q or %q", m.Unit, fall.MS2, fall.G))
	}
	if len(m.XYZ) == 0 || len(m.XYZ) > MaxAccelSamples {
		errs = append(errs, fmt.Errorf("xyz: %d samples, want 1-%d", len(m.XYZ), MaxAccelSamples))
	}
	for i, v := range m.XYZ {
		if math.IsNaN(v[0]+v[1]+v[2]) || math.IsInf(v[0]+v[1]+v[2], 0) {
			errs = append(errs, fmt.Errorf("xyz[%d]: non-finite value", i))
			break
		}
	}
	return errors.Join(errs...)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
