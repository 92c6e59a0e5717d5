package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/internal/secret"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// Defaults of Config. A zero field of Config takes these values in
// [Config.WithDefaults].
const (
	DefaultGroup           = "ingest"
	DefaultDatabase        = "eldercare"
	DefaultRetentionPolicy = "autogen"
	DefaultBatchSize       = 5000
	DefaultFlushInterval   = 200 * time.Millisecond
	DefaultMaxInFlight     = 10000
	DefaultWriters         = 4
	DefaultSkew            = 5 * time.Minute
	DefaultDedupWindow     = 100_000
	DefaultReadDelay       = 5 * time.Millisecond
	// DefaultEnvironmentPolicy and DefaultEnvironmentRetention: readings of
	// env_sensor devices (room temperature, humidity, air quality) are kept
	// 90 days; vitals and events go to the database's default policy
	// (autogen, kept forever: they are part of the care record).
	DefaultEnvironmentPolicy    = "environment"
	DefaultEnvironmentRetention = 90 * 24 * time.Hour
)

// Group is a measurement group with its own retention policy.
type Group string

// The measurement groups: readings of env_sensor devices are environment,
// every other reading is vitals, every event is events.
const (
	GroupVitals      Group = "vitals"
	GroupEnvironment Group = "environment"
	GroupEvents      Group = "events"
)

// Groups lists every group in a stable order.
var Groups = []Group{GroupVitals, GroupEnvironment, GroupEvents}

// Retention is where one group is written and how long InfluxDB keeps it.
type Retention struct {
	// Policy is the InfluxDB 1.8 retention policy name; "" means
	// Config.RetentionPolicy. The v2 bucket is "database/Policy".
	Policy string
	// Duration is how long the policy keeps data: 0 means forever (INF),
	// otherwise at least 1h in whole seconds. Ingest creates or alters the
	// policy with InfluxQL at start (influxd.CreateDatabase), so the last
	// replica to start decides.
	Duration time.Duration
}

// DeadLetterSink stores what ingest refuses: a malformed message, or a
// point InfluxDB refused. [DeadLetters] is one.
type DeadLetterSink interface {
	AddDeadLetter(ctx context.Context, d DeadLetter) error
}

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
	// LeaveGroupOnStop makes Run unsubscribe from the shared subscription
	// when ctx is cancelled (a replica retired or restarted on purpose),
	// before it writes what it holds and disconnects: the broker then sends
	// new messages to the other replicas of the group instead of queueing
	// the stopped replica's share in its persistent session until it
	// returns. With a single replica keep it false: with no member left in
	// the group, Mosquitto drops the messages published while it is away.
	// Messages already delivered to the replica and not yet written (e.g.
	// while InfluxDB is down) stay in its session either way.
	LeaveGroupOnStop bool
	// Unshared subscribes to the plain filters instead of the shared
	// subscription $share/Group/...: for a single replica only (a second
	// replica would store every message too, and neither would share the
	// load). A plain subscription keeps the messages published while the
	// replica is away in its persistent session, where Mosquitto drops a
	// shared subscription's messages when no member of the group is
	// connected; docs/benchmarks.md compares the broker's CPU for both.
	// LeaveGroupOnStop does nothing when it is set.
	Unshared bool

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
	// MaxInFlight is the most MQTT messages received but not yet
	// acknowledged that ingest expects to hold. The broker's in-flight
	// window (Mosquitto max_inflight_messages) enforces it and must be at
	// most this; ingest logs a warning when it holds more (it never blocks
	// paho's receive loop to push back itself). 0 means 10000.
	MaxInFlight int

	// Writers is the number of batches written to InfluxDB at once. 0 means 4:
	// on a loaded 2-core machine InfluxDB 1.8 answers a 5000-point write in
	// 0.2-0.5 s while mostly idle, so throughput is the in-flight window over
	// that latency, and parallel writes overlap it (docs/benchmarks.md).
	Writers int
	// ReadDelay is how long the MQTT connection lets messages gather
	// while they flow (mqttconn.Options.ReadDelay): on Linux it reads once
	// 32 KiB are queued or ReadDelay after its last read, elsewhere it
	// sleeps ReadDelay before a read that follows a short one. Batches wait
	// FlushInterval anyway, and gathering saves system calls and wake-ups.
	// 0 means 5 ms; a negative value reads every message at once.
	ReadDelay time.Duration
	// Skew is how far a reading's device time may be from its receive time
	// before the point is flagged with field skewed=true and counted in
	// eldercare_ingest_skewed_total. 0 means 5 min. Readings more than
	// Limits.MaxFuture ahead, or Limits.MaxAge behind, are rejected outright
	// (dead letters with reason "future" or "too_old").
	Skew time.Duration
	// DedupWindow is how many recent (device, boot, id) keys are remembered
	// to count redelivered messages (eldercare_ingest_redelivered_total). It
	// only counts: InfluxDB's overwrite of identical points dedups. 0 means
	// 100000.
	DedupWindow int
	// Retention places each measurement group; a zero field means: vitals
	// and events in RetentionPolicy (kept as it is, autogen = forever),
	// environment in "environment" kept 90 days.
	Retention map[Group]Retention
	// DeadLetters stores refused messages and points; nil means they are
	// only logged and counted.
	DeadLetters DeadLetterSink `json:"-"`

	// Limits bound what a payload may carry (size, batch length, clock
	// skew). The zero value means device.DefaultLimits.
	Limits device.Limits

	// Plain lists the speed tricks that are switched back to the plain
	// library path (docs/speed.md): PlainPUBACK, PlainJSON,
	// PlainReceive, PlainLineProtocol, or PlainAll for all four. Empty (the default)
	// keeps every trick. Results are the same either way; only the CPU
	// cost per reading differs.
	Plain []string
}

// The names of Config.Plain (flag --plain).
const (
	// PlainPUBACK: paho's own connection (no read buffer, no ReadDelay)
	// and paho's Message.Ack per message, instead of mqttconn's buffered
	// connection and its batched PUBACK writer (mqttconn.Acker).
	PlainPUBACK = "puback"
	// PlainReceive: received messages go through paho's reader, router
	// and handler goroutines instead of being read from the buffered
	// connection in paho's reading goroutine (mqttconn.Options.Direct).
	// PlainPUBACK implies it.
	PlainReceive = "receive"
	// PlainJSON: device.DecodeTelemetry (encoding/json) instead of
	// device.DecodeTelemetryFast.
	PlainJSON = "json"
	// PlainLineProtocol: the line protocol of github.com/influxdata/line-protocol's
	// Encoder (what the InfluxDB client uses) instead of point.appendLine.
	PlainLineProtocol = "line-protocol"
	// PlainAll is the four.
	PlainAll = "all"
)

// PlainPaths are the valid values of Config.Plain.
var PlainPaths = []string{PlainPUBACK, PlainReceive, PlainJSON, PlainLineProtocol, PlainAll}

// plain reports whether the trick name is switched back to the library.
func (c Config) plain(name string) bool {
	return slices.Contains(c.Plain, name) || slices.Contains(c.Plain, PlainAll)
}

// Secret is a string that never prints (see secret.String).
type Secret = secret.String

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
	if c.Writers == 0 {
		c.Writers = DefaultWriters
	}
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	if c.ReadDelay == 0 {
		c.ReadDelay = DefaultReadDelay
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	rets := make(map[Group]Retention, len(Groups))
	for _, g := range Groups {
		r := c.Retention[g]
		if r.Policy == "" && r.Duration == 0 && g == GroupEnvironment {
			r = Retention{Policy: DefaultEnvironmentPolicy, Duration: DefaultEnvironmentRetention}
		}
		if r.Policy == "" {
			r.Policy = c.RetentionPolicy
		}
		rets[g] = r
	}
	c.Retention = rets
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

// Bucket returns the v2 bucket name "database/retention-policy" of the
// default policy.
func (c Config) Bucket() string {
	c = c.WithDefaults()
	return c.InfluxDatabase + "/" + c.RetentionPolicy
}

// GroupBucket returns the v2 bucket "database/policy" that group g is
// written into.
func (c Config) GroupBucket(g Group) string {
	c = c.WithDefaults()
	return c.InfluxDatabase + "/" + c.Retention[g].Policy
}

// policies returns the retention policies to create: one per distinct
// policy name; when two groups share a name with different durations, the
// longer one wins (nothing is deleted earlier than some group asks). The
// default policy is only touched when a group names it with a duration.
func (c Config) policies() []influxd.RetentionPolicy {
	byName := map[string]time.Duration{}
	var order []string
	for _, g := range Groups {
		r := c.Retention[g]
		d, seen := byName[r.Policy]
		if !seen {
			order = append(order, r.Policy)
		}
		if !seen || (d != 0 && (r.Duration == 0 || r.Duration > d)) {
			byName[r.Policy] = r.Duration
		}
	}
	var out []influxd.RetentionPolicy
	for _, name := range order {
		d := byName[name]
		if name == "autogen" && d == 0 {
			continue // CREATE DATABASE made it, INF
		}
		out = append(out, influxd.RetentionPolicy{Name: name, Duration: d})
	}
	return out
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not contact the broker or InfluxDB.
func (c Config) Validate() error {
	raw := c.Retention
	c = c.WithDefaults()
	var errs []error
	if err := checkURL(c.MQTTURL, "tcp", "mqtt", "ssl", "mqtts", "ws", "wss"); err != nil {
		errs = append(errs, fmt.Errorf("MQTTURL: %w", err))
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		//lint:ignore ST1005 the message starts with the name of the Config field at fault
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
	if c.Writers < 1 || c.Writers > 64 {
		//lint:ignore ST1005 the message starts with the name of the Config field at fault
		errs = append(errs, fmt.Errorf("Writers %d: between 1 and 64", c.Writers))
	}
	if c.Skew < 0 {
		//lint:ignore ST1005 the message starts with the name of the Config field at fault
		errs = append(errs, fmt.Errorf("Skew %s: negative", c.Skew))
	}
	if c.DedupWindow < 0 {
		errs = append(errs, fmt.Errorf("DedupWindow %d: negative", c.DedupWindow))
	}
	for _, g := range Groups {
		r := c.Retention[g]
		if strings.ContainsAny(r.Policy, "/\n") {
			errs = append(errs, fmt.Errorf("Retention[%s].Policy %q: no '/' or newline", g, r.Policy))
		}
		switch {
		case r.Duration < 0:
			errs = append(errs, fmt.Errorf("Retention[%s].Duration %s: negative", g, r.Duration))
		case r.Duration != 0 && r.Duration < time.Hour:
			errs = append(errs, fmt.Errorf("Retention[%s].Duration %s: 0 (forever) or at least 1h (InfluxDB's minimum)", g, r.Duration))
		case r.Duration%time.Second != 0:
			errs = append(errs, fmt.Errorf("Retention[%s].Duration %s: whole seconds", g, r.Duration))
		}
	}
	for g := range raw {
		if !slices.Contains(Groups, g) {
			errs = append(errs, fmt.Errorf("Retention: unknown group %q (want vitals, environment, events)", g))
		}
	}
	for _, p := range c.Plain {
		if !slices.Contains(PlainPaths, p) {
			//lint:ignore ST1005 the message starts with the name of the Config field at fault
			errs = append(errs, fmt.Errorf("Plain %q: not one of %s", p, strings.Join(PlainPaths, ", ")))
		}
	}
	if c.Limits.MaxPayload < 0 || c.Limits.MaxReadings < 0 || c.Limits.MaxFuture < 0 || c.Limits.MaxAge < 0 {
		//lint:ignore ST1005 the message starts with the name of the Config field at fault
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
