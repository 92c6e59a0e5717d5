// Package gateway is the edge gateway runtime: sources (Modbus, zigbee2mqtt,
// local MQTT) produce readings and events into the gateway's Sink; the
// gateway commits each to its on-disk spool (package spool) before it
// acknowledges the source, and one MQTT uplink drains the spool to the
// platform in protocol v1 payloads, deleting an entry only after its PUBACK.
//
// While the uplink is down a fall or SOS event is also raised on a local
// MQTT topic and in the log (see Gateway.Event). Each device's status is
// derived from its real readings, not from any connection. See
// docs/gateway.md.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Sink receives what a source produces. *Gateway implements it.
type Sink interface {
	Reading(ctx context.Context, deviceID string, ts time.Time, values map[string]float64) error
	Event(ctx context.Context, deviceID string, ts time.Time, typ device.EventType, attrs map[string]any) error
	Fault(deviceID string, err error)
}

// Source produces readings and events until ctx ends: Modbus, zigbee2mqtt, local MQTT.
type Source interface {
	Run(ctx context.Context, sink Sink) error
}

// Spool is what the gateway needs of its store-and-forward queue;
// *spool.Spool implements it.
type Spool interface {
	AddReading(ctx context.Context, dev string, ts time.Time, values map[string]float64) (spool.Entry, error)
	AddEvent(ctx context.Context, dev string, ts time.Time, typ device.EventType, attrs map[string]any) (spool.Entry, error)
	Peek(ctx context.Context, n int) ([]spool.Entry, error)
	Delete(ctx context.Context, pos ...int64) error
	Boot() uint32
}

// devState is what the gateway knows of one device.
type devState struct {
	Device
	last  time.Time    // wall time of the last reading or event received (or the device's last_seen)
	state device.State // "" until first decided
	dirty bool         // status to publish
	at    time.Time    // when state changed
	// avail is zigbee2mqtt's availability of the device: "" unknown,
	// else online or offline. While known it decides the state.
	avail device.State
	heard bool // last is a real reading, event or last_seen
}

// pendingAlarm is a fall or SOS event not yet acknowledged by the broker.
type pendingAlarm struct {
	entry spool.Entry
	timer *time.Timer
}

// Gateway is the runtime. Create it with New and run it with Run; its Sink
// methods may be called before and while Run runs, from any goroutine.
type Gateway struct {
	cfg   Config
	spool Spool
	log   *slog.Logger
	now   func() time.Time

	wake chan struct{} // something new in the spool or to publish

	mu        sync.Mutex
	devices   map[string]*devState
	order     []string // device ids, listing order
	uplink    paho.Client
	local     paho.Client
	alarms    map[int64]*pendingAlarm // by spool position
	faults    map[string]string       // last fault per device, logged on change
	gwDirty   bool                    // gateway status to publish
	started   time.Time
	skew      float64
	skewSeen  bool
	actuators map[string]Actuator          // by device id; set before Run
	acks      map[string]device.CommandAck // recent acks by command id (retries are answered, not re-executed)
	ackOrder  []string
	connGen   uint64                 // counts onConnect calls
	connAt    time.Time              // time of the last onConnect
	booted    bool                   // the boot status went out on this connection
	active    map[string]ActiveAlarm // local alarms held until call_acknowledged (localalarm.go)
	// alarmMu orders the changes of active with their records in the
	// AlarmStore (held before mu, never under it).
	alarmMu sync.Mutex

	m metrics
}

type metrics struct {
	connected   prometheus.GaugeFunc
	connects    prometheus.Counter
	published   *prometheus.CounterVec
	pubErrors   prometheus.Counter
	localAlarms *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	faults      *prometheus.CounterVec
	online      prometheus.GaugeFunc
	skew        prometheus.GaugeFunc
	clockErrors prometheus.Counter
	commands    *prometheus.CounterVec
	// localalarm.go
	alarmsActive  prometheus.GaugeFunc
	alarmsCleared prometheus.Counter
}

// New returns a gateway over sp, registering its metrics on reg (nil: not
// registered): eldercare_gateway_uplink_connected, _uplink_connects_total,
// _published_total{kind}, _publish_errors_total, _local_alarms_total{result},
// _rejected_total{kind}, _source_faults_total{device},
// _devices_online, _clock_skew_seconds, _clock_check_errors_total,
// _commands_total{status}, _local_alarms_active, _local_alarms_cleared_total.
func New(cfg Config, sp Spool, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{
		cfg: cfg, spool: sp, log: log.With("gateway", cfg.ID), now: time.Now,
		wake:    make(chan struct{}, 1),
		devices: map[string]*devState{},
		alarms:  map[int64]*pendingAlarm{},
		faults:  map[string]string{},
		gwDirty: true,
	}
	g.started = g.now()
	for _, d := range cfg.Devices {
		if d.Kind == "" {
			d.Kind = device.Other
		}
		g.devices[d.ID] = &devState{Device: d, last: g.started}
		g.order = append(g.order, d.ID)
	}
	g.restoreAlarms() // localalarm.go
	g.m = metrics{
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_gateway_uplink_connected", Help: "1 while the MQTT uplink to the platform is connected."}, func() float64 {
			if g.client() != nil {
				return 1
			}
			return 0
		}),
		connects:    prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_uplink_connects_total", Help: "MQTT uplink connections made (the first and every reconnect)."}),
		published:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_published_total", Help: "Readings and events acknowledged by the broker (PUBACK) and deleted from the spool, by kind."}, []string{"kind"}),
		pubErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_publish_errors_total", Help: "Uplink publishes that failed or got no PUBACK in time; their entries stay spooled."}),
		localAlarms: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_local_alarms_total", Help: "Fall and SOS events raised locally because the uplink was down, by result (published on the local broker, or log_only)."}, []string{"result"}),
		rejected:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_rejected_total", Help: "Readings and events a source handed over that were refused as malformed (the source got the error), by kind."}, []string{"kind"}),
		faults:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_source_faults_total", Help: "Faults reported by sources (poll errors, implausible values), by device."}, []string{"device"}),
		online: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_gateway_devices_online", Help: "Devices behind the gateway that are online according to their readings."}, func() float64 {
			g.mu.Lock()
			defer g.mu.Unlock()
			n := 0
			for _, d := range g.devices {
				if d.state == device.Online {
					n++
				}
			}
			return float64(n)
		}),
		skew: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_gateway_clock_skew_seconds", Help: "Gateway clock minus NTP time at the last check, in seconds (NaN before the first check)."}, func() float64 {
			g.mu.Lock()
			defer g.mu.Unlock()
			if !g.skewSeen {
				return math.NaN()
			}
			return g.skew
		}),
		clockErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_clock_check_errors_total", Help: "Clock checks against NTP that failed."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_commands_total",
			Help: "Downlink commands answered, by status (accepted, refused, failed, repeat: a retry answered from the recent acks, malformed: no ack possible)."}, []string{"status"}),
		alarmsActive: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_gateway_local_alarms_active",
			Help: "Devices whose fall or SOS the gateway holds as an active local alarm: from the event until the platform's call_acknowledged command for the device."}, func() float64 {
			g.mu.Lock()
			defer g.mu.Unlock()
			return float64(len(g.active))
		}),
		alarmsCleared: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_gateway_local_alarms_cleared_total",
			Help: "Local alarms cleared by a call_acknowledged command (a person acknowledged the call on the platform)."}),
	}
	for _, k := range []string{"reading", "event"} {
		g.m.published.WithLabelValues(k)
		g.m.rejected.WithLabelValues(k)
	}
	g.m.localAlarms.WithLabelValues("published")
	g.m.localAlarms.WithLabelValues("log_only")
	if reg != nil {
		for _, c := range []prometheus.Collector{g.m.connected, g.m.connects, g.m.published, g.m.pubErrors, g.m.localAlarms,
			g.m.rejected, g.m.faults, g.m.online, g.m.skew, g.m.clockErrors, g.m.commands, g.m.alarmsActive, g.m.alarmsCleared} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register gateway metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Connected reports whether the uplink is connected.
func (g *Gateway) Connected() bool { return g.client() != nil }

func (g *Gateway) client() paho.Client {
	g.mu.Lock()
	c := g.uplink
	g.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		return nil
	}
	return c
}

func (g *Gateway) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *Gateway) topic(dev string, ch device.Channel) string {
	return device.Topic{Root: g.cfg.Root, Site: g.cfg.Site, Device: dev, Channel: ch}.String()
}

// Reading commits a reading of deviceID taken at ts (device time) to the
// spool and returns nil once it is on disk: only then may a source treat it
// as delivered. values maps field names (protocol v1 names with their unit
// suffix, e.g. room_temp_c in degrees C) to finite numbers. A malformed
// reading (bad device id or field name, NaN/Inf, a well-known field outside
// its physical range, a reading too large for one message) is refused with
// an error saying why and counted in eldercare_gateway_rejected_total.
func (g *Gateway) Reading(ctx context.Context, deviceID string, ts time.Time, values map[string]float64) error {
	if err := g.checkReading(deviceID, ts, values); err != nil {
		g.m.rejected.WithLabelValues("reading").Inc()
		return err
	}
	if _, err := g.spool.AddReading(ctx, deviceID, ts, values); err != nil {
		return fmt.Errorf("gateway %s: %w", g.cfg.ID, err)
	}
	g.seen(deviceID)
	g.signal()
	return nil
}

func (g *Gateway) checkReading(dev string, ts time.Time, values map[string]float64) error {
	var errs []error
	if err := device.ValidateID("device", dev); err != nil {
		errs = append(errs, err)
	}
	if ts.IsZero() || ts.UnixMilli() <= 0 {
		errs = append(errs, errors.New("ts: required"))
	}
	if len(values) == 0 {
		errs = append(errs, errors.New("values: at least one value"))
	}
	size := 0
	for k, v := range values {
		size += len(k) + 32
		if err := device.ValidateFieldName(k); err != nil {
			errs = append(errs, err)
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("values.%s: %g is not a finite number; omit a missing value", k, v))
			continue
		}
		if f, ok := device.Fields[k]; ok && (v < f.Min || v > f.Max) {
			errs = append(errs, fmt.Errorf("values.%s: %g is outside [%g, %g] %s", k, v, f.Min, f.Max, f.Unit))
		}
	}
	if budget := g.payloadBudget(dev, device.ChanTelemetry); size+200 > budget {
		errs = append(errs, fmt.Errorf("values: about %d bytes do not fit one message of at most %d bytes", size+200, budget))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reading of %s refused: %w", dev, err)
	}
	return nil
}

// Event commits an event of deviceID at ts (device time) to the spool and
// returns nil once it is on disk. typ is a protocol v1 event type; attrs
// values are strings, finite numbers or booleans.
//
// A fall or SOS event is also raised locally (on Config.LocalAlarmTopic and
// in the log at error level) at once when the uplink is down, or when its
// PUBACK has not come within Config.AlarmGrace: so within 1 s.
func (g *Gateway) Event(ctx context.Context, deviceID string, ts time.Time, typ device.EventType, attrs map[string]any) error {
	if err := g.checkEvent(deviceID, ts, typ, attrs); err != nil {
		g.m.rejected.WithLabelValues("event").Inc()
		return err
	}
	var e spool.Entry
	var err error
	if e, err = g.spool.AddEvent(ctx, deviceID, ts, typ, attrs); err != nil {
		if typ == device.EventFall || typ == device.EventSOS {
			// Not spooled: never lose it quietly. It is held as a local
			// alarm too (heartbeat, metric): the platform may never hear
			// of it, so only the gateway shows it.
			g.holdAlarm(deviceID, typ)
			g.raiseLocal(spool.Entry{Kind: spool.KindEvent, Device: deviceID, TS: ts.UnixMilli(), Type: typ, Attrs: attrs}, "spool_error")
		}
		return fmt.Errorf("gateway %s: %w", g.cfg.ID, err)
	}
	g.seen(deviceID)
	if typ == device.EventFall || typ == device.EventSOS {
		g.holdAlarm(deviceID, typ) // localalarm.go
		if g.client() == nil {
			go g.raiseLocal(e, "uplink_down")
		} else {
			p := &pendingAlarm{entry: e}
			g.mu.Lock()
			g.alarms[e.Pos] = p
			p.timer = time.AfterFunc(g.cfg.AlarmGrace, func() {
				g.mu.Lock()
				_, still := g.alarms[e.Pos]
				delete(g.alarms, e.Pos)
				g.mu.Unlock()
				if still {
					g.raiseLocal(e, "uplink_no_puback")
				}
			})
			g.mu.Unlock()
		}
	}
	g.signal()
	return nil
}

func (g *Gateway) checkEvent(dev string, ts time.Time, typ device.EventType, attrs map[string]any) error {
	var errs []error
	if err := device.ValidateID("device", dev); err != nil {
		errs = append(errs, err)
	}
	if ts.IsZero() || ts.UnixMilli() <= 0 {
		errs = append(errs, errors.New("ts: required"))
	}
	if !slices.Contains(device.EventTypes, typ) {
		errs = append(errs, fmt.Errorf("type: %q is not a protocol v1 event type", typ))
	}
	for k, v := range attrs {
		switch x := v.(type) {
		case string, bool, int, int32, int64, uint, uint32, uint64:
		case float32:
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				errs = append(errs, fmt.Errorf("attrs.%s: not finite", k))
			}
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				errs = append(errs, fmt.Errorf("attrs.%s: not finite", k))
			}
		default:
			errs = append(errs, fmt.Errorf("attrs.%s: %T; attributes are strings, numbers or booleans", k, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("event of %s refused: %w", dev, err)
	}
	return nil
}

// Fault records a source's fault for deviceID (a failed poll, an
// implausible value): counted in eldercare_gateway_source_faults_total and
// logged at warn level when it differs from the device's previous fault.
func (g *Gateway) Fault(deviceID string, err error) {
	g.m.faults.WithLabelValues(deviceID).Inc()
	msg := fmt.Sprint(err)
	g.mu.Lock()
	changed := g.faults[deviceID] != msg
	g.faults[deviceID] = msg
	g.mu.Unlock()
	if changed {
		g.log.Warn("source fault", "device", deviceID, "err", err)
	} else {
		g.log.Debug("source fault", "device", deviceID, "err", err)
	}
}

// seen marks activity of dev: it is online from now on.
func (g *Gateway) seen(dev string) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.device(dev)
	delete(g.faults, dev)
	d.last, d.heard = now, true
	if d.state != device.Online {
		d.state, d.dirty, d.at = device.Online, true, now
		g.log.Info("device online", "device", dev)
	}
}

// Availability records zigbee2mqtt's availability of deviceID (online:
// zigbee2mqtt heard from it within its own 10 min / 25 h check). While
// known it decides the device's state; offline is published as reason
// no_readings. It implements zigbee.Presence.
func (g *Gateway) Availability(deviceID string, online bool) {
	now := g.now()
	g.mu.Lock()
	d := g.device(deviceID)
	st := device.Offline
	if online {
		st = device.Online
	}
	d.avail = st
	changed := d.state != st
	if changed {
		d.state, d.dirty, d.at = st, true, now
	}
	g.mu.Unlock()
	if changed {
		g.log.Info("device "+string(st)+" (zigbee2mqtt availability)", "device", deviceID)
		g.signal()
	}
}

// LastSeen records the device's own last_seen (zigbee2mqtt's), reported in
// the heartbeat when it is later than the last message. It implements
// zigbee.Presence.
func (g *Gateway) LastSeen(deviceID string, t time.Time) {
	if now := g.now(); t.After(now) {
		t = now
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := g.device(deviceID); t.After(d.last) || !d.heard {
		d.last, d.heard = t, true
	}
}

// device returns the state of dev, adding an unlisted device. mu is held.
func (g *Gateway) device(dev string) *devState {
	d := g.devices[dev]
	if d == nil {
		g.log.Info("device not in the gateway config; watching it without an expected interval", "device", dev)
		d = &devState{Device: Device{ID: dev, Kind: device.Other}}
		g.devices[dev] = d
		g.order = append(g.order, dev)
		g.gwDirty = true
		if c := g.uplink; c != nil && c.IsConnectionOpen() {
			// Its commands (a call_acknowledged that stops its local
			// alarm) must reach it now, not only after a reconnect.
			go g.subscribeCommands(c, dev)
		}
	}
	return d
}

// subscribeCommands subscribes c to the cmd topic of dev, a device not in
// the config heard while connected (the next connection subscribes it with
// the others).
func (g *Gateway) subscribeCommands(c paho.Client, dev string) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	if err := mqttconn.Wait(ctx, c.Subscribe(g.topic(dev, device.ChanCommand), 1, g.onCommand), g.cfg.PublishTimeout, "subscribe to commands"); err != nil {
		g.log.Warn("commands of a device not in the gateway config will not arrive until the next reconnect", "device", dev, "err", err)
	}
}

// report is the heartbeat's report of every device whose state is known.
// mu is held.
func (g *Gateway) report(now time.Time) []device.DeviceReport {
	var out []device.DeviceReport
	for _, id := range g.order {
		d := g.devices[id]
		if d.state == "" {
			continue
		}
		r := device.DeviceReport{Device: id, State: d.state, Via: device.ViaReadings, LocalAlarm: g.active[id].Type}
		if a, ok := g.active[id]; ok {
			r.LocalAlarmSince = a.Since.UnixMilli()
		}
		if d.heard {
			r.LastSeen = d.last.UnixMilli()
		}
		if d.avail != "" {
			r.Via = device.ViaAvailability
			if d.avail == device.Online {
				r.LastSeen = now.UnixMilli() // zigbee2mqtt vouches for it now
			}
		}
		out = append(out, r)
	}
	return out
}

// checkHealth marks offline (reason no_readings) every device with an
// expected interval that sent nothing within OfflineAfterIntervals of it.
// A device whose zigbee2mqtt availability is known is left to it.
func (g *Gateway) checkHealth(now time.Time) {
	g.mu.Lock()
	var changed []string
	for _, id := range g.order {
		d := g.devices[id]
		if d.Interval <= 0 || d.state == device.Offline || d.avail != "" {
			continue
		}
		if now.Sub(d.last) > OfflineAfterIntervals*d.Interval {
			d.state, d.dirty, d.at = device.Offline, true, now
			changed = append(changed, id)
		}
	}
	g.mu.Unlock()
	for _, id := range changed {
		g.log.Warn("device offline: no readings", "device", id, "within", fmt.Sprintf("%d intervals", OfflineAfterIntervals))
		g.signal()
	}
}

// DeviceState returns the state of dev as published ("" when not decided
// yet: no reading and not yet timed out).
func (g *Gateway) DeviceState(dev string) device.State {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := g.devices[dev]; d != nil {
		return d.state
	}
	return ""
}

func (g *Gateway) deviceIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.order)
}

// Run connects the uplink (retrying until ctx ends), drains the spool,
// publishes statuses, watches device health and the clock, until ctx is
// cancelled. Then it publishes the gateway's offline/shutdown status and
// disconnects. It returns nil on cancellation.
func (g *Gateway) Run(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	if g.cfg.LocalMQTTURL != "" {
		eg.Go(func() error { g.connectLocal(ctx); return nil })
	}
	eg.Go(func() error { g.connectUplink(ctx); return nil })
	eg.Go(func() error { return g.drain(ctx) })
	eg.Go(func() error {
		t := time.NewTicker(g.cfg.HealthInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				g.checkHealth(g.now())
			}
		}
	})
	eg.Go(func() error {
		t := time.NewTicker(g.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				g.mu.Lock()
				g.gwDirty = true
				g.mu.Unlock()
				g.signal()
			}
		}
	})
	if g.cfg.NTPServer != "" {
		eg.Go(func() error { g.watchClock(ctx); return nil })
	}
	err := eg.Wait()
	g.shutdown()
	return err
}

func (g *Gateway) statusPayload(st device.Status) []byte {
	st.V = device.Version
	b, _ := json.Marshal(st)
	return b
}

func (g *Gateway) connectUplink(ctx context.Context) {
	will := g.statusPayload(device.Status{Device: g.cfg.ID, TS: g.now().UnixMilli(), State: device.Unknown,
		Reason: device.ReasonGatewayLost, Devices: g.deviceIDs()})
	backoff := time.Second
	for ctx.Err() == nil {
		c, err := mqttconn.Connect(ctx, mqttconn.Options{
			URL: g.cfg.MQTTURL, ClientID: g.cfg.ClientID, CleanSession: false,
			TLSCAFile: g.cfg.TLSCAFile, TLSCertFile: g.cfg.TLSCertFile, TLSKeyFile: g.cfg.TLSKeyFile, TLSServerName: g.cfg.TLSServerName,
			WillTopic: g.topic(g.cfg.ID, device.ChanStatus), WillPayload: will,
			OnConnect:      g.onConnect,
			DefaultHandler: g.onCommand,
			// The spool is the store: paho keeps no copy and never resends
			// on its own after a reconnect; the drain resends what was not
			// acknowledged.
			Store:          mqttconn.NoStore{},
			ConnectTimeout: g.cfg.PublishTimeout,
			Logger:         g.log,
		})
		if err == nil {
			g.mu.Lock()
			g.uplink = c
			g.mu.Unlock()
			g.signal()
			return
		}
		g.log.Warn("uplink connect failed; spooling and retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// onConnect runs after every (re)connect: subscriptions again, statuses
// again.
func (g *Gateway) onConnect(c paho.Client) {
	g.m.connects.Inc()
	g.mu.Lock()
	g.connGen++
	g.connAt = time.Now()
	g.gwDirty = true
	g.booted = false
	for _, d := range g.devices {
		if d.state != "" {
			d.dirty = true
		}
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	filters := map[string]byte{g.topic(g.cfg.ID, device.ChanCommand): 1}
	for _, id := range g.deviceIDs() {
		filters[g.topic(id, device.ChanCommand)] = 1
	}
	if err := mqttconn.Wait(ctx, c.SubscribeMultiple(filters, g.onCommand), g.cfg.PublishTimeout, "subscribe to commands"); err != nil {
		g.log.Error("uplink subscribe failed; commands will not arrive until the next reconnect", "err", err)
	}
	g.log.Info("uplink connected", "broker_client", g.cfg.ClientID)
	g.signal()
}

// onCommand carries a downlink command for the gateway or a device behind
// it and answers on the target's cmd/ack topic (see commands.go).
func (g *Gateway) onCommand(c paho.Client, m paho.Message) {
	go g.command(c, m.Topic(), m.Payload())
}

func (g *Gateway) connectLocal(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: g.cfg.LocalMQTTURL, ClientID: g.cfg.ClientID + "-local",
			CleanSession: true, ConnectTimeout: 5 * time.Second, Logger: g.log})
		if err == nil {
			g.mu.Lock()
			g.local = c
			g.mu.Unlock()
			return
		}
		g.log.Warn("local broker connect failed; local alarms go to the log only until it answers", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// LocalAlarm is the payload published on the local alarm topic for a station
// sounder or display.
//
//	{"v":1,"gateway":"gw-7","site":"home-7","device":"fd-7","type":"fall",
//	 "ts":1764400000000,"boot":1764400000,"seq":3,"reason":"uplink_down"}
type LocalAlarm struct {
	V       int              `json:"v"`
	Gateway string           `json:"gateway"`
	Site    string           `json:"site"`
	Device  string           `json:"device"`
	Type    device.EventType `json:"type"`
	// TS is the device time of the event in ms since the epoch.
	TS    int64          `json:"ts"`
	Boot  uint32         `json:"boot,omitempty"`
	Seq   uint64         `json:"seq,omitempty"`
	Attrs map[string]any `json:"attrs,omitempty"`
	// Reason is uplink_down, uplink_no_puback or spool_error; or
	// call_acknowledged when the platform acknowledged the call and the
	// gateway's local alarm for the device stopped (TS is then the time
	// it stopped; Attrs the command's params: alert, type, by).
	Reason string `json:"reason"`
}

func (g *Gateway) raiseLocal(e spool.Entry, reason string) {
	a := LocalAlarm{V: device.Version, Gateway: g.cfg.ID, Site: g.cfg.Site, Device: e.Device, Type: e.Type, TS: e.TS,
		Boot: e.Boot, Seq: e.Seq, Attrs: e.Attrs, Reason: reason}
	g.log.Error("LOCAL ALARM: "+string(e.Type)+" not delivered to the platform", "device", e.Device, "type", e.Type,
		"ts", time.UnixMilli(e.TS).UTC(), "reason", reason, "topic", g.cfg.LocalAlarmTopic)
	g.mu.Lock()
	c := g.local
	g.mu.Unlock()
	result := "log_only"
	if c != nil && c.IsConnectionOpen() {
		b, _ := json.Marshal(a)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := mqttconn.Wait(ctx, c.Publish(g.cfg.LocalAlarmTopic, 1, false, b), time.Second, "publish local alarm")
		cancel()
		if err == nil {
			result = "published"
		} else {
			g.log.Error("local alarm not published on the local broker", "device", e.Device, "err", err)
		}
	}
	g.m.localAlarms.WithLabelValues(result).Inc()
}

func (g *Gateway) shutdown() {
	g.mu.Lock()
	c, l := g.uplink, g.local
	for _, p := range g.alarms {
		p.timer.Stop()
	}
	g.mu.Unlock()
	if c != nil {
		if c.IsConnectionOpen() {
			b := g.statusPayload(device.Status{Device: g.cfg.ID, TS: g.now().UnixMilli(), State: device.Offline,
				Reason: device.ReasonShutdown, Kind: device.Gateway, Devices: g.deviceIDs()})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := mqttconn.Wait(ctx, c.Publish(g.topic(g.cfg.ID, device.ChanStatus), 1, true, b), 2*time.Second, "publish shutdown status"); err != nil {
				g.log.Warn("shutdown status not delivered", "err", err)
			}
			cancel()
		}
		c.Disconnect(250)
	}
	if l != nil {
		l.Disconnect(250)
	}
}
