package ingest

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Defaults of Config. A zero field of Config takes these values in
// [Config.WithDefaults].
const (
	DefaultGroup           = "ingest"
	DefaultDatabase        = "eldercare"
	DefaultRetentionPolicy = "autogen"
	DefaultBatchSize       = 5000
	DefaultFlushInterval   = 200 * time.Millisecond
	DefaultMaxInFlight     = 5000
)

// Config configures one ingest service.
type Config struct {
	// MQTTURL is the broker, e.g. "tcp://127.0.0.1:1883" (see mqttconn.Options.URL).
	MQTTURL string
	// Root is the first topic level(s); "" means device.DefaultRoot.
	Root string
	// ClientID is the MQTT client id. The session is persistent, so it must be
	// stable across restarts and unique per replica. "" means
	// "eldercare-ingest-<hostname>".
	ClientID string
	// Group is the shared-subscription group; replicas with the same group
	// share the load. "" means "ingest".
	Group string

	// InfluxURL is the InfluxDB 1.8 HTTP endpoint, e.g. "http://127.0.0.1:8086".
	InfluxURL string
	// InfluxToken is sent as "Authorization: Token <InfluxToken>"; for
	// InfluxDB 1.8 with auth enabled it is "user:password". Secret: String
	// and log output never show it.
	InfluxToken Secret
	// InfluxDatabase is created on start if missing. "" means "eldercare".
	InfluxDatabase string
	// RetentionPolicy is the policy written into; the v2 bucket is
	// "InfluxDatabase/RetentionPolicy". "" means "autogen".
	RetentionPolicy string

	// BatchSize is the number of points that triggers a write. 0 means 5000.
	BatchSize int
	// FlushInterval is the longest a point waits before its batch is
	// written. 0 means 200 ms.
	FlushInterval time.Duration
	// MaxInFlight bounds the MQTT messages received but not yet
	// acknowledged; when it is reached ingest stops taking messages and the
	// broker queues them. 0 means 5000.
	MaxInFlight int

	// Limits bound what a payload may carry (size, batch length, clock
	// skew). The zero value means device.DefaultLimits.
	Limits device.Limits
}

// Secret is a string that never prints: String, GoString, Format and
// slog all render it as "[redacted]" (or "" when empty).
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer, so %#v redacts too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// Format implements fmt.Formatter, so %v, %s, %q and %x all redact.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// MarshalText redacts the secret in JSON and slog output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Root == "" {
		c.Root = device.DefaultRoot
	}
	if c.ClientID == "" {
		host, _ := os.Hostname()
		c.ClientID = "eldercare-ingest-" + sanitizeClientID(host)
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.InfluxDatabase == "" {
		c.InfluxDatabase = DefaultDatabase
	}
	if c.RetentionPolicy == "" {
		c.RetentionPolicy = DefaultRetentionPolicy
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	return c
}

func sanitizeClientID(host string) string {
	if host == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range host {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Bucket returns the v2 bucket name "database/retention-policy".
func (c Config) Bucket() string {
	c = c.WithDefaults()
	return c.InfluxDatabase + "/" + c.RetentionPolicy
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not contact the broker or InfluxDB.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if err := checkURL(c.MQTTURL, "tcp", "mqtt", "ssl", "mqtts", "ws", "wss"); err != nil {
		errs = append(errs, fmt.Errorf("MQTTURL: %w", err))
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		errs = append(errs, fmt.Errorf("Root: %w", err))
	}
	if len(c.ClientID) > 128 || strings.ContainsAny(c.ClientID, "+#/ ") {
		errs = append(errs, fmt.Errorf("ClientID %q: at most 128 characters, no '+', '#', '/' or spaces", c.ClientID))
	}
	if c.Group == "" || strings.ContainsAny(c.Group, "+#/ ") {
		errs = append(errs, fmt.Errorf("Group %q: one topic level without '+', '#', '/' or spaces", c.Group))
	}
	if err := checkURL(c.InfluxURL, "http", "https"); err != nil {
		errs = append(errs, fmt.Errorf("InfluxURL: %w", err))
	}
	if strings.ContainsAny(c.InfluxDatabase, "/\n") {
		errs = append(errs, fmt.Errorf("InfluxDatabase %q: no '/' or newline (the bucket is database/retention-policy)", c.InfluxDatabase))
	}
	if strings.ContainsAny(c.RetentionPolicy, "/\n") {
		errs = append(errs, fmt.Errorf("RetentionPolicy %q: no '/' or newline", c.RetentionPolicy))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("BatchSize %d: at least 1 point", c.BatchSize))
	}
	if c.FlushInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("FlushInterval %s: at least 1ms", c.FlushInterval))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 65535 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d: between 1 and 65535 messages (MQTT packet ids are 16 bits)", c.MaxInFlight))
	}
	if c.Limits.MaxPayload < 0 || c.Limits.MaxReadings < 0 || c.Limits.MaxFuture < 0 || c.Limits.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("Limits %+v: negative limit (0 means the default)", c.Limits))
	}
	return errors.Join(errs...)
}

func checkURL(raw string, schemes ...string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%q: want %s://host:port", redactURL(u), strings.Join(schemes, "|"))
}

func redactURL(u *url.URL) string { return u.Redacted() }
