package ingest

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"
	lp "github.com/influxdata/line-protocol"

	"github.com/eldercare-iot/eldercare/device"
)

// Measurements and the names of the fields that ingest adds to every point.
// docs/schema.md describes the schema.
const (
	MeasurementReadings = "readings"
	MeasurementEvents   = "events"

	FieldSeq        = "seq"
	FieldBoot       = "boot"
	FieldReceivedMS = "received_ms"
	FieldCount      = "count"
	// FieldSkewed is true on a point whose device time is further than
	// Config.Skew from its receive time; absent otherwise.
	FieldSkewed = "skewed"
	// AttrPrefix is prepended to an event attribute's name to make its field
	// key: attrs {"confidence":0.9} is field attr_confidence=0.9.
	AttrPrefix = "attr_"
)

// Residents looks up, for one device, the resident it measured at a device
// time t and the device's kind. It is consulted once per reading and event,
// so it must be fast (an in-memory snapshot, not SQL).
type Residents interface {
	// Lookup returns the id of the resident bound to device at t ("" when
	// the device is unassigned then) and the device's kind ("" when the
	// device is not in the registry).
	Lookup(device string, t time.Time) (resident, kind string)
}

// LookupFunc adapts a function to Residents.
type LookupFunc func(device string, t time.Time) (resident, kind string)

// Lookup calls f.
func (f LookupFunc) Lookup(device string, t time.Time) (resident, kind string) { return f(device, t) }

// PointError is a point that ingest refuses to write (reason "invalid_point"
// or "reserved_field"); Reason is the metric label.
type PointError struct {
	Reason string
	Detail string
}

func (e *PointError) Error() string { return e.Reason + ": " + e.Detail }

// point is one InfluxDB point: measurement, tags sorted by key, fields
// sorted by key, and time in ms. appendLine encodes it as line protocol
// with the escaping rules of the InfluxDB client's encoder
// (github.com/influxdata/line-protocol); building it is cheaper than the
// client's write.Point (no maps, no reflection, one allocation for fields).
type point struct {
	name   string
	tags   []tag
	fields []field
	ms     int64
}

type tag struct{ Key, Value string }

// field is a typed field value: kind says which of f, i, s, b holds it.
type field struct {
	Key  string
	kind fieldKind
	f    float64
	i    int64
	s    string
	b    bool
}

type fieldKind uint8

const (
	kindFloat fieldKind = iota
	kindInt
	kindString
	kindBool
)

func floatField(k string, v float64) field { return field{Key: k, kind: kindFloat, f: v} }
func intField(k string, v int64) field     { return field{Key: k, kind: kindInt, i: v} }

// Value returns the field's value as float64, int64, string or bool.
func (f field) Value() any {
	switch f.kind {
	case kindInt:
		return f.i
	case kindString:
		return f.s
	case kindBool:
		return f.b
	}
	return f.f
}

// Name is the measurement.
func (p *point) Name() string { return p.name }

// Time is the point's time (ms precision).
func (p *point) Time() time.Time { return time.UnixMilli(p.ms) }

// addField adds f keeping the fields sorted by key.
func (p *point) addField(f field) {
	i := len(p.fields)
	p.fields = append(p.fields, f)
	for ; i > 0 && p.fields[i-1].Key > f.Key; i-- {
		p.fields[i] = p.fields[i-1]
	}
	p.fields[i] = f
}

// sortFields sorts the fields by key (insertion sort: a handful of fields).
func (p *point) sortFields() {
	fs := p.fields
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j-1].Key > fs[j].Key; j-- {
			fs[j-1], fs[j] = fs[j], fs[j-1]
		}
	}
}

// appendLineEncoder is appendLine done by the line-protocol library that
// the InfluxDB client uses (lp.Encoder on a write.Point): the plain path of
// Config.Plain "line-protocol". A field the encoder refuses is a
// *PointError (invalid_point).
func (p *point) appendLineEncoder(b []byte) ([]byte, error) {
	tags := make(map[string]string, len(p.tags))
	for _, t := range p.tags {
		tags[t.Key] = t.Value
	}
	fields := make(map[string]any, len(p.fields))
	for _, f := range p.fields {
		fields[f.Key] = f.Value()
	}
	var buf bytes.Buffer
	enc := lp.NewEncoder(&buf)
	enc.SetFieldTypeSupport(lp.UintSupport)
	enc.FailOnFieldErr(true)
	enc.SetPrecision(time.Millisecond)
	if _, err := enc.Encode(write.NewPoint(p.name, tags, fields, time.UnixMilli(p.ms))); err != nil {
		return b, &PointError{Reason: "invalid_point", Detail: err.Error()}
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

// appendLine appends p in line protocol (ms precision), without a newline.
func (p *point) appendLine(b []byte) []byte {
	b = appendEscaped(b, p.name, false)
	for _, t := range p.tags {
		b = append(b, ',')
		b = appendEscaped(b, t.Key, true)
		b = append(b, '=')
		b = appendEscaped(b, t.Value, true)
	}
	for i, f := range p.fields {
		if i == 0 {
			b = append(b, ' ')
		} else {
			b = append(b, ',')
		}
		b = appendEscaped(b, f.Key, true)
		b = append(b, '=')
		switch f.kind {
		case kindFloat:
			b = appendFloat(b, f.f)
		case kindInt:
			b = append(strconv.AppendInt(b, f.i, 10), 'i')
		case kindBool:
			b = strconv.AppendBool(b, f.b)
		case kindString:
			b = append(b, '"')
			for i := 0; i < len(f.s); i++ {
				switch c := f.s[i]; c {
				case '\t':
					b = append(b, '\\', 't')
				case '\n':
					b = append(b, '\\', 'n')
				case '\f':
					b = append(b, '\\', 'f')
				case '\r':
					b = append(b, '\\', 'r')
				case '"', '\\':
					b = append(b, '\\', c)
				default:
					b = append(b, c)
				}
			}
			b = append(b, '"')
		}
	}
	b = append(b, ' ')
	return strconv.AppendInt(b, p.ms, 10)
}

// appendEscaped appends s escaped as a measurement (tagOrKey false: comma
// and space) or as a tag key, tag value or field key (also equals sign);
// tab, newline, form feed and carriage return become \t \n \f \r.
func appendEscaped(b []byte, s string, tagOrKey bool) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		plain = !lineSpecial[s[i]]
	}
	if plain { // the usual case: ids, names and keys need no escape
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', ' ':
			b = append(b, '\\', c)
		case '=':
			if tagOrKey {
				b = append(b, '\\')
			}
			b = append(b, c)
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}

// hasLineBreak reports whether s holds a newline or a carriage return
// (strings.ContainsAny(s, "\n\r"), without its set lookup per byte).
func hasLineBreak(s string) bool {
	return strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0
}

// lineSpecial marks the bytes appendEscaped may escape.
var lineSpecial = [256]bool{',': true, ' ': true, '=': true, '\t': true, '\n': true, '\f': true, '\r': true}

// appendFloat appends v as strconv.AppendFloat(b, v, 'f', -1, 64) does:
// the shortest decimal that reads back as v. An integral v below 2^53 in
// magnitude (most vital signs: 72 bpm, 97 %) is its integer's digits, which
// strconv.AppendInt writes in a fraction of the time
// (TestAppendFloatAsStrconv).
func appendFloat(b []byte, v float64) []byte {
	if v >= -(1<<53) && v <= 1<<53 && v == float64(int64(v)) && (v != 0 || !math.Signbit(v)) {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// tags builds the tag set shared by readings and events, sorted by key:
// device, kind (if known), resident (if bound at ts), site, and extra
// (the event type) last; n is the capacity to leave for extra.
func tags(res Residents, t device.Topic, ts time.Time, extra int) []tag {
	return appendTags(make([]tag, 0, 4+extra), res, t, ts)
}

// appendTags is tags appended to out.
func appendTags(out []tag, res Residents, t device.Topic, ts time.Time) []tag {
	out = append(out, tag{"device", t.Device})
	if res != nil {
		resident, kind := res.Lookup(t.Device, ts)
		if kind != "" {
			out = append(out, tag{"kind", kind})
		}
		if resident != "" {
			out = append(out, tag{"resident", resident})
		}
	}
	return append(out, tag{"site", t.Site})
}

// readingPoints converts a decoded telemetry payload into one point per
// reading in measurement "readings": time = the reading's device ts (ms),
// tags site, device, resident (if bound at ts), kind (if known); fields =
// the values as floats, plus seq and boot as integers. The receive time
// (received_ms) is not written here: ingest adds it, with skewed=true, only
// to a reading whose device time is further than Config.Skew from it
// (Service.decode; docs/schema.md, "Clock skew").
//
// Errors: *PointError when a value name collides with seq, boot or
// received_ms ("reserved_field"), a value is not finite or seq does not fit
// an int64 ("invalid_point").
func readingPoints(tel *device.Telemetry, topic device.Topic, res Residents) ([]*point, error) {
	return readingPointsIn(new(pointScratch), tel, topic, res)
}

// pointScratch is the memory readingPointsIn builds points in. The points
// of a message live only until decode has written them as line protocol,
// so one scratch (from scratchPool) serves message after message instead
// of four allocations per message.
type pointScratch struct {
	pts    []point
	out    []*point
	fields []field
	tags   []tag
	// dec decodes the telemetry and lines holds the line protocol of one
	// message, before the item takes a copy of its exact size.
	dec   device.TelemetryDecoder
	lines []byte
}

var scratchPool = sync.Pool{New: func() any { return new(pointScratch) }}

// readingPointsIn is readingPoints building the points in sc; they are
// valid until sc is used again.
func readingPointsIn(sc *pointScratch, tel *device.Telemetry, topic device.Topic, res Residents) ([]*point, error) {
	n := len(tel.Readings)
	sc.pts = slices.Grow(sc.pts[:0], n)[:n]
	sc.out = slices.Grow(sc.out[:0], n)[:n]
	sc.fields, sc.tags = sc.fields[:0], sc.tags[:0]
	pts, out := sc.pts, sc.out
	var tg []tag
	var tgTS int64
	for i, r := range tel.Readings {
		if r.Seq > math.MaxInt64 {
			return nil, &PointError{"invalid_point", fmt.Sprintf("readings[%d].seq %d does not fit an int64", i, r.Seq)}
		}
		start := len(sc.fields)
		for name, v := range r.Values {
			switch name {
			case FieldSeq, FieldBoot, FieldReceivedMS, FieldSkewed:
				return nil, &PointError{"reserved_field", fmt.Sprintf("readings[%d].values.%s: %q is a field ingest adds to every reading", i, name, name)}
			}
			sc.fields = append(sc.fields, floatField(name, v))
		}
		sc.fields = append(sc.fields, intField(FieldSeq, int64(r.Seq)), intField(FieldBoot, int64(tel.Boot)))
		// Room for received_ms and skewed (decode adds them to a skewed
		// reading), capped so that they never overwrite the next point's.
		end := len(sc.fields)
		sc.fields = append(sc.fields, field{}, field{})
		fields := sc.fields[start : end : end+2]
		// A batch is oldest first and its resident rarely changes within
		// it: look the tags up again only when the time changes.
		if tg == nil || r.TS != tgTS {
			t0 := len(sc.tags)
			sc.tags = appendTags(sc.tags, res, topic, time.UnixMilli(r.TS))
			tg, tgTS = sc.tags[t0:len(sc.tags):len(sc.tags)], r.TS
		}
		p := &pts[i]
		*p = point{name: MeasurementReadings, tags: tg, fields: fields, ms: r.TS}
		p.sortFields()
		if err := validatePoint(p); err != nil {
			return nil, fmt.Errorf("readings[%d]: %w", i, err)
		}
		out[i] = p
	}
	return out, nil
}

// eventPoint converts a decoded event into one point in measurement
// "events": time = the event's device ts (ms), tags site, device, resident
// (if bound at ts), kind (if known) and type; fields seq, boot, received_ms,
// count=1 (integers) and one attr_<name> per attribute, typed as it came
// (string, float or bool).
func eventPoint(ev *device.Event, topic device.Topic, received time.Time, res Residents) (*point, error) {
	if ev.Seq > math.MaxInt64 {
		return nil, &PointError{"invalid_point", fmt.Sprintf("seq %d does not fit an int64", ev.Seq)}
	}
	fields := make([]field, 0, len(ev.Attrs)+5)
	for k, v := range ev.Attrs {
		f := field{Key: AttrPrefix + k}
		switch v := v.(type) {
		case float64:
			f.kind, f.f = kindFloat, v
		case string:
			f.kind, f.s = kindString, v
		case bool:
			f.kind, f.b = kindBool, v
		default:
			return nil, &PointError{"invalid_point", fmt.Sprintf("field %s: unsupported type %T", f.Key, v)}
		}
		fields = append(fields, f)
	}
	fields = append(fields, intField(FieldSeq, int64(ev.Seq)), intField(FieldBoot, int64(ev.Boot)),
		intField(FieldReceivedMS, received.UnixMilli()), intField(FieldCount, 1))
	p := &point{name: MeasurementEvents, tags: append(tags(res, topic, time.UnixMilli(ev.TS), 1), tag{"type", string(ev.Type)}),
		fields: fields, ms: ev.TS}
	p.sortFields()
	if err := validatePoint(p); err != nil {
		return nil, err
	}
	return p, nil
}

// validatePoint checks what InfluxDB would refuse and line protocol
// cannot carry: non-finite floats, empty or over-long keys, empty tag
// values, no fields, a string field over 64 KiB, a tag ending in a
// backslash or holding a newline.
func validatePoint(p *point) error {
	if len(p.fields) == 0 {
		return &PointError{"invalid_point", "no fields"}
	}
	for _, f := range p.fields {
		if f.Key == "" || len(f.Key) > 256 {
			return &PointError{"invalid_point", fmt.Sprintf("field key %q: 1-256 bytes", f.Key)}
		}
		switch f.kind {
		case kindFloat:
			if math.IsNaN(f.f) || math.IsInf(f.f, 0) {
				return &PointError{"invalid_point", fmt.Sprintf("field %s: %v is not finite", f.Key, f.f)}
			}
		case kindString:
			if len(f.s) > 64<<10 {
				return &PointError{"invalid_point", fmt.Sprintf("field %s: string of %d bytes, limit 64 KiB", f.Key, len(f.s))}
			}
		}
	}
	for _, t := range p.tags {
		if t.Key == "" || t.Value == "" || len(t.Key) > 256 || len(t.Value) > 256 {
			return &PointError{"invalid_point", fmt.Sprintf("tag %q=%q: key and value 1-256 bytes", t.Key, t.Value)}
		}
		// Spaces, commas and equals signs are escaped; a trailing
		// backslash would escape the separator after it, and InfluxDB
		// 1.8's line protocol has no way to write it.
		if strings.HasSuffix(t.Value, `\`) || strings.HasSuffix(t.Key, `\`) || hasLineBreak(t.Value) || hasLineBreak(t.Key) {
			return &PointError{"invalid_point", fmt.Sprintf("tag %q=%q: a trailing backslash or a newline cannot be written in line protocol", t.Key, t.Value)}
		}
	}
	return nil
}
