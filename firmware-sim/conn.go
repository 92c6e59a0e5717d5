package firmwaresim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
)

// OnEnd says how a simulated device ends its run.
type OnEnd string

// The ways a simulated device can end.
const (
	// EndClean publishes the retained status {offline, shutdown} and sends
	// DISCONNECT: the platform must raise no offline alert.
	EndClean OnEnd = "clean"
	// EndSilent stops publishing but keeps the connection open until the
	// run's context is cancelled (the process is killed): the platform must
	// raise an offline alert once its no-data timeout passes. On
	// cancellation the connection is closed without DISCONNECT.
	EndSilent OnEnd = "silent"
	// EndDrop closes the network connection without DISCONNECT, so the
	// broker publishes the device's last will {offline, last_will}.
	EndDrop OnEnd = "drop"
)

// ParseOnEnd parses "clean", "silent" or "drop"; "" is EndClean.
func ParseOnEnd(s string) (OnEnd, error) {
	switch OnEnd(s) {
	case "", EndClean:
		return EndClean, nil
	case EndSilent, EndDrop:
		return OnEnd(s), nil
	}
	return "", fmt.Errorf("on-end %q: want clean, silent or drop", s)
}

// DefaultPublishTimeout bounds the wait for a PUBACK (or CONNACK) when
// DeviceConfig.PublishTimeout is zero.
const DefaultPublishTimeout = 10 * time.Second

// DeviceConfig is what every simulated device needs to connect.
type DeviceConfig struct {
	// MQTTURL is the broker: tcp://host:1883 (or mqtt://), ssl://host:8883
	// (or tls://, mqtts://), ws://host/path or wss://host/path. User and
	// password may be given in the URL.
	MQTTURL string
	// Root is the first topic level; "" is device.DefaultRoot.
	Root string
	// Site and Device are the topic levels {site} and {device}.
	Site, Device string
	// Boot is the boot counter sent in every payload; 0 means the current
	// Unix time in seconds, so that a restart always has a higher boot.
	Boot uint32
	// OnEnd is how the run ends; "" is EndClean.
	OnEnd OnEnd
	// PublishTimeout bounds each wait for the broker; 0 is
	// DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Logger receives progress and problems; nil is slog.Default().
	Logger *slog.Logger
	// Now is the wall clock used for timestamps and pacing; nil is time.Now.
	Now func() time.Time
}

// Validate reports every problem of c.
func (c DeviceConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.MQTTURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("mqtt url %q: want tcp://host:port, ssl://host:port or ws://host:port/path", c.MQTTURL))
	} else if _, ok := schemes[u.Scheme]; !ok {
		errs = append(errs, fmt.Errorf("mqtt url %q: scheme %q is not tcp, mqtt, ssl, tls, mqtts, ws or wss", u.Redacted(), u.Scheme))
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		errs = append(errs, fmt.Errorf("root: %w", err))
	}
	if err := device.ValidateID("site", c.Site); err != nil {
		errs = append(errs, fmt.Errorf("site: %w", err))
	}
	if err := device.ValidateID("device", c.Device); err != nil {
		errs = append(errs, fmt.Errorf("device: %w", err))
	}
	if _, err := ParseOnEnd(string(c.OnEnd)); err != nil {
		errs = append(errs, err)
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("publish timeout %s must not be negative", c.PublishTimeout))
	}
	return errors.Join(errs...)
}

func (c DeviceConfig) withDefaults() DeviceConfig {
	if c.Root == "" {
		c.Root = device.DefaultRoot
	}
	if c.OnEnd == "" {
		c.OnEnd = EndClean
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Boot == 0 {
		c.Boot = uint32(c.Now().Unix())
	}
	return c
}

var schemes = map[string]string{"tcp": "tcp", "mqtt": "tcp", "ssl": "ssl", "tls": "ssl", "mqtts": "ssl", "ws": "ws", "wss": "wss"}

// Conn is one simulated device's MQTT connection. It numbers messages:
// message ids, reading seq and event seq each start at 1 per boot and
// increase by one per message. A Conn is safe for concurrent use.
type Conn struct {
	cfg    DeviceConfig
	kind   device.Kind
	client paho.Client
	log    *slog.Logger

	mu      sync.Mutex
	netConn net.Conn
	dropped bool
	id      uint64
	seq     uint64
	evSeq   uint64
}

// Connect opens the device's own MQTT connection (client id
// "sim-<device>-<random>", clean session, last will = retained
// {offline, last_will} on its status topic) and publishes the retained
// status {online, boot, kind}. It waits at most cfg.PublishTimeout for the
// CONNACK and for each PUBACK.
func Connect(ctx context.Context, cfg DeviceConfig, kind device.Kind) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connect simulated %s %s: %w", kind, cfg.Device, err)
	}
	cfg = cfg.withDefaults()
	c := &Conn{cfg: cfg, kind: kind, log: cfg.Logger.With("device", cfg.Device, "kind", string(kind))}
	u, _ := url.Parse(cfg.MQTTURL)
	broker := *u
	broker.User = nil
	broker.Scheme = schemes[u.Scheme]
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	will, err := json.Marshal(device.Status{V: device.Version, Device: cfg.Device, TS: cfg.Now().UnixMilli(), State: device.Offline, Reason: device.ReasonLastWill, Kind: kind})
	if err != nil {
		return nil, fmt.Errorf("encode last will of %s: %w", cfg.Device, err)
	}
	opts := paho.NewClientOptions().
		AddBroker(broker.String()).
		SetClientID("sim-"+cfg.Device+"-"+hex.EncodeToString(rnd[:])).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(5*time.Second).
		SetConnectTimeout(cfg.PublishTimeout).
		SetWriteTimeout(cfg.PublishTimeout).
		SetKeepAlive(30*time.Second).
		SetBinaryWill(c.topic(device.ChanStatus), will, 1, true).
		SetCustomOpenConnectionFn(c.open).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.mu.Lock()
			dropped := c.dropped
			c.mu.Unlock()
			if !dropped {
				c.log.Warn("mqtt connection lost; reconnecting", "err", err)
			}
		})
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	c.client = paho.NewClient(opts)
	if err := c.wait(ctx, c.client.Connect(), "connect to "+u.Redacted()); err != nil {
		c.client.Disconnect(0)
		return nil, fmt.Errorf("simulated %s %s: %w", kind, cfg.Device, err)
	}
	if err := c.PublishStatus(ctx, device.Online, device.ReasonBoot); err != nil {
		c.client.Disconnect(0)
		return nil, err
	}
	c.log.Info("simulated device online", "boot", cfg.Boot, "topic", c.topic(device.ChanStatus))
	return c, nil
}

// open dials the broker for paho and keeps the connection, so that EndDrop
// can close it without DISCONNECT. After a drop it refuses to reconnect.
func (c *Conn) open(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	c.mu.Lock()
	dropped := c.dropped
	c.mu.Unlock()
	if dropped {
		return nil, errors.New("connection dropped on purpose")
	}
	timeout := o.ConnectTimeout
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	switch u.Scheme {
	case "tcp":
		conn, err = d.Dial("tcp", u.Host)
	case "ssl":
		tc := o.TLSConfig
		if tc == nil {
			tc = &tls.Config{}
		}
		conn, err = tls.DialWithDialer(d, "tcp", u.Host, tc)
	case "ws", "wss":
		conn, err = paho.NewWebsocket(u.String(), o.TLSConfig, timeout, o.HTTPHeaders, o.WebsocketOptions)
	default:
		err = fmt.Errorf("scheme %q not supported", u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.netConn = conn
	c.mu.Unlock()
	return conn, nil
}

// Device returns the device id.
func (c *Conn) Device() string { return c.cfg.Device }

// Boot returns the boot counter in use.
func (c *Conn) Boot() uint32 { return c.cfg.Boot }

func (c *Conn) topic(ch device.Channel) string {
	return device.Topic{Root: c.cfg.Root, Site: c.cfg.Site, Device: c.cfg.Device, Channel: ch}.String()
}

// wait waits for tok at most PublishTimeout, or until ctx is done.
func (c *Conn) wait(ctx context.Context, tok paho.Token, what string) error {
	timer := time.NewTimer(c.cfg.PublishTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("%s: no answer from the broker within %s", what, c.cfg.PublishTimeout)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

func (c *Conn) publish(ctx context.Context, ch device.Channel, retained bool, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s of %s: %w", ch, c.cfg.Device, err)
	}
	topic := c.topic(ch)
	return c.wait(ctx, c.client.Publish(topic, 1, retained, b), "publish "+topic)
}

// PublishStatus publishes the retained status {state, reason, kind} now.
func (c *Conn) PublishStatus(ctx context.Context, state device.State, reason string) error {
	return c.publish(ctx, device.ChanStatus, true, device.Status{V: device.Version, Device: c.cfg.Device, TS: c.cfg.Now().UnixMilli(), State: state, Reason: reason, Kind: c.kind})
}

// PublishReading publishes one reading stamped ts (device time) with the
// next message id and seq. values must be non-empty, finite, and use the
// field names of device.Fields (units in the name).
func (c *Conn) PublishReading(ctx context.Context, ts time.Time, values map[string]float64) error {
	if len(values) == 0 {
		return fmt.Errorf("publish reading of %s: no values", c.cfg.Device)
	}
	c.mu.Lock()
	c.id++
	c.seq++
	t := device.Telemetry{V: device.Version, Device: c.cfg.Device, Boot: c.cfg.Boot, ID: c.id, Seq: c.seq, TS: ts.UnixMilli(), Values: values}
	c.mu.Unlock()
	return c.publish(ctx, device.ChanTelemetry, false, t)
}

// PublishEvent publishes one event stamped ts (device time) with the next
// message id and event seq. attrs holds strings, finite numbers or booleans.
func (c *Conn) PublishEvent(ctx context.Context, ts time.Time, typ device.EventType, attrs map[string]any) error {
	c.mu.Lock()
	c.id++
	c.evSeq++
	e := device.Event{V: device.Version, Device: c.cfg.Device, Boot: c.cfg.Boot, ID: c.id, Seq: c.evSeq, TS: ts.UnixMilli(), Type: typ, Attrs: attrs}
	c.mu.Unlock()
	c.log.Info("event", "type", string(typ), "attrs", attrs, "ts", ts.UTC().Format(time.RFC3339Nano))
	return c.publish(ctx, device.ChanEvent, false, e)
}

// End ends the connection as mode says (see OnEnd). For EndSilent it
// blocks until ctx is done. EndClean publishes its shutdown status even if
// ctx is already cancelled (bounded by PublishTimeout).
func (c *Conn) End(ctx context.Context, mode OnEnd) error {
	switch mode {
	case EndSilent:
		if ctx.Err() == nil {
			c.log.Info("silent end: publishing nothing more, keeping the connection open until stopped")
			<-ctx.Done()
		}
		c.Drop()
		return nil
	case EndDrop:
		c.log.Info("drop end: closing the connection without DISCONNECT; the broker publishes the last will")
		c.Drop()
		return nil
	default:
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PublishTimeout)
		defer cancel()
		err := c.PublishStatus(sctx, device.Offline, device.ReasonShutdown)
		c.client.Disconnect(250)
		if err != nil {
			return fmt.Errorf("clean end of %s: %w", c.cfg.Device, err)
		}
		c.log.Info("simulated device offline (shutdown)")
		return nil
	}
}

// Drop closes the network connection without sending DISCONNECT, like a
// device losing power, and stops reconnecting.
func (c *Conn) Drop() {
	c.mu.Lock()
	c.dropped = true
	conn := c.netConn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	c.client.Disconnect(0)
}
