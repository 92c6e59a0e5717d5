package firmwaresim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ZigbeeMessage is one zigbee2mqtt MQTT message to replay: Topic is relative
// to the base topic ("0x847127fffe0542eb" or "VibrationSensor/action").
type ZigbeeMessage struct {
	Topic   string
	Payload []byte
	// Line is the line of the source file (1-based).
	Line int
}

// LoadZigbeeReplay reads a JSON-lines file of real zigbee2mqtt messages in
// the format of ../shared/data/zigbee2mqtt/real_payloads_from_github_issues.jsonl:
// each line has "topic" and either "payload" (a JSON object, published as
// it is) or "payload_raw" (a string, published as plain text). Lines whose
// topic is not under zigbee2mqtt's default base topic (Home Assistant discovery, ...) and lines without
// an MQTT message (raw zigbee reports) are skipped and counted in skipped.
// A line that is not JSON is an error naming the line.
func LoadZigbeeReplay(path string) (msgs []ZigbeeMessage, skipped int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("zigbee replay: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l struct {
			Topic      string          `json:"topic"`
			Payload    json.RawMessage `json:"payload"`
			PayloadRaw *string         `json:"payload_raw"`
			Direction  string          `json:"direction"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, 0, fmt.Errorf("zigbee replay %s line %d: %w", path, n, err)
		}
		rel, ok := strings.CutPrefix(l.Topic, "zigbee2mqtt/")
		switch {
		case !ok || rel == "" || l.Direction == "set" || strings.HasSuffix(rel, "/set"):
			// Not under the base topic, or a command sent to zigbee2mqtt
			// (real_payloads_safety_kit.jsonl direction "set"), not a
			// message it publishes.
			skipped++
		case l.PayloadRaw != nil:
			msgs = append(msgs, ZigbeeMessage{Topic: rel, Payload: []byte(*l.PayloadRaw), Line: n})
		case len(l.Payload) > 0:
			msgs = append(msgs, ZigbeeMessage{Topic: rel, Payload: l.Payload, Line: n})
		default:
			skipped++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("zigbee replay %s: %w", path, err)
	}
	return msgs, skipped, nil
}

// ZigbeeConfig configures a zigbee2mqtt-style publisher.
type ZigbeeConfig struct {
	// MQTTURL is the local broker zigbee2mqtt would publish to.
	MQTTURL string
	// BaseTopic replaces zigbee2mqtt's base topic "zigbee2mqtt" (tests use
	// one of their own); "" keeps it.
	BaseTopic string
	// File is the JSON-lines replay file (see LoadZigbeeReplay).
	File string
	// Interval between two messages; 0 sends them back to back.
	Interval time.Duration
	// Repeat replays the file this many times; 0 means once.
	Repeat int
	// Availability first publishes, retained, {"state":"online"} on
	// <base>/<friendly>/availability for every device of the file, as
	// zigbee2mqtt does with availability on (its own 10 min / 25 h check),
	// so that a device that reports only on change is known alive.
	Availability bool
	// PublishTimeout bounds each wait for the broker; 0 is
	// DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Answer makes the replayer act as zigbee2mqtt for commands too: it
	// subscribes to <base>/+/set and answers each /set with the device's
	// new state on <base>/<friendly> (see ZigbeeAnswer), and keeps running
	// after the replay until ctx is cancelled.
	Answer bool
	Logger *slog.Logger
}

// ZigbeeAnswer returns the state zigbee2mqtt publishes after a /set of set
// on a device whose last state was last (nil: none seen): last with the
// set's keys that are state keys ("state" ON|OFF of a valve or switch)
// replaced, as zigbee2mqtt does for the switch converters (a state reply
// one second after the /set: zigbee2mqtt.io PR #1538, RTX ZVG1). A self
// test ("selftest", "self_test") answers {"test":true}, as the Xiaomi and
// Aqara alarms report a test in progress. A set that changes no reported
// state (a siren's "warning", which zhc exposes with set access only)
// answers nil: zigbee2mqtt publishes nothing.
func ZigbeeAnswer(last, set map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range last {
		out[k] = v
	}
	changed := false
	for k, v := range set {
		switch k {
		case "state":
			out[k] = v
			changed = true
		case "selftest", "self_test":
			out["test"] = true
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return out
}

// Validate reports every problem of c.
func (c ZigbeeConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.MQTTURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("zigbee sim: MQTT URL %q: want tcp://host:port", c.MQTTURL))
	}
	if c.File == "" {
		errs = append(errs, errors.New("zigbee sim: replay file is required"))
	}
	if strings.ContainsAny(c.BaseTopic, "+#") {
		errs = append(errs, fmt.Errorf("zigbee sim: base topic %q has a wildcard", c.BaseTopic))
	}
	if c.Interval < 0 || c.Repeat < 0 || c.PublishTimeout < 0 {
		errs = append(errs, errors.New("zigbee sim: interval, repeat and publish timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// RunZigbee replays the real zigbee2mqtt messages of cfg.File as zigbee2mqtt
// would publish them: on <base>/<friendly name> (and the legacy
// <base>/<friendly name>/action), QoS 1, not retained, cfg.Interval apart,
// after the retained availability messages when cfg.Availability is set.
// It returns the number of messages published (availability included), and
// nil at the end of the replay or when ctx is cancelled.
func RunZigbee(ctx context.Context, cfg ZigbeeConfig) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	base := cfg.BaseTopic
	if base == "" {
		base = "zigbee2mqtt"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := cfg.PublishTimeout
	if timeout == 0 {
		timeout = DefaultPublishTimeout
	}
	msgs, skipped, err := LoadZigbeeReplay(cfg.File)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, fmt.Errorf("zigbee sim: %s has no zigbee2mqtt message", cfg.File)
	}
	u, _ := url.Parse(cfg.MQTTURL)
	broker := *u
	broker.User = nil
	broker.Scheme = schemes[u.Scheme]
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	opts := paho.NewClientOptions().AddBroker(broker.String()).
		SetClientID("sim-zigbee2mqtt-" + hex.EncodeToString(rnd[:])).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(false).
		SetConnectTimeout(timeout).SetWriteTimeout(timeout).SetKeepAlive(30 * time.Second)
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	c := paho.NewClient(opts)
	wait := func(tok paho.Token, what string) error {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(timeout):
			return fmt.Errorf("%s: no answer from the broker within %s", what, timeout)
		}
	}
	if err := wait(c.Connect(), "zigbee sim: connect to "+u.Redacted()); err != nil {
		c.Disconnect(0)
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, err
	}
	defer c.Disconnect(250)
	var mu sync.Mutex
	lastState := map[string]map[string]any{} // by friendly name
	if cfg.Answer {
		answer := func(c paho.Client, m paho.Message) {
			name := strings.TrimSuffix(strings.TrimPrefix(m.Topic(), base+"/"), "/set")
			var set map[string]any
			if err := json.Unmarshal(m.Payload(), &set); err != nil {
				log.Warn("zigbee sim: /set is not a JSON object", "topic", m.Topic(), "err", err)
				return
			}
			mu.Lock()
			st := ZigbeeAnswer(lastState[name], set)
			if st != nil {
				lastState[name] = st
			}
			mu.Unlock()
			log.Info("zigbee sim: /set", "device", name, "set", string(m.Payload()), "answered", st != nil)
			if st == nil {
				return
			}
			b, _ := json.Marshal(st)
			go func() {
				if err := wait(c.Publish(base+"/"+name, 1, false, b), "zigbee sim: answer "+name); err != nil {
					log.Warn("zigbee sim: answer not published", "device", name, "err", err)
				}
			}()
		}
		if err := wait(c.Subscribe(base+"/+/set", 1, answer), "zigbee sim: subscribe "+base+"/+/set"); err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, err
		}
	}
	log.Info("zigbee2mqtt replay", "file", cfg.File, "messages", len(msgs), "skipped_lines", skipped, "base_topic", base)
	sent := 0
	if cfg.Availability {
		done := map[string]bool{}
		for _, m := range msgs {
			name, _, _ := strings.Cut(m.Topic, "/")
			if done[name] {
				continue
			}
			done[name] = true
			topic := base + "/" + name + "/availability"
			if err := wait(c.Publish(topic, 1, true, `{"state":"online"}`), "zigbee sim: publish "+topic); err != nil {
				if ctx.Err() != nil {
					return sent, nil
				}
				return sent, err
			}
			sent++
		}
	}
	for r := 0; r < max(cfg.Repeat, 1); r++ {
		for _, m := range msgs {
			if sent > 0 && cfg.Interval > 0 {
				if err := sleep(ctx, cfg.Interval); err != nil {
					return sent, nil
				}
			}
			topic := base + "/" + m.Topic
			var st map[string]any
			if json.Unmarshal(m.Payload, &st) == nil && !strings.Contains(m.Topic, "/") {
				mu.Lock()
				lastState[m.Topic] = st
				mu.Unlock()
			}
			if err := wait(c.Publish(topic, 1, false, m.Payload), "zigbee sim: publish line "+fmt.Sprint(m.Line)+" on "+topic); err != nil {
				if ctx.Err() != nil {
					return sent, nil
				}
				return sent, err
			}
			sent++
		}
	}
	if cfg.Answer {
		<-ctx.Done()
	}
	return sent, nil
}
