// Package zigbee is the edge gateway's zigbee2mqtt source: it subscribes to
// the home's local zigbee2mqtt broker and turns the state messages of fall
// radars, SOS buttons, bed straps and pads and vibration sensors into
// readings and events of protocol v1 (docs/protocol.md).
//
// The translation is data, not code: a [Mapping] (YAML; the default,
// mapping.yaml, is embedded) maps zigbee2mqtt keys and values onto reading
// fields and events, and a device list maps zigbee2mqtt friendly names onto
// registry device ids and kinds. A device, key or value that neither knows is
// reported once (log and metric) and never silently dropped. See
// docs/zigbee2mqtt.md.
package zigbee

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eldercare-iot/eldercare/device"
)

//go:embed mapping.yaml
var defaultMapping []byte

// DefaultMappingYAML returns the embedded default mapping file, e.g. for a
// user to copy and edit.
func DefaultMappingYAML() []byte { return bytes.Clone(defaultMapping) }

// DefaultMapping parses the embedded default mapping. It panics only if the
// shipped file is invalid, which a test rules out.
func DefaultMapping() *Mapping {
	m, err := ParseMapping(bytes.NewReader(defaultMapping))
	if err != nil {
		panic("zigbee: embedded mapping.yaml: " + err.Error())
	}
	return m
}

// Mapping is the mapping file: an ordered list of rules. For a key of a
// state message the first rule whose Field equals the key and whose Kinds
// hold the device's kind (or are empty) applies.
type Mapping struct {
	Rules []Rule `yaml:"rules"`
}

// Rule maps one zigbee2mqtt key. See mapping.yaml for the meaning of each
// field and examples.
type Rule struct {
	// Field is the zigbee2mqtt key, e.g. "fall_down_status".
	Field string `yaml:"field"`
	// Kinds limits the rule to devices of these kinds (device.Kind values);
	// empty means every kind.
	Kinds []device.Kind `yaml:"kinds,omitempty"`
	// Ignore marks a known key that is deliberately not forwarded.
	Ignore bool `yaml:"ignore,omitempty"`
	// Reading is the protocol reading field the value becomes: numbers
	// (and numeric strings) times Scale, booleans 0/1, strings via Values.
	Reading string `yaml:"reading,omitempty"`
	// Scale multiplies numeric values; 0 means 1.
	Scale float64 `yaml:"scale,omitempty"`
	// Values maps a string or boolean value ("true"/"false") to the
	// reading's number; it overrides the 0/1 of booleans.
	Values map[string]float64 `yaml:"values,omitempty"`
	// Events maps a value (strings as they are, booleans as "true" or
	// "false") to the event it raises.
	Events map[string]EventSpec `yaml:"events,omitempty"`
	// Quiet lists values that mean "nothing happened".
	Quiet []string `yaml:"quiet,omitempty"`
	// OnChange raises events only when the value differs from the last one
	// seen for the device; Initial says whether the first value seen fires.
	OnChange bool `yaml:"on_change,omitempty"`
	Initial  bool `yaml:"initial,omitempty"`
}

// EventSpec is the event a value raises. Attrs are strings, finite numbers or
// booleans (protocol v1).
type EventSpec struct {
	Type  device.EventType `yaml:"type"`
	Attrs map[string]any   `yaml:"attrs,omitempty"`
}

// ParseMapping decodes a mapping file strictly (unknown keys are errors) and
// validates it, returning every problem joined.
func ParseMapping(r io.Reader) (*Mapping, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var m Mapping
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("zigbee mapping: empty file")
		}
		return nil, fmt.Errorf("zigbee mapping: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("zigbee mapping: %w", err)
	}
	return &m, nil
}

// Validate reports every problem of m, each as "rules[i]: ...".
func (m *Mapping) Validate() error {
	var errs []error
	if len(m.Rules) == 0 {
		errs = append(errs, errors.New("no rules"))
	}
	for i, r := range m.Rules {
		p := fmt.Sprintf("rules[%d] (%s)", i, r.Field)
		add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(p+": "+format, args...)) }
		if r.Field == "" {
			add("field is required")
		}
		for _, k := range r.Kinds {
			if !k.Valid() {
				add("unknown kind %q", k)
			}
		}
		if r.Ignore && (r.Reading != "" || len(r.Events) > 0 || len(r.Values) > 0) {
			add("ignore excludes reading, values and events")
		}
		if !r.Ignore && r.Reading == "" && len(r.Events) == 0 {
			add("give reading, events or ignore")
		}
		if r.Reading != "" {
			if err := device.ValidateFieldName(r.Reading); err != nil {
				add("reading: %v", err)
			}
		}
		if len(r.Values) > 0 && r.Reading == "" {
			add("values need a reading")
		}
		if r.Scale < 0 || math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) {
			add("scale %v must be a positive finite number", r.Scale)
		}
		for v, e := range r.Events {
			if !slices.Contains(device.EventTypes, e.Type) {
				add("events[%q]: unknown event type %q", v, e.Type)
			}
			for k, a := range e.Attrs {
				switch x := a.(type) {
				case string, bool, int:
				case float64:
					if math.IsNaN(x) || math.IsInf(x, 0) {
						add("events[%q].attrs.%s: not finite", v, k)
					}
				default:
					add("events[%q].attrs.%s: %T is not a string, number or boolean", v, k, a)
				}
			}
			if slices.Contains(r.Quiet, v) {
				add("value %q is both quiet and an event", v)
			}
		}
		if r.Initial && !r.OnChange {
			add("initial needs on_change")
		}
	}
	return errors.Join(errs...)
}

// Device maps a zigbee2mqtt friendly name onto a registry device.
type Device struct {
	// FriendlyName is the name in the topic <base>/<friendly name>, e.g.
	// "bedroom-radar" or "0x847127fffe0542eb".
	FriendlyName string `yaml:"friendly_name"`
	// ID is the registry (and topic) device id, e.g. "fr-101".
	ID string `yaml:"device"`
	// Kind selects kind-specific rules (fall_detector, sos_button,
	// bed_sensor, ...).
	Kind device.Kind `yaml:"kind"`
	// Model is the zigbee-herdsman-converters model (zigbee2mqtt's
	// "model", e.g. JTYJ-GD-01LM/BW); it selects the /set payload of a
	// command where models differ (see SetPayload). Optional.
	Model string `yaml:"model,omitempty"`
	// Location is where the device is (bathroom, bedroom, front_door):
	// added as the "location" attribute of its sos and contact events.
	// Optional.
	Location string `yaml:"location,omitempty"`
}

// DeviceList is the device list file:
//
//	devices:
//	  - {friendly_name: bedroom-radar, device: fr-101, kind: fall_detector}
type DeviceList struct {
	Devices []Device `yaml:"devices"`
}

// ParseDevices decodes a device list strictly and validates it: every
// friendly name and device id present and unique, ids valid topic levels,
// kinds known.
func ParseDevices(r io.Reader) ([]Device, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var l DeviceList
	if err := dec.Decode(&l); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("zigbee devices: %w", err)
	}
	if err := ValidateDevices(l.Devices); err != nil {
		return nil, fmt.Errorf("zigbee devices: %w", err)
	}
	return l.Devices, nil
}

// ValidateDevices reports every problem of a device list.
func ValidateDevices(devs []Device) error {
	var errs []error
	names, ids := map[string]bool{}, map[string]bool{}
	for i, d := range devs {
		p := fmt.Sprintf("devices[%d]", i)
		switch {
		case d.FriendlyName == "":
			errs = append(errs, fmt.Errorf("%s.friendly_name: required", p))
		case names[d.FriendlyName]:
			errs = append(errs, fmt.Errorf("%s.friendly_name: duplicate %q", p, d.FriendlyName))
		case strings.ContainsAny(d.FriendlyName, "+#"):
			errs = append(errs, fmt.Errorf("%s.friendly_name: %q has an MQTT wildcard", p, d.FriendlyName))
		}
		names[d.FriendlyName] = true
		if err := device.ValidateID("device", d.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s.device: %w", p, err))
		} else if ids[d.ID] {
			errs = append(errs, fmt.Errorf("%s.device: duplicate %q", p, d.ID))
		}
		ids[d.ID] = true
		if !d.Kind.Valid() {
			errs = append(errs, fmt.Errorf("%s.kind: unknown kind %q", p, d.Kind))
		}
	}
	return errors.Join(errs...)
}

// Output is what one state message maps to.
type Output struct {
	// DeviceID is the registry device id.
	DeviceID string
	// Values are the readings (protocol field -> number); nil when none.
	Values map[string]float64
	// Events raised by the message, in key order.
	Events []Event
	// Unknown lists, sorted, every key (as "key") and every value of a
	// mapped key (as "key=value") that no rule knows. The mapper reports
	// each every time; Source logs each once per device.
	Unknown []string
	// LastSeen is zigbee2mqtt's last_seen of the device (when its
	// advanced.last_seen setting is on: ISO 8601 text or epoch ms); zero
	// when the message has none.
	LastSeen time.Time
}

// Event is an event raised by a state message.
type Event struct {
	Type  device.EventType
	Attrs map[string]any
	// Key is the zigbee2mqtt key that raised it, e.g. "action".
	Key string
}

// ErrUnknownDevice is returned, wrapped with the friendly name, for a
// friendly name missing from the device list.
var ErrUnknownDevice = errors.New("unknown zigbee2mqtt device")

// Mapper applies a Mapping to the state messages of the listed devices. It
// remembers the last value of each on_change key per device, so it is not
// safe for concurrent use.
type Mapper struct {
	rules   map[string][]Rule
	devices map[string]Device
	last    map[string]string // device id + "\x00" + key -> last value
}

// NewMapper validates m and devs and returns a Mapper.
func NewMapper(m *Mapping, devs []Device) (*Mapper, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("zigbee mapping: %w", err)
	}
	if err := ValidateDevices(devs); err != nil {
		return nil, fmt.Errorf("zigbee devices: %w", err)
	}
	mp := &Mapper{rules: map[string][]Rule{}, devices: map[string]Device{}, last: map[string]string{}}
	for _, r := range m.Rules {
		mp.rules[r.Field] = append(mp.rules[r.Field], r)
	}
	for _, d := range devs {
		mp.devices[d.FriendlyName] = d
	}
	return mp, nil
}

// byID returns the device with registry id id.
func (mp *Mapper) byID(id string) (Device, bool) {
	for _, d := range mp.devices {
		if d.ID == id {
			return d, true
		}
	}
	return Device{}, false
}

// Lookup returns the device listed under a friendly name.
func (mp *Mapper) Lookup(friendly string) (Device, bool) {
	d, ok := mp.devices[friendly]
	return d, ok
}

func (mp *Mapper) rule(field string, kind device.Kind) (Rule, bool) {
	for _, r := range mp.rules[field] {
		if len(r.Kinds) == 0 || slices.Contains(r.Kinds, kind) {
			return r, true
		}
	}
	return Rule{}, false
}

// Map maps one zigbee2mqtt state message: payload is the JSON object
// published on <base>/<friendly>. A legacy plain-text action message
// (<base>/<friendly>/action, payload "emergency") is mapped by the caller as
// {"action": "emergency"} (see MapAction). Errors: ErrUnknownDevice
// (wrapped) for an unlisted friendly name; a JSON error for a payload that
// is not one JSON object. A null value is an absent value.
func (mp *Mapper) Map(friendly string, payload []byte) (Output, error) {
	d, ok := mp.devices[friendly]
	if !ok {
		return Output{}, fmt.Errorf("%q: %w", friendly, ErrUnknownDevice)
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return Output{DeviceID: d.ID}, fmt.Errorf("zigbee2mqtt %q: payload is not a JSON object: %w", friendly, err)
	}
	if obj == nil {
		return Output{DeviceID: d.ID}, fmt.Errorf("zigbee2mqtt %q: payload is not a JSON object: null", friendly)
	}
	if dec.More() {
		return Output{DeviceID: d.ID}, fmt.Errorf("zigbee2mqtt %q: data after the JSON object", friendly)
	}
	return mp.mapObject(d, obj), nil
}

// MapAction maps a legacy per-action message (<base>/<friendly>/action with
// a plain-text payload such as "emergency") as the state {"action": text}.
func (mp *Mapper) MapAction(friendly string, text string) (Output, error) {
	d, ok := mp.devices[friendly]
	if !ok {
		return Output{}, fmt.Errorf("%q: %w", friendly, ErrUnknownDevice)
	}
	return mp.mapObject(d, map[string]any{"action": text}), nil
}

func (mp *Mapper) mapObject(d Device, obj map[string]any) Output {
	out := Output{DeviceID: d.ID}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if t, ok := parseLastSeen(obj["last_seen"]); ok {
		out.LastSeen = t
	}
	for _, k := range keys {
		v := obj[k]
		r, ok := mp.rule(k, d.Kind)
		if !ok {
			out.Unknown = append(out.Unknown, k)
			continue
		}
		if r.Ignore || v == nil {
			continue
		}
		str, num, isNum, ok := scalar(v)
		if !ok {
			out.Unknown = append(out.Unknown, k+"="+shortJSON(v))
			continue
		}
		known := false
		// Reading.
		if r.Reading != "" {
			if x, ok := r.Values[str]; ok {
				out.setValue(r.Reading, x)
				known = true
			} else if isNum {
				scale := r.Scale
				if scale == 0 {
					scale = 1
				}
				if x := num * scale; !math.IsNaN(x) && !math.IsInf(x, 0) {
					out.setValue(r.Reading, x)
					known = true
				}
			}
		}
		// Events.
		if e, ok := r.Events[str]; ok {
			known = true
			fire := true
			if r.OnChange {
				key := d.ID + "\x00" + k
				prev, seen := mp.last[key]
				mp.last[key] = str
				fire = (seen && prev != str) || (!seen && r.Initial)
			}
			if fire {
				attrs := cloneAttrs(e.Attrs)
				if d.Location != "" && (e.Type == device.EventSOS || e.Type == device.EventContactOpen || e.Type == device.EventContactClose) {
					if attrs == nil {
						attrs = map[string]any{}
					}
					attrs["location"] = d.Location
				}
				out.Events = append(out.Events, Event{Type: e.Type, Attrs: attrs, Key: k})
			}
		} else if r.OnChange {
			mp.last[d.ID+"\x00"+k] = str
		}
		if slices.Contains(r.Quiet, str) {
			known = true
		}
		if !known {
			out.Unknown = append(out.Unknown, k+"="+str)
		}
	}
	sort.Strings(out.Unknown)
	return out
}

// parseLastSeen reads zigbee2mqtt's last_seen: epoch ms (advanced.last_seen:
// epoch) or ISO 8601 text ("ISO_8601" "2024-09-07T15:54:41.147Z",
// "ISO_8601_local" "2026-04-17T23:33:22+08:00").
func parseLastSeen(v any) (time.Time, bool) {
	switch x := v.(type) {
	case json.Number:
		ms, err := x.Int64()
		if err != nil || ms <= 0 {
			return time.Time{}, false
		}
		return time.UnixMilli(ms), true
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	return time.Time{}, false
}

func (o *Output) setValue(field string, x float64) {
	if o.Values == nil {
		o.Values = map[string]float64{}
	}
	o.Values[field] = x
}

// scalar renders a JSON scalar: str is its text ("true", "fall", "12.5"),
// and num its number when it is a number or a numeric string.
func scalar(v any) (str string, num float64, isNum bool, ok bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return "true", 1, true, true
		}
		return "false", 0, true, true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return string(x), f, err == nil, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return x, f, err == nil && x != "", true
	}
	return "", 0, false, false
}

func shortJSON(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func cloneAttrs(a map[string]any) map[string]any {
	if len(a) == 0 {
		return nil
	}
	out := make(map[string]any, len(a))
	for k, v := range a {
		if i, ok := v.(int); ok {
			v = float64(i)
		}
		out[k] = v
	}
	out["source"] = "zigbee2mqtt"
	return out
}
