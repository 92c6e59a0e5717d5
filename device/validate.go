package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ValidationError says which field of a message broke which rule.
// Rule is a short stable word (required, type, range, finite, unit_ms,
// too_old, future, ...) that metrics and dead letters use as the reason.
type ValidationError struct {
	Field  string
	Rule   string
	Detail string
}

func (e *ValidationError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("field %s: %s", e.Field, e.Rule)
	}
	return fmt.Sprintf("field %s: %s: %s", e.Field, e.Rule, e.Detail)
}

// Reason returns the rule of the first *ValidationError in err's tree, or
// "malformed" when there is none. It is meant for metric labels.
func Reason(err error) string {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Rule
	}
	return "malformed"
}

// Limits bound what Decode accepts. The zero value means DefaultLimits.
type Limits struct {
	// MaxPayload is the largest payload in bytes. Default 256 KiB.
	MaxPayload int
	// MaxReadings is the most readings in one telemetry batch. Default 5000.
	MaxReadings int
	// MaxFuture is how far a device timestamp may be ahead of the receive
	// time. Default 5 min: device clocks drift, an hour ahead is a fault.
	MaxFuture time.Duration
	// MaxAge is how far a device timestamp may be behind the receive time.
	// Default 30 days, longer than a gateway spool keeps data.
	MaxAge time.Duration
}

// DefaultLimits are the limits used when a field of Limits is zero.
var DefaultLimits = Limits{MaxPayload: 256 << 10, MaxReadings: 5000, MaxFuture: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour}

func (l Limits) withDefaults() Limits {
	if l.MaxPayload <= 0 {
		l.MaxPayload = DefaultLimits.MaxPayload
	}
	if l.MaxReadings <= 0 {
		l.MaxReadings = DefaultLimits.MaxReadings
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultLimits.MaxFuture
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultLimits.MaxAge
	}
	return l
}

// minPlausibleMS is 2001-09-09T01:46:40Z in ms. A smaller timestamp is
// either in seconds (1e9..1e11) or from a device that never set its clock.
const minPlausibleMS = 1_000_000_000_000

// CheckTimestamp validates a device timestamp ts (ms since the epoch)
// against the receive time now. field names the field in the error.
func (l Limits) CheckTimestamp(field string, ts int64, now time.Time) error {
	l = l.withDefaults()
	switch {
	case ts <= 0:
		return &ValidationError{Field: field, Rule: "required", Detail: "device timestamp in ms since the epoch"}
	case ts >= 1_000_000_000 && ts < 100_000_000_000:
		return &ValidationError{Field: field, Rule: "unit_ms", Detail: fmt.Sprintf("%d looks like seconds; send ms since the epoch", ts)}
	case ts < minPlausibleMS:
		return &ValidationError{Field: field, Rule: "too_old", Detail: fmt.Sprintf("%s is before 2001-09-09; is the device clock set?", time.UnixMilli(ts).UTC().Format(time.RFC3339))}
	}
	t := time.UnixMilli(ts)
	if d := t.Sub(now); d > l.MaxFuture {
		return &ValidationError{Field: field, Rule: "future", Detail: fmt.Sprintf("%s is %s ahead of the receive time (limit %s)", t.UTC().Format(time.RFC3339Nano), d.Round(time.Millisecond), l.MaxFuture)}
	}
	if d := now.Sub(t); d > l.MaxAge {
		return &ValidationError{Field: field, Rule: "too_old", Detail: fmt.Sprintf("%s is %s before the receive time (limit %s)", t.UTC().Format(time.RFC3339Nano), d.Round(time.Second), l.MaxAge)}
	}
	return nil
}

// ValidateFieldName checks a reading field name: 1-64 characters of
// [a-z0-9_], starting with a letter.
func ValidateFieldName(name string) error {
	if name == "" || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return &ValidationError{Field: "values." + name, Rule: "name", Detail: "field names are 1-64 characters of [a-z0-9_] starting with a letter"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return &ValidationError{Field: "values." + name, Rule: "name", Detail: "field names are 1-64 characters of [a-z0-9_] starting with a letter"}
		}
	}
	return nil
}

// decodeStrict unmarshals b into v, rejecting unknown fields and trailing
// data, and turns encoding/json's errors into *ValidationError.
func decodeStrict(b []byte, l Limits, v any) error {
	if len(b) > l.MaxPayload {
		return &ValidationError{Field: "payload", Rule: "size", Detail: fmt.Sprintf("%d bytes, limit %d", len(b), l.MaxPayload)}
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return &ValidationError{Field: "payload", Rule: "json", Detail: "not a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &ValidationError{Field: "payload", Rule: "json", Detail: "data after the JSON object"}
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "payload"
		}
		return &ValidationError{Field: field, Rule: "type", Detail: fmt.Sprintf("got JSON %s, want %s", te.Value, te.Type)}
	case errors.As(err, &se):
		return &ValidationError{Field: "payload", Rule: "json", Detail: fmt.Sprintf("not JSON at byte %d: %v", se.Offset, err)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ValidationError{Field: name, Rule: "unknown_field", Detail: "not part of protocol v1"}
	default:
		return &ValidationError{Field: "payload", Rule: "json", Detail: err.Error()}
	}
}

func checkHeader(v int, device string) error {
	var errs []error
	if v != Version {
		errs = append(errs, &ValidationError{Field: "v", Rule: "version", Detail: fmt.Sprintf("got %d, this platform speaks %d", v, Version)})
	}
	if err := ValidateID("device", device); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DecodeTelemetry parses and validates a telemetry payload received at now.
// A single-reading payload is returned with Readings holding that one
// reading and the top-level Seq, TS and Values cleared.
//
// Errors are *ValidationError (joined with errors.Join when several rules
// are broken) naming the field, e.g. "field readings[3].values.spo2_pct:
// range: 140 is outside [0, 100] %". JSON null, NaN and Inf are never
// accepted as values: a missing value is an absent key.
func DecodeTelemetry(b []byte, now time.Time, l Limits) (*Telemetry, error) {
	l = l.withDefaults()
	var raw telemetryJSON
	if err := decodeStrict(b, l, &raw); err != nil {
		return nil, err
	}
	return raw.telemetry(now, l)
}

// telemetryJSON is a telemetry payload as JSON decodes it, before
// validation; DecodeTelemetry and the fast scanner of DecodeTelemetryFast
// both produce it.
type telemetryJSON struct {
	V        int                        `json:"v"`
	Device   string                     `json:"device"`
	Boot     uint32                     `json:"boot"`
	ID       uint64                     `json:"id"`
	Seq      uint64                     `json:"seq"`
	TS       int64                      `json:"ts"`
	Values   map[string]json.RawMessage `json:"values"`
	Readings []readingJSON              `json:"readings"`
}

type readingJSON struct {
	Seq    uint64                     `json:"seq"`
	TS     int64                      `json:"ts"`
	Values map[string]json.RawMessage `json:"values"`
}

// telemetry validates raw (received at now) into a new Telemetry; l has
// its defaults.
func (raw *telemetryJSON) telemetry(now time.Time, l Limits) (*Telemetry, error) {
	return raw.telemetryInto(new(Telemetry), nil, now, l)
}

// telemetryInto is telemetry writing into t, whose Readings slice it
// reuses; vals supplies the readings' Values maps (nil: new ones).
func (raw *telemetryJSON) telemetryInto(t *Telemetry, vals *mapPool[float64], now time.Time, l Limits) (*Telemetry, error) {
	var errs []error
	if err := checkHeader(raw.V, raw.Device); err != nil {
		errs = append(errs, err)
	}
	*t = Telemetry{V: raw.V, Device: raw.Device, Boot: raw.Boot, ID: raw.ID, Readings: t.Readings[:0]}
	single := raw.TS != 0 || raw.Values != nil || raw.Seq != 0
	switch {
	case single && raw.Readings != nil:
		errs = append(errs, &ValidationError{Field: "readings", Rule: "exclusive", Detail: "send either ts/values or readings, not both"})
	case single:
		r, err := decodeReading("", raw.Seq, raw.TS, raw.Values, vals.get(len(raw.Values)), now, l)
		if err != nil {
			errs = append(errs, err)
		}
		t.Readings = append(t.Readings, r)
	case len(raw.Readings) == 0:
		errs = append(errs, &ValidationError{Field: "readings", Rule: "required", Detail: "no ts/values and no readings"})
	case len(raw.Readings) > l.MaxReadings:
		errs = append(errs, &ValidationError{Field: "readings", Rule: "max_len", Detail: fmt.Sprintf("%d readings, limit %d", len(raw.Readings), l.MaxReadings)})
	default:
		t.Readings = slices.Grow(t.Readings, len(raw.Readings))
		for i, rr := range raw.Readings {
			r, err := decodeReading("readings["+strconv.Itoa(i)+"].", rr.Seq, rr.TS, rr.Values, vals.get(len(rr.Values)), now, l)
			if err != nil {
				errs = append(errs, err)
			}
			t.Readings = append(t.Readings, r)
			if i == 0 {
				continue
			}
			if prev := raw.Readings[i-1]; rr.Seq != 0 && rr.Seq <= prev.Seq {
				errs = append(errs, &ValidationError{Field: fmt.Sprintf("readings[%d].seq", i), Rule: "increasing", Detail: fmt.Sprintf("%d after %d", rr.Seq, prev.Seq)})
			} else if rr.TS < prev.TS {
				errs = append(errs, &ValidationError{Field: fmt.Sprintf("readings[%d].ts", i), Rule: "increasing", Detail: fmt.Sprintf("%d before %d: a batch is oldest first", rr.TS, prev.TS)})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeReading validates one reading into a Reading whose Values is dst
// (empty).
func decodeReading(prefix string, seq uint64, ts int64, vals map[string]json.RawMessage, dst map[string]float64, now time.Time, l Limits) (Reading, error) {
	var errs []error
	if seq == 0 {
		errs = append(errs, &ValidationError{Field: prefix + "seq", Rule: "required", Detail: "sequence numbers start at 1 on every boot"})
	}
	if err := l.CheckTimestamp(prefix+"ts", ts, now); err != nil {
		errs = append(errs, err)
	}
	if len(vals) == 0 {
		errs = append(errs, &ValidationError{Field: prefix + "values", Rule: "required", Detail: "at least one value"})
	}
	r := Reading{Seq: seq, TS: ts, Values: dst}
	for name, raw := range vals {
		field := func() string { return prefix + "values." + name } // built only for an error
		if err := ValidateFieldName(name); err != nil {
			errs = append(errs, &ValidationError{Field: field(), Rule: "name", Detail: err.(*ValidationError).Detail})
			continue
		}
		v, err := parseNumber(field, raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f, ok := Fields[name]; ok && (v < f.Min || v > f.Max) {
			errs = append(errs, &ValidationError{Field: field(), Rule: "range", Detail: fmt.Sprintf("%g is outside [%g, %g] %s", v, f.Min, f.Max, f.Unit)})
			continue
		}
		if name == "in_bed" && v != 0 && v != 1 {
			errs = append(errs, &ValidationError{Field: field(), Rule: "one_of", Detail: fmt.Sprintf("%g is not 0 (out of bed) or 1 (in bed)", v)})
			continue
		}
		r.Values[name] = v
	}
	return r, errors.Join(errs...)
}

// parseNumber converts raw, one JSON value, to a finite float64; field
// names the value in errors.
func parseNumber(field func() string, raw json.RawMessage) (float64, error) {
	b := bytes.TrimSpace(raw)
	if string(b) == "null" {
		return 0, &ValidationError{Field: field(), Rule: "type", Detail: "null is not a number; omit a missing value"}
	}
	if len(b) == 0 || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		return 0, &ValidationError{Field: field(), Rule: "type", Detail: fmt.Sprintf("got %s, want a JSON number", truncate(string(b), 32))}
	}
	// raw is a JSON number (encoding/json or the scanner checked its
	// syntax), so strconv reads it as encoding/json would.
	v, ok := exactFloat(b)
	if !ok {
		var err error
		if v, err = strconv.ParseFloat(string(b), 64); err != nil {
			return 0, &ValidationError{Field: field(), Rule: "finite", Detail: fmt.Sprintf("%s does not fit a float64", truncate(string(b), 32))}
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, &ValidationError{Field: field(), Rule: "finite", Detail: "NaN and Inf are not values"}
	}
	return v, nil
}

// pow10 holds the powers of ten that a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// exactFloat converts the JSON number b without allocating when its
// digits fit 2^53 and it has at most 22 decimals and no exponent: then
// float64(mantissa) / 10^decimals is one correctly rounded IEEE division,
// the same value strconv.ParseFloat returns (Clinger's fast path, which
// strconv takes too). It reports false for anything else.
func exactFloat(b []byte) (float64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	var m uint64
	digits, decimals := 0, -1
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			digits++
			if decimals >= 0 {
				decimals++
			}
			if digits > 15 { // 10^15 < 2^53: no overflow, mantissa exact
				return 0, false
			}
		case c == '.' && decimals < 0 && digits > 0:
			decimals = 0
		default:
			return 0, false // exponent, or not a number
		}
	}
	if digits == 0 || decimals == 0 || len(b) > 1 && b[0] == '0' && b[1] != '.' {
		return 0, false // not a JSON number: no digits, "1." or a leading zero
	}
	v := float64(m)
	if decimals > 0 {
		v /= pow10[decimals]
	}
	if neg {
		v = -v
	}
	return v, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// DecodeEvent parses and validates an event payload received at now.
// Errors are *ValidationError naming the field and rule.
func DecodeEvent(b []byte, now time.Time, l Limits) (*Event, error) {
	l = l.withDefaults()
	var e Event
	if err := decodeStrict(b, l, &e); err != nil {
		return nil, err
	}
	var errs []error
	if err := checkHeader(e.V, e.Device); err != nil {
		errs = append(errs, err)
	}
	if err := l.CheckTimestamp("ts", e.TS, now); err != nil {
		errs = append(errs, err)
	}
	if e.Seq == 0 {
		errs = append(errs, &ValidationError{Field: "seq", Rule: "required", Detail: "sequence numbers start at 1 on every boot"})
	}
	if !slices.Contains(EventTypes, e.Type) && e.Type != EventClientTakeover {
		errs = append(errs, &ValidationError{Field: "type", Rule: "one_of", Detail: fmt.Sprintf("%q is not a v1 event type", e.Type)})
	}
	for k, v := range e.Attrs {
		errs = append(errs, checkAttr(k, v))
	}
	switch e.Type {
	case EventMeal:
		if s, _ := e.Attrs["card"].(string); s == "" {
			errs = append(errs, &ValidationError{Field: "attrs.card", Rule: "required", Detail: "the card that was tapped"})
		}
		if s, _ := e.Attrs["meal"].(string); !slices.Contains(Meals, s) {
			errs = append(errs, &ValidationError{Field: "attrs.meal", Rule: "one_of", Detail: "breakfast, lunch, dinner or snack"})
		}
		if _, ok := e.Attrs["eaten_pct"]; !ok {
			errs = append(errs, &ValidationError{Field: "attrs.eaten_pct", Rule: "required", Detail: "a number in [0, 100] %"})
		}
	case EventCardTap:
		if s, _ := e.Attrs["card"].(string); s == "" {
			errs = append(errs, &ValidationError{Field: "attrs.card", Rule: "required", Detail: "the card that was tapped"})
		}
	case EventDoseTaken:
		if s, _ := e.Attrs["slot"].(string); s == "" {
			errs = append(errs, &ValidationError{Field: "attrs.slot", Rule: "required", Detail: "the schedule slot (local HH:MM) or compartment label of the dose"})
		}
	case EventZone:
		if s, _ := e.Attrs["zone"].(string); s == "" {
			errs = append(errs, &ValidationError{Field: "attrs.zone", Rule: "required", Detail: "the indoor zone entered"})
		}
	case EventCheckIn:
		m, _ := e.Attrs["method"].(string)
		if !slices.Contains(CheckInMethods, m) {
			errs = append(errs, &ValidationError{Field: "attrs.method", Rule: "one_of", Detail: "card, app or reader"})
		}
		if s, _ := e.Attrs["card"].(string); s == "" && (m == "card" || m == "reader") {
			errs = append(errs, &ValidationError{Field: "attrs.card", Rule: "required", Detail: "the card that was tapped"})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &e, nil
}

// Attrs are the well-known event attributes: a number with its range, or
// a string. An attribute of another name may be a string, a finite number
// or a boolean, and its name follows ValidateFieldName.
var Attrs = map[string]Field{
	"peak_accel_ms2": {"peak_accel_ms2", "m/s^2", 0, 1000, "peak acceleration magnitude of a fall"},
	"confidence":     {"confidence", "0-1", 0, 1, "detector confidence"},
	"eaten_pct":      {"eaten_pct", "%", 0, 100, "share of the portion eaten"},
	"battery_pct":    {"battery_pct", "%", 0, 100, "battery charge"},
	"card":           {"card", "string", 0, 0, "card id"},
	"meal":           {"meal", "string", 0, 0, "breakfast, lunch, dinner or snack"},
	"location":       {"location", "string", 0, 0, "where a call button or contact is (bathroom, bedroom, front_door, ...)"},
	"source":         {"source", "string", 0, 0, "what raised an sos: button, pull_cord or wearable"},
	"slot":           {"slot", "string", 0, 0, "medication schedule slot, local HH:MM, or compartment label"},
	"compartment":    {"compartment", "1-64", 1, 64, "pill box compartment number"},
	"medication":     {"medication", "string", 0, 0, "medication name"},
	"zone":           {"zone", "string", 0, 0, "indoor zone name"},
	"method":         {"method", "string", 0, 0, "check-in method: card, app or reader"},
	"staff":          {"staff", "string", 0, 0, "visitor's user id"},
	"resident":       {"resident", "string", 0, 0, "resident id"},
	"result":         {"result", "string", 0, 0, "alarm self-test result: ok or failed"},
	"command":        {"command", "string", 0, 0, "id of the command that caused the event"},
	"lat_deg":        {"lat_deg", "°", -90, 90, "latitude, WGS 84"},
	"lon_deg":        {"lon_deg", "°", -180, 180, "longitude, WGS 84"},
	"accuracy_m":     {"accuracy_m", "m", 0, 100000, "position accuracy radius"},
	"gas_lel_pct":    {"gas_lel_pct", "%LEL", 0, 100, "gas concentration, % of the lower explosive limit"},
}

func checkAttr(k string, v any) error {
	field := "attrs." + k
	if err := ValidateFieldName(k); err != nil {
		return &ValidationError{Field: field, Rule: "name", Detail: "attribute names are 1-64 characters of [a-z0-9_] starting with a letter"}
	}
	known, isKnown := Attrs[k]
	switch x := v.(type) {
	case string:
		if isKnown && known.Unit != "string" {
			return &ValidationError{Field: field, Rule: "type", Detail: fmt.Sprintf("got a string, want a number in %s", known.Unit)}
		}
		if len(x) > 256 {
			return &ValidationError{Field: field, Rule: "max_len", Detail: "at most 256 bytes"}
		}
	case bool:
		if isKnown {
			return &ValidationError{Field: field, Rule: "type", Detail: "got a boolean"}
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return &ValidationError{Field: field, Rule: "finite"}
		}
		if isKnown && known.Unit == "string" {
			return &ValidationError{Field: field, Rule: "type", Detail: "got a number, want a string"}
		}
		if isKnown && (x < known.Min || x > known.Max) {
			return &ValidationError{Field: field, Rule: "range", Detail: fmt.Sprintf("%g is outside [%g, %g] %s", x, known.Min, known.Max, known.Unit)}
		}
	default:
		return &ValidationError{Field: field, Rule: "type", Detail: "attributes are strings, numbers or booleans"}
	}
	return nil
}

// DecodeStatus parses and validates a status payload. Status messages are
// retained, so their TS may be old; only its presence is checked.
func DecodeStatus(b []byte, l Limits) (*Status, error) {
	l = l.withDefaults()
	var s Status
	if err := decodeStrict(b, l, &s); err != nil {
		return nil, err
	}
	var errs []error
	if err := checkHeader(s.V, s.Device); err != nil {
		errs = append(errs, err)
	}
	if s.TS <= 0 {
		errs = append(errs, &ValidationError{Field: "ts", Rule: "required"})
	}
	switch s.State {
	case Online, Offline, Unknown:
	default:
		errs = append(errs, &ValidationError{Field: "state", Rule: "one_of", Detail: fmt.Sprintf("%q is not online, offline or unknown", s.State)})
	}
	if s.Kind != "" && !s.Kind.Valid() {
		errs = append(errs, &ValidationError{Field: "kind", Rule: "one_of", Detail: fmt.Sprintf("%q is not a known kind", s.Kind)})
	}
	for i, d := range s.Devices {
		if err := ValidateID(fmt.Sprintf("devices[%d]", i), d); err != nil {
			errs = append(errs, err)
		}
	}
	if s.HeartbeatMS < 0 {
		errs = append(errs, &ValidationError{Field: "heartbeat_ms", Rule: "range", Detail: fmt.Sprintf("%d is negative", s.HeartbeatMS)})
	}
	for i, r := range s.Report {
		p := fmt.Sprintf("report[%d]", i)
		if err := ValidateID(p+".device", r.Device); err != nil {
			errs = append(errs, err)
		}
		switch r.State {
		case Online, Offline:
		default:
			errs = append(errs, &ValidationError{Field: p + ".state", Rule: "one_of", Detail: fmt.Sprintf("%q is not online or offline", r.State)})
		}
		if r.LastSeen < 0 {
			errs = append(errs, &ValidationError{Field: p + ".last_seen", Rule: "range", Detail: "ms since the epoch"})
		}
		switch r.Via {
		case "", ViaReadings, ViaAvailability:
		default:
			errs = append(errs, &ValidationError{Field: p + ".via", Rule: "one_of", Detail: fmt.Sprintf("%q is not readings or availability", r.Via)})
		}
		switch r.LocalAlarm {
		case "", EventFall, EventSOS:
		default:
			errs = append(errs, &ValidationError{Field: p + ".local_alarm", Rule: "one_of", Detail: fmt.Sprintf("%q is not fall or sos", r.LocalAlarm)})
		}
		if r.LocalAlarmSince < 0 {
			errs = append(errs, &ValidationError{Field: p + ".local_alarm_since", Rule: "range", Detail: "ms since the epoch"})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks a command's header, action and params.
func (c Command) Validate() error {
	var errs []error
	if c.V != Version {
		errs = append(errs, &ValidationError{Field: "v", Rule: "version", Detail: fmt.Sprintf("got %d, want %d", c.V, Version)})
	}
	if c.ID == "" || len(c.ID) > 64 {
		errs = append(errs, &ValidationError{Field: "id", Rule: "required", Detail: "1-64 characters"})
	}
	if c.TS <= 0 {
		errs = append(errs, &ValidationError{Field: "ts", Rule: "required", Detail: "issue time in ms since the epoch"})
	}
	if err := ValidateID("device", c.Device); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(CommandActions, c.Action) {
		errs = append(errs, &ValidationError{Field: "action", Rule: "one_of", Detail: fmt.Sprintf("%q is not a v1 action", c.Action)})
	}
	if c.Expires < 0 || c.Expires > 0 && c.Expires < c.TS {
		errs = append(errs, &ValidationError{Field: "expires", Rule: "range", Detail: "0 (never) or a time after ts, ms since the epoch"})
	}
	for k, v := range c.Params {
		switch x := v.(type) {
		case string, bool:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				errs = append(errs, &ValidationError{Field: "params." + k, Rule: "finite"})
			}
		case int:
		default:
			errs = append(errs, &ValidationError{Field: "params." + k, Rule: "type", Detail: "params are strings, numbers or booleans"})
		}
	}
	switch c.Action {
	case ActionSetpoint:
		if s, _ := c.Params["field"].(string); ValidateFieldName(s) != nil {
			errs = append(errs, &ValidationError{Field: "params.field", Rule: "required", Detail: "the reading field to write"})
		}
		if _, ok := ParamNumber(c.Params, "value"); !ok {
			errs = append(errs, &ValidationError{Field: "params.value", Rule: "required", Detail: "a number in the field's unit"})
		}
	case ActionSirenOn:
		if _, has := c.Params["duration_s"]; has {
			if d, ok := ParamNumber(c.Params, "duration_s"); !ok || d < 1 || d > 1800 {
				errs = append(errs, &ValidationError{Field: "params.duration_s", Rule: "range", Detail: "1-1800 s"})
			}
		}
	}
	return errors.Join(errs...)
}

// ParamNumber returns params[name] as a number (a JSON number decodes as
// float64; Go callers may pass an int).
func ParamNumber(params map[string]any, name string) (float64, bool) {
	switch x := params[name].(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	}
	return 0, false
}

// DecodeCommand parses and validates a downlink command. Errors are
// *ValidationError naming the field.
func DecodeCommand(b []byte, l Limits) (*Command, error) {
	l = l.withDefaults()
	var c Command
	if err := decodeStrict(b, l, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// DecodeCommandAck parses and validates a command acknowledgement.
func DecodeCommandAck(b []byte, l Limits) (*CommandAck, error) {
	l = l.withDefaults()
	var a CommandAck
	if err := decodeStrict(b, l, &a); err != nil {
		return nil, err
	}
	var errs []error
	if err := checkHeader(a.V, a.Device); err != nil {
		errs = append(errs, err)
	}
	if a.ID == "" {
		errs = append(errs, &ValidationError{Field: "id", Rule: "required", Detail: "the id of the command acknowledged"})
	}
	if a.TS <= 0 {
		errs = append(errs, &ValidationError{Field: "ts", Rule: "required"})
	}
	switch a.Status {
	case AckAccepted:
	case AckRefused, AckFailed:
		if a.Reason == "" {
			errs = append(errs, &ValidationError{Field: "reason", Rule: "required", Detail: "why the command was refused or failed"})
		}
	default:
		errs = append(errs, &ValidationError{Field: "status", Rule: "one_of", Detail: "accepted, refused or failed"})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &a, nil
}

// CheckTopicDevice reports an error when the device named in a payload is
// not the device of the topic it arrived on: a device may publish only for
// itself.
func CheckTopicDevice(t Topic, payloadDevice string) error {
	if t.Device != payloadDevice {
		return &ValidationError{Field: "device", Rule: "topic_mismatch", Detail: fmt.Sprintf("payload says %q, topic says %q", payloadDevice, t.Device)}
	}
	return nil
}
