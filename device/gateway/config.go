package gateway

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Defaults of Config.
const (
	// DefaultMaxMessageBytes is the largest MQTT PUBLISH packet the uplink
	// sends: 256 KiB, the protocol v1 payload limit (docs/protocol.md).
	DefaultMaxMessageBytes = 256 << 10
	// DefaultPublishTimeout bounds every wait for a PUBACK or SUBACK.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultInFlight is how many messages may await their PUBACK at once.
	DefaultInFlight = 16
	// DefaultAlarmGrace is how long a fall or SOS event may wait for its
	// PUBACK while the uplink looks connected before it is also raised
	// locally; with the alarm's own publish it stays within 1 s.
	DefaultAlarmGrace = 500 * time.Millisecond
	// DefaultHealthInterval is how often device health is checked.
	DefaultHealthInterval = time.Second
	// DefaultClockCheckInterval is how often the clock is compared with NTP.
	DefaultClockCheckInterval = 10 * time.Minute
	// MaxClockSkew: a larger skew is logged as a warning. Protocol v1 rejects
	// device timestamps more than 5 min ahead; 2 s keeps sustain windows
	// (measured in device time) honest.
	MaxClockSkew = 2 * time.Second
	// OfflineAfterIntervals: a device with no reading within this many
	// expected intervals is reported offline with reason no_readings.
	OfflineAfterIntervals = 3
	// protocolMaxBatch is the most readings in one batch (protocol v1).
	protocolMaxBatch = 5000
)

// Device is one device behind the gateway.
type Device struct {
	// ID is the device id (one topic level, [A-Za-z0-9_.-]{1,64}).
	ID   string
	Kind device.Kind
	// Interval is how often the device is expected to send a reading (its
	// poll interval for Modbus). With no reading or event within
	// OfflineAfterIntervals x Interval the device is offline (reason
	// no_readings). 0: a device that reports only on change or only
	// events (zigbee2mqtt sensors, SOS buttons): never timed out by the
	// gateway; its liveness comes from zigbee2mqtt's availability when
	// given, and the platform applies the device's registry interval
	// (10 min mains, 25 h battery) to the last_seen the heartbeat reports.
	Interval time.Duration
}

// Config configures a Gateway.
type Config struct {
	// ID is the gateway's own device id; Site the site it serves.
	ID, Site string
	// Root is the topic root; "" = device.DefaultRoot.
	Root string
	// MQTTURL is the platform broker (tcp://, ssl://, ws://; user:password@
	// allowed). ClientID defaults to ID.
	MQTTURL, ClientID string
	// TLS of the uplink for ssl:// URLs (see internal/mqttconn.Options):
	// the CA that signed the broker's certificate (PEM file; "" = system
	// pool), an optional client certificate and key, and the name checked
	// in the broker's certificate ("" = the URL's host).
	TLSCAFile, TLSCertFile, TLSKeyFile, TLSServerName string
	// LocalMQTTURL is the home's or station's own broker for local alarms
	// (optional; "" = local alarms go to the log only).
	LocalMQTTURL string
	// LocalAlarmTopic is where local alarms are published; "" =
	// "<root>/local/alarm".
	LocalAlarmTopic string
	// Devices are the devices behind the gateway, listed in its status and
	// watched for readings. A device a source reports that is not listed
	// is added with Interval 0 (logged once).
	Devices []Device
	// MaxMessageBytes bounds a PUBLISH packet (topic + payload + header);
	// set it to the broker's limit when that is lower than 256 KiB (e.g.
	// Mosquitto's max_packet_size). 0 = DefaultMaxMessageBytes.
	MaxMessageBytes int
	// PublishTimeout bounds each publish and subscribe; 0 = default 10 s.
	PublishTimeout time.Duration
	// InFlight bounds messages awaiting PUBACK; 0 = 16.
	InFlight int
	// AlarmGrace: see DefaultAlarmGrace; 0 = 500 ms.
	AlarmGrace time.Duration
	// HealthInterval: how often device health is checked; 0 = 1 s.
	HealthInterval time.Duration
	// HeartbeatInterval: how often the gateway publishes its heartbeat
	// (its status with reason heartbeat, the devices behind it and what it
	// knows of each; docs/protocol.md); 0 = device.HeartbeatInterval (30 s).
	// The platform takes the gateway for lost after three missed.
	HeartbeatInterval time.Duration
	// NTPServer (host:port) checks the gateway clock; "" = no check.
	NTPServer string
	// ClockCheckInterval; 0 = 10 min.
	ClockCheckInterval time.Duration
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if err := device.ValidateID("gateway id", c.ID); err != nil {
		errs = append(errs, err)
	}
	if err := device.ValidateID("site", c.Site); err != nil {
		errs = append(errs, err)
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		errs = append(errs, err)
	}
	if c.MQTTURL == "" {
		errs = append(errs, errors.New("mqtt url: required"))
	}
	if c.MaxMessageBytes != 0 && (c.MaxMessageBytes < 1024 || c.MaxMessageBytes > DefaultMaxMessageBytes+1024) {
		errs = append(errs, fmt.Errorf("max message bytes: %d is outside [1024, %d]", c.MaxMessageBytes, DefaultMaxMessageBytes+1024))
	}
	if c.LocalAlarmTopic != "" && strings.ContainsAny(c.LocalAlarmTopic, "+#") {
		errs = append(errs, fmt.Errorf("local alarm topic %q: no wildcards", c.LocalAlarmTopic))
	}
	for name, d := range map[string]time.Duration{"publish timeout": c.PublishTimeout, "alarm grace": c.AlarmGrace,
		"health interval": c.HealthInterval, "clock check interval": c.ClockCheckInterval, "heartbeat interval": c.HeartbeatInterval} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", name, d))
		}
	}
	if c.InFlight < 0 || c.InFlight > 65535 {
		errs = append(errs, fmt.Errorf("in flight: %d is outside [0, 65535]", c.InFlight))
	}
	seen := map[string]bool{c.ID: true}
	for i, d := range c.Devices {
		if err := device.ValidateID(fmt.Sprintf("devices[%d].id", i), d.ID); err != nil {
			errs = append(errs, err)
		} else if seen[d.ID] {
			errs = append(errs, fmt.Errorf("devices[%d].id: %q listed twice (or is the gateway's own id)", i, d.ID))
		}
		seen[d.ID] = true
		if d.Kind != "" && !d.Kind.Valid() {
			errs = append(errs, fmt.Errorf("devices[%d].kind: %q is not a known kind", i, d.Kind))
		}
		if d.Interval < 0 {
			errs = append(errs, fmt.Errorf("devices[%d].interval: %s is negative", i, d.Interval))
		}
	}
	return errors.Join(errs...)
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Root == "" {
		c.Root = device.DefaultRoot
	}
	if c.ClientID == "" {
		c.ClientID = c.ID
	}
	if c.LocalAlarmTopic == "" {
		c.LocalAlarmTopic = c.Root + "/local/alarm"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.AlarmGrace == 0 {
		c.AlarmGrace = DefaultAlarmGrace
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = device.HeartbeatInterval
	}
	if c.ClockCheckInterval == 0 {
		c.ClockCheckInterval = DefaultClockCheckInterval
	}
	return c
}
