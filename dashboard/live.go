package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Sample is the latest value of one reading field with the device's
// timestamp.
type Sample struct {
	V  float64   `json:"v"`
	At time.Time `json:"at"`
}

// DeviceState is the latest known state of one device, as the live feed saw
// it on MQTT.
type DeviceState struct {
	Device string `json:"device"`
	Site   string `json:"site"`
	// State is online, offline or unknown (nothing heard yet, or the
	// gateway is gone).
	State       device.State `json:"state"`
	StateReason string       `json:"state_reason,omitempty"`
	StateAt     *time.Time   `json:"state_at,omitempty"`
	// Latest maps a reading field (hr_bpm, spo2_pct, resp_per_min,
	// pulse_bpm, ...) to its latest value and device time.
	Latest map[string]Sample `json:"latest,omitempty"`
	// InBed is the bed occupancy from bed_entry/bed_exit events or in_bed
	// readings; nil when unknown.
	InBed       *bool      `json:"in_bed,omitempty"`
	InBedAt     *time.Time `json:"in_bed_at,omitempty"`
	LastEvent   string     `json:"last_event,omitempty"`
	LastEventAt *time.Time `json:"last_event_at,omitempty"`
	// ReceivedAt is the wall time of the last message about the device.
	ReceivedAt time.Time `json:"received_at"`
}

func (d DeviceState) clone() DeviceState {
	if d.Latest != nil {
		m := make(map[string]Sample, len(d.Latest))
		for k, v := range d.Latest {
			m[k] = v
		}
		d.Latest = m
	}
	return d
}

// Change is one message of the live feed: exactly one of Device and Alert
// is set. Kind is "device" or "alert" and names the SSE event. Alert is
// the alert change as the alerting service publishes it on MQTT
// (alerting.Change: ID "alert-<alert id>-<seq>", Event opened,
// acknowledged, resolved, repeated, ...), with the alert's state as the
// store holds it.
type Change struct {
	Kind   string           `json:"kind"`
	Device *DeviceState     `json:"device,omitempty"`
	Alert  *alerting.Change `json:"alert,omitempty"`
}

// AlertGetter reads one alert from the alert store (implemented by
// *alerting.Manager); errors wrap alerting.ErrNotFound for an unknown id.
type AlertGetter interface {
	Get(ctx context.Context, id int64) (alerting.Alert, error)
}

// FeedConfig configures a Feed.
type FeedConfig struct {
	// MQTTURL, Root and ClientID as in Config.
	MQTTURL, Root, ClientID string
	// Alerts is the alert store. An alert change heard on MQTT is only a
	// trigger: the feed reads the alert's real state from the store and
	// drops changes of ids the store does not know. dashboard.New sets it
	// (Feed.SetAlertGetter) to Deps.Alerts when it is nil. Without a store
	// the feed would have to trust the MQTT payload, which any client of
	// the broker can forge, so alert changes from MQTT are then dropped
	// (result "no_store").
	Alerts AlertGetter
	// AlertTimeout bounds one store read; 0 = 5 s.
	AlertTimeout time.Duration
	// ClientBuffer is the number of changes buffered per SSE client before
	// the client starts losing them; 0 = 256.
	ClientBuffer int
	// Now is the wall clock; nil = time.Now.
	Now func() time.Time
}

// Feed is the live feed: it subscribes (clean session, QoS 1) to the
// telemetry, event and status of every device and to the alert changes,
// keeps the latest state per device, and fans changes out to subscribers
// (the SSE clients). A slow subscriber loses changes and never blocks the
// others.
type Feed struct {
	cfg FeedConfig
	log *slog.Logger
	now func() time.Time

	getter atomic.Pointer[alertGetterBox]
	// alertMu serialises the store read and the state update of each alert
	// change from MQTT, so the state read last is the state applied last.
	alertMu sync.Mutex

	mu      sync.RWMutex
	devices map[string]*DeviceState
	alerts  map[int64]alerting.Change // by alert id: open and acknowledged alerts seen live
	// gone holds the ids of resolved alerts (with the time they were
	// seen resolved) so that a late, older change cannot bring them back.
	gone   map[int64]time.Time
	subs   map[*Subscriber]struct{}
	closed bool
	client paho.Client

	subscribed atomic.Bool // the current connection's SUBACK arrived

	mMessages *prometheus.CounterVec
	mClients  prometheus.Gauge
	mDropped  prometheus.Counter
}

// NewFeed builds a feed and registers its metrics on reg:
// eldercare_dashboard_live_messages_total{channel,result},
// eldercare_dashboard_sse_clients and eldercare_dashboard_sse_dropped_total.
func NewFeed(cfg FeedConfig, reg prometheus.Registerer, log *slog.Logger) (*Feed, error) {
	if err := device.ValidateRoot(cfg.Root); err != nil {
		return nil, fmt.Errorf("live feed: topic root: %w", err)
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 256
	}
	if log == nil {
		log = slog.Default()
	}
	f := &Feed{
		cfg:     cfg,
		log:     log,
		now:     cfg.Now,
		devices: map[string]*DeviceState{},
		alerts:  map[int64]alerting.Change{},
		gone:    map[int64]time.Time{},
		subs:    map[*Subscriber]struct{}{},
		mMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_dashboard_live_messages_total",
			Help: "MQTT messages received by the dashboard's live feed, by channel (telemetry, event, status, alert) and result (ok, invalid; for alert changes also unknown_alert, store_error, no_store).",
		}, []string{"channel", "result"}),
		mClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_dashboard_sse_clients",
			Help: "Connected SSE clients of the live feed.",
		}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eldercare_dashboard_sse_dropped_total",
			Help: "Live changes not delivered to an SSE client because its buffer was full (slow client).",
		}),
	}
	if f.now == nil {
		f.now = time.Now
	}
	if cfg.AlertTimeout <= 0 {
		f.cfg.AlertTimeout = 5 * time.Second
	}
	if cfg.Alerts != nil {
		f.SetAlertGetter(cfg.Alerts)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{f.mMessages, f.mClients, f.mDropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("live feed: register metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Run connects to the broker, subscribes (again after every reconnect) and
// processes messages until ctx is cancelled; then it disconnects and ends
// every subscription. It returns an error when the first connection fails.
func (f *Feed) Run(ctx context.Context) error {
	defer f.closeSubscribers()
	filters := map[string]byte{
		device.Subscription(f.cfg.Root, device.ChanTelemetry): 1,
		device.Subscription(f.cfg.Root, device.ChanEvent):     1,
		device.Subscription(f.cfg.Root, device.ChanStatus):    1,
		alerting.AlertSubscription(f.cfg.Root):                1,
	}
	c, err := mqttconn.Connect(ctx, mqttconn.Options{
		URL:          f.cfg.MQTTURL,
		ClientID:     f.cfg.ClientID,
		CleanSession: true,
		Logger:       f.log,
		OnConnect: func(c paho.Client) {
			f.subscribed.Store(false)
			tok := c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
				f.HandleMessage(m.Topic(), m.Payload())
			})
			if err := mqttconn.Wait(context.Background(), tok, 10*time.Second, "live feed: subscribe"); err != nil {
				f.log.Error("live feed: subscribe failed; the board will not update", "err", err)
				return
			}
			f.subscribed.Store(true)
		},
	})
	if err != nil {
		return fmt.Errorf("live feed: %w", err)
	}
	f.mu.Lock()
	f.client = c
	f.mu.Unlock()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

// Healthy returns nil when the feed is connected to the broker, else the
// reason.
func (f *Feed) Healthy() error {
	f.mu.RLock()
	c := f.client
	f.mu.RUnlock()
	switch {
	case c == nil:
		return errors.New("mqtt: not connected yet")
	case !c.IsConnectionOpen():
		return errors.New("mqtt: connection lost, reconnecting")
	case !f.subscribed.Load():
		return errors.New("mqtt: connected, subscription not confirmed")
	}
	return nil
}

type alertGetterBox struct{ g AlertGetter }

// SetAlertGetter sets the alert store the feed reads the real state of an
// alert from (see FeedConfig.Alerts). It is safe to call while the feed
// runs.
func (f *Feed) SetAlertGetter(g AlertGetter) {
	if g == nil {
		f.getter.Store(nil)
		return
	}
	f.getter.Store(&alertGetterBox{g: g})
}

// HasAlertGetter reports whether the feed has an alert store.
func (f *Feed) HasAlertGetter() bool { return f.getter.Load() != nil }

// dropError is a message that is well-formed but dropped; result is the
// metric's result label.
type dropError struct {
	result string
	err    error
}

func (e *dropError) Error() string { return e.err.Error() }
func (e *dropError) Unwrap() error { return e.err }

// HandleMessage applies one MQTT message to the state and publishes the
// change. Invalid messages are counted and logged, never fatal.
func (f *Feed) HandleMessage(topic string, payload []byte) {
	ch, err := f.handle(topic, payload)
	result := "ok"
	if err != nil {
		result = "invalid"
		var de *dropError
		if errors.As(err, &de) {
			result = de.result
		}
		f.log.Warn("live feed: message dropped", "topic", topic, "result", result, "err", err)
	}
	f.mMessages.WithLabelValues(ch, result).Inc()
}

// eventOf is the change event that leads to status.
func eventOf(status string) string {
	switch status {
	case alerting.StatusResolved:
		return alerting.EventResolved
	case alerting.StatusAcknowledged:
		return alerting.EventAcknowledged
	}
	return alerting.EventOpened
}

// statusRank orders the statuses of an alert's life: a state of lower
// rank is older and never replaces one of higher rank.
func statusRank(status string) int {
	switch status {
	case alerting.StatusAcknowledged:
		return 1
	case alerting.StatusResolved:
		return 2
	}
	return 0
}

// alertTrigger handles an alert change heard on MQTT: the payload is not
// trusted (any client of the broker can publish it); only its alert id is
// used, and the alert's state is read from the store.
func (f *Feed) alertTrigger(c alerting.Change) error {
	box := f.getter.Load()
	if box == nil {
		return &dropError{"no_store", fmt.Errorf("alert change %q of alert %d: no alert store to verify it against", truncate(c.ID, 64), c.Alert.ID)}
	}
	f.alertMu.Lock()
	defer f.alertMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.AlertTimeout)
	defer cancel()
	a, err := box.g.Get(ctx, c.Alert.ID)
	if errors.Is(err, alerting.ErrNotFound) {
		return &dropError{"unknown_alert", fmt.Errorf("alert change %q: alert %d is not in the store", truncate(c.ID, 64), c.Alert.ID)}
	}
	if err != nil {
		return &dropError{"store_error", fmt.Errorf("alert change %q: read alert %d: %w", truncate(c.ID, 64), c.Alert.ID, err)}
	}
	at := a.OpenedAt
	switch {
	case a.ResolvedAt != nil:
		at = *a.ResolvedAt
	case a.AcknowledgedAt != nil:
		at = *a.AcknowledgedAt
	}
	ev := eventOf(a.Status)
	if shownAgain(c.Event) && a.Status != alerting.StatusResolved {
		// A new fall or SOS on an open alert, a flapping notice, an
		// escalation step or a reminder: the state is unchanged, but every
		// screen must show it again.
		ev, at = c.Event, f.now().UTC()
	}
	f.PublishAlert(alerting.Change{ID: truncate(c.ID, 64), Event: ev, Alert: a, At: at})
	return nil
}

func (f *Feed) handle(topic string, payload []byte) (string, error) {
	root := f.cfg.Root
	if root == "" {
		root = device.DefaultRoot
	}
	if rest, ok := strings.CutPrefix(topic, root+"/v1/alerts/"); ok && !strings.Contains(rest, "/") {
		var c alerting.Change
		if err := json.Unmarshal(payload, &c); err != nil {
			return "alert", fmt.Errorf("decode alert change: %w", err)
		}
		if c.Alert.ID <= 0 {
			return "alert", fmt.Errorf("alert change %q: alert id %d is not positive", c.ID, c.Alert.ID)
		}
		switch c.Event {
		case alerting.EventOpened, alerting.EventAcknowledged, alerting.EventResolved,
			alerting.EventRepeated, alerting.EventRepeating, alerting.EventEscalated, alerting.EventReminder:
		default:
			return "alert", fmt.Errorf("alert change %q: event %q is not an alert event", c.ID, c.Event)
		}
		return "alert", f.alertTrigger(c)
	}
	t, err := device.ParseTopic(root, topic)
	if err != nil {
		return "unknown", err
	}
	now := f.now()
	switch t.Channel {
	case device.ChanTelemetry:
		m, err := device.DecodeTelemetryFast(payload, now, device.DefaultLimits)
		if err != nil {
			return string(t.Channel), err
		}
		if err := device.CheckTopicDevice(t, m.Device); err != nil {
			return string(t.Channel), err
		}
		f.update(t.Site, t.Device, now, func(d *DeviceState) {
			for _, r := range m.Readings {
				at := r.Time().UTC()
				heardAfterStatus(d, at)
				for k, v := range r.Values {
					if old, ok := d.Latest[k]; ok && old.At.After(at) {
						continue
					}
					if d.Latest == nil {
						d.Latest = map[string]Sample{}
					}
					d.Latest[k] = Sample{V: v, At: at}
					if k == "in_bed" && (d.InBedAt == nil || !d.InBedAt.After(at)) {
						in := v >= 0.5
						d.InBed, d.InBedAt = &in, &at
					}
				}
			}
		})
	case device.ChanEvent:
		e, err := device.DecodeEvent(payload, now, device.DefaultLimits)
		if err != nil {
			return string(t.Channel), err
		}
		if err := device.CheckTopicDevice(t, e.Device); err != nil {
			return string(t.Channel), err
		}
		at := e.Time().UTC()
		f.update(t.Site, t.Device, now, func(d *DeviceState) {
			heardAfterStatus(d, at)
			d.LastEvent, d.LastEventAt = string(e.Type), &at
			if e.Type == device.EventBedEntry || e.Type == device.EventBedExit {
				if d.InBedAt == nil || !d.InBedAt.After(at) {
					in := e.Type == device.EventBedEntry
					d.InBed, d.InBedAt = &in, &at
				}
			}
		})
	case device.ChanStatus:
		s, err := device.DecodeStatus(payload, device.DefaultLimits)
		if err != nil {
			return string(t.Channel), err
		}
		if err := device.CheckTopicDevice(t, s.Device); err != nil {
			return string(t.Channel), err
		}
		at := time.UnixMilli(s.TS).UTC()
		f.update(t.Site, t.Device, now, func(d *DeviceState) {
			d.State, d.StateReason, d.StateAt = s.State, s.Reason, &at
		})
		if s.Reason == device.ReasonGatewayLost {
			for _, id := range s.Devices {
				f.update(t.Site, id, now, func(d *DeviceState) {
					d.State, d.StateReason, d.StateAt = device.Unknown, device.ReasonGatewayLost, &at
				})
			}
		}
	default:
		return string(t.Channel), fmt.Errorf("channel %q is not subscribed", t.Channel)
	}
	return string(t.Channel), nil
}

// heardAfterStatus marks d online when a reading or event of time at is
// newer than its offline or unknown status: a device that said it shut down
// (or whose gateway was lost) and speaks again is back, as the alerting
// supervisor also decides (alerting/supervision.go heard). An older message
// changes nothing, and so does one before any status (the state stays
// unknown until the device or its gateway says).
func heardAfterStatus(d *DeviceState, at time.Time) {
	if d.State == device.Online || d.StateAt == nil || !at.After(*d.StateAt) {
		return
	}
	d.State, d.StateReason, d.StateAt = device.Online, "", &at
}

// update changes one device's state under the lock and publishes it.
func (f *Feed) update(site, id string, now time.Time, fn func(*DeviceState)) {
	f.mu.Lock()
	d, ok := f.devices[id]
	if !ok {
		d = &DeviceState{Device: id, Site: site, State: device.Unknown}
		f.devices[id] = d
	}
	d.Site = site
	fn(d)
	d.ReceivedAt = now.UTC()
	snap := d.clone()
	f.mu.Unlock()
	f.publish(Change{Kind: "device", Device: &snap})
}

// shownAgain reports whether an event re-announces an open alert whose
// state did not change.
func shownAgain(event string) bool {
	switch event {
	case alerting.EventRepeated, alerting.EventRepeating, alerting.EventEscalated, alerting.EventReminder:
		return true
	}
	return false
}

// sameOnScreen reports whether two states of an alert show the same: equal
// in everything but the repeat count and the time of the last occurrence,
// which the store updates on every repeat, also on the repeats it counts
// without a notice (a continuing vitals breach); those are not shown again.
func sameOnScreen(a, b alerting.Alert) bool {
	a.Repeats, a.LastOccurredAt = 0, nil
	b.Repeats, b.LastOccurredAt = 0, nil
	return reflect.DeepEqual(a, b)
}

// goneTTL is how long the id of a resolved alert is remembered.
const goneTTL = time.Hour

// PublishAlert records an alert change and fans it out to subscribers.
// The change must carry the alert's state as the store gave it (the
// server calls it with the result of Acknowledge or Resolve). A change
// older than the state already recorded (lower status: open, then
// acknowledged, then resolved) is ignored, as is a change that repeats
// the recorded state (except a "repeated" change: a new fall or SOS on an
// open alert is shown again), and a resolved alert never comes back.
func (f *Feed) PublishAlert(c alerting.Change) {
	id := c.Alert.ID
	resolved := c.Alert.Status == alerting.StatusResolved || c.Event == alerting.EventResolved
	now := f.now()
	f.mu.Lock()
	if _, ok := f.gone[id]; ok {
		f.mu.Unlock()
		return
	}
	if old, ok := f.alerts[id]; ok && !resolved && !shownAgain(c.Event) {
		if statusRank(c.Alert.Status) < statusRank(old.Alert.Status) || sameOnScreen(old.Alert, c.Alert) {
			f.mu.Unlock()
			return
		}
	}
	if resolved {
		delete(f.alerts, id)
		for k, t := range f.gone {
			if now.Sub(t) > goneTTL {
				delete(f.gone, k)
			}
		}
		f.gone[id] = now
	} else {
		f.alerts[id] = c
	}
	f.mu.Unlock()
	f.publish(Change{Kind: "alert", Alert: &c})
}

// Device returns the latest state of one device.
func (f *Feed) Device(id string) (DeviceState, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	d, ok := f.devices[id]
	if !ok {
		return DeviceState{}, false
	}
	return d.clone(), true
}

// Devices returns the latest state of every device heard of, by id.
func (f *Feed) Devices() []DeviceState {
	f.mu.RLock()
	out := make([]DeviceState, 0, len(f.devices))
	for _, d := range f.devices {
		out = append(out, d.clone())
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out
}

// Alerts returns the latest change of each alert seen live that is not
// resolved, by id.
func (f *Feed) Alerts() []alerting.Change {
	f.mu.RLock()
	out := make([]alerting.Change, 0, len(f.alerts))
	for _, a := range f.alerts {
		out = append(out, a)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Alert.ID < out[j].Alert.ID })
	return out
}

// Subscriber receives the changes of a Feed as ready SSE frames.
type Subscriber struct {
	f    *Feed
	c    chan []byte
	once sync.Once
}

// C delivers SSE frames ("event: ...\ndata: ...\n\n"). It is closed when
// the subscriber is closed or the feed stops.
func (s *Subscriber) C() <-chan []byte { return s.c }

// Close removes the subscriber. It is safe to call more than once.
func (s *Subscriber) Close() {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.closeLocked()
}

func (s *Subscriber) closeLocked() {
	s.once.Do(func() {
		delete(s.f.subs, s)
		close(s.c)
		s.f.mClients.Dec()
	})
}

// Subscribe adds a subscriber with a buffer of FeedConfig.ClientBuffer
// frames. Close it when the client leaves.
func (f *Feed) Subscribe() *Subscriber {
	s := &Subscriber{f: f, c: make(chan []byte, f.cfg.ClientBuffer)}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mClients.Inc()
	if f.closed {
		s.closeLocked()
		return s
	}
	f.subs[s] = struct{}{}
	return s
}

// Subscribers returns the number of current subscribers.
func (f *Feed) Subscribers() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.subs)
}

func (f *Feed) publish(c Change) {
	b, err := json.Marshal(c)
	if err != nil {
		f.log.Error("live feed: encode change", "err", err)
		return
	}
	frame := make([]byte, 0, len(b)+32)
	frame = append(frame, "event: "+c.Kind+"\ndata: "...)
	frame = append(frame, b...)
	frame = append(frame, "\n\n"...)
	f.mu.RLock()
	defer f.mu.RUnlock()
	for s := range f.subs {
		select {
		case s.c <- frame:
		default:
			f.mDropped.Inc()
		}
	}
}

func (f *Feed) closeSubscribers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		s.closeLocked()
	}
}
