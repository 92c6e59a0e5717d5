package ingest

import (
	"fmt"
	"math"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

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

// tags builds the tag set shared by readings and events; resident and kind
// are omitted when empty.
func tags(res Residents, t device.Topic, ts time.Time) map[string]string {
	m := map[string]string{"site": t.Site, "device": t.Device}
	if res != nil {
		resident, kind := res.Lookup(t.Device, ts)
		if resident != "" {
			m["resident"] = resident
		}
		if kind != "" {
			m["kind"] = kind
		}
	}
	return m
}

// readingPoints converts a decoded telemetry payload into one point per
// reading in measurement "readings": time = the reading's device ts (ms),
// tags site, device, resident (if bound at ts), kind (if known); fields =
// the values as floats, plus seq, boot and received_ms as integers.
//
// Errors: *PointError when a value name collides with seq, boot or
// received_ms ("reserved_field"), a value is not finite or seq does not fit
// an int64 ("invalid_point").
func readingPoints(tel *device.Telemetry, topic device.Topic, received time.Time, res Residents) ([]*write.Point, error) {
	pts := make([]*write.Point, 0, len(tel.Readings))
	for i, r := range tel.Readings {
		if r.Seq > math.MaxInt64 {
			return nil, &PointError{"invalid_point", fmt.Sprintf("readings[%d].seq %d does not fit an int64", i, r.Seq)}
		}
		fields := make(map[string]any, len(r.Values)+3)
		for name, v := range r.Values {
			switch name {
			case FieldSeq, FieldBoot, FieldReceivedMS:
				return nil, &PointError{"reserved_field", fmt.Sprintf("readings[%d].values.%s: %q is a field ingest adds to every reading", i, name, name)}
			}
			fields[name] = v
		}
		fields[FieldSeq] = int64(r.Seq)
		fields[FieldBoot] = int64(tel.Boot)
		fields[FieldReceivedMS] = received.UnixMilli()
		ts := time.UnixMilli(r.TS)
		p := write.NewPoint(MeasurementReadings, tags(res, topic, ts), fields, ts)
		if err := validatePoint(p); err != nil {
			return nil, fmt.Errorf("readings[%d]: %w", i, err)
		}
		pts = append(pts, p)
	}
	return pts, nil
}

// eventPoint converts a decoded event into one point in measurement
// "events": time = the event's device ts (ms), tags site, device, resident
// (if bound at ts), kind (if known) and type; fields seq, boot, received_ms,
// count=1 (integers) and one attr_<name> per attribute, typed as it came
// (string, float or bool).
func eventPoint(ev *device.Event, topic device.Topic, received time.Time, res Residents) (*write.Point, error) {
	if ev.Seq > math.MaxInt64 {
		return nil, &PointError{"invalid_point", fmt.Sprintf("seq %d does not fit an int64", ev.Seq)}
	}
	fields := make(map[string]any, len(ev.Attrs)+4)
	for k, v := range ev.Attrs {
		fields[AttrPrefix+k] = v
	}
	fields[FieldSeq] = int64(ev.Seq)
	fields[FieldBoot] = int64(ev.Boot)
	fields[FieldReceivedMS] = received.UnixMilli()
	fields[FieldCount] = int64(1)
	ts := time.UnixMilli(ev.TS)
	tg := tags(res, topic, ts)
	tg["type"] = string(ev.Type)
	p := write.NewPoint(MeasurementEvents, tg, fields, ts)
	if err := validatePoint(p); err != nil {
		return nil, err
	}
	return p, nil
}

// validatePoint checks what InfluxDB would refuse and the line-protocol
// encoder cannot escape: non-finite floats, empty or over-long keys, empty
// tag values, no fields, a time outside InfluxDB's range.
func validatePoint(p *write.Point) error {
	if len(p.FieldList()) == 0 {
		return &PointError{"invalid_point", "no fields"}
	}
	for _, f := range p.FieldList() {
		if f.Key == "" || len(f.Key) > 256 {
			return &PointError{"invalid_point", fmt.Sprintf("field key %q: 1-256 bytes", f.Key)}
		}
		switch v := f.Value.(type) {
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return &PointError{"invalid_point", fmt.Sprintf("field %s: %v is not finite", f.Key, v)}
			}
		case string:
			if len(v) > 64<<10 {
				return &PointError{"invalid_point", fmt.Sprintf("field %s: string of %d bytes, limit 64 KiB", f.Key, len(v))}
			}
		case int64, bool:
		default:
			return &PointError{"invalid_point", fmt.Sprintf("field %s: unsupported type %T", f.Key, f.Value)}
		}
	}
	for _, t := range p.TagList() {
		if t.Key == "" || t.Value == "" || len(t.Key) > 256 || len(t.Value) > 256 {
			return &PointError{"invalid_point", fmt.Sprintf("tag %q=%q: key and value 1-256 bytes", t.Key, t.Value)}
		}
	}
	return nil
}
