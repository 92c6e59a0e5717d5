package device

import (
	"encoding/json"
	"time"
)

// DecodeTelemetryFast is DecodeTelemetry, faster on the payloads devices
// and gateways actually send: same results, same errors (proven by
// FuzzDecodeTelemetryFast against DecodeTelemetry).
//
// A small scanner reads the common shape of a payload (lower-case keys of
// the v1 schema without escapes, each at most once; unsigned integers for
// v, boot, id, seq and ts; a printable ASCII device id without escapes; JSON
// numbers as values) into the same intermediate form that encoding/json
// produces for DecodeTelemetry, and then the same validation runs. Anything
// else, including every malformed payload, goes to DecodeTelemetry, which
// then reports the error.
func DecodeTelemetryFast(b []byte, now time.Time, l Limits) (*Telemetry, error) {
	l = l.withDefaults()
	if len(b) <= l.MaxPayload {
		if raw, ok := scanTelemetry(b); ok {
			return raw.telemetry(now, l)
		}
	}
	return DecodeTelemetry(b, now, l)
}

// TelemetryDecoder is DecodeTelemetryFast that keeps its memory between
// calls: on the payloads the fast scanner reads, a decode allocates
// nothing but the device id (ingest's per-message cost,
// docs/benchmarks.md). The zero value is ready to use; a decoder is not
// safe for concurrent use.
type TelemetryDecoder struct {
	raw  telemetryJSON
	scan scanPools
	tel  Telemetry
	vals mapPool[float64]
}

// Decode is DecodeTelemetryFast(b, now, l): the same Telemetry and the same
// errors. The Telemetry it returns, its Readings and their Values maps
// belong to d and are valid until d's next Decode; the device id is a
// string of its own. Payloads outside the scanner's shape are decoded by
// DecodeTelemetry into new memory.
func (d *TelemetryDecoder) Decode(b []byte, now time.Time, l Limits) (*Telemetry, error) {
	l = l.withDefaults()
	if len(b) <= l.MaxPayload {
		d.scan.maps.used = 0
		if d.raw.Readings != nil {
			d.scan.readings = d.raw.Readings[:0]
		}
		d.raw = telemetryJSON{}
		if scanTelemetryInto(b, &d.raw, &d.scan) {
			d.vals.used = 0
			return d.raw.telemetryInto(&d.tel, &d.vals, now, l)
		}
	}
	return DecodeTelemetry(b, now, l)
}

// maxKeptMaps is how many values maps a decoder keeps for reuse: a batch
// of more readings allocates the rest, so a single huge batch does not pin
// its maps for good.
const maxKeptMaps = 128

// mapPool hands out empty maps, reusing up to maxKeptMaps of them from
// one decode to the next (reset sets used to 0); a nil *mapPool allocates
// every map.
type mapPool[V any] struct {
	all  []map[string]V
	used int
}

// get returns an empty map for about n entries.
func (p *mapPool[V]) get(n int) map[string]V {
	if p == nil {
		return make(map[string]V, n)
	}
	if p.used < len(p.all) {
		m := p.all[p.used]
		p.used++
		clear(m)
		return m
	}
	m := make(map[string]V, max(n, 4))
	if len(p.all) < maxKeptMaps {
		p.all = append(p.all, m)
		p.used++
	}
	return m
}

// scanPools is what the scanner reuses: its values maps and a spare
// readings slice for a batch (empty).
type scanPools struct {
	maps     mapPool[json.RawMessage]
	readings []readingJSON
}

// scanTelemetry parses b into what encoding/json would decode it to, or
// reports false when b is outside the shape it reads (not necessarily
// invalid).
func scanTelemetry(b []byte) (*telemetryJSON, bool) {
	raw := &telemetryJSON{}
	if !scanTelemetryInto(b, raw, nil) {
		return nil, false
	}
	return raw, true
}

// scanTelemetryInto is scanTelemetry into raw (zero but for the capacity
// of Readings), reusing what pools holds (nil: new memory).
func scanTelemetryInto(b []byte, raw *telemetryJSON, pools *scanPools) bool {
	s := scanner{b: b, pools: pools}
	var seen uint16
	ok := s.object(func(key []byte) bool {
		var bit uint16
		switch string(key) {
		case "v":
			bit = 1 << 0
			n, ok := s.uint(1<<31 - 1)
			raw.V = int(n)
			if !ok {
				return false
			}
		case "device":
			bit = 1 << 1
			str, ok := s.plainString()
			if !ok {
				return false
			}
			raw.Device = str
		case "boot":
			bit = 1 << 2
			n, ok := s.uint(1<<32 - 1)
			if !ok {
				return false
			}
			raw.Boot = uint32(n)
		case "id":
			bit = 1 << 3
			n, ok := s.uint(maxScanUint)
			if !ok {
				return false
			}
			raw.ID = n
		case "seq":
			bit = 1 << 4
			n, ok := s.uint(maxScanUint)
			if !ok {
				return false
			}
			raw.Seq = n
		case "ts":
			bit = 1 << 5
			n, ok := s.uint(maxScanUint)
			if !ok {
				return false
			}
			raw.TS = int64(n)
		case "values":
			bit = 1 << 6
			vals, ok := s.values()
			if !ok {
				return false
			}
			raw.Values = vals
		case "readings":
			bit = 1 << 7
			rs, ok := s.readings()
			if !ok {
				return false
			}
			raw.Readings = rs
		default:
			return false
		}
		if seen&bit != 0 {
			return false // a repeated key: encoding/json's rules apply
		}
		seen |= bit
		return true
	})
	if !ok {
		return false
	}
	s.space()
	return s.i == len(s.b)
}

// maxScanUint is the largest integer the scanner reads (18 digits): it fits
// uint64 and int64 alike.
const maxScanUint = 999_999_999_999_999_999

type scanner struct {
	b     []byte
	i     int
	pools *scanPools // reused maps and slices (nil: new ones)
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// object reads {"key": value, ...}; member is called after each key and
// its colon, with the key, and must read the value. An empty object is
// refused.
func (s *scanner) object(member func(key []byte) bool) bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	for {
		s.space()
		key, ok := s.key()
		if !ok {
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		if !member(key) {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// key reads a string of [a-z0-9_] (the characters of v1 keys and field
// names; no escapes, so its bytes are its value).
func (s *scanner) key() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			if j == start {
				return nil, false
			}
			s.i = j + 1
			return s.b[start:j], true
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_':
		default:
			return nil, false
		}
	}
	return nil, false
}

// plainString reads a string of printable ASCII without escapes.
func (s *scanner) plainString() (string, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return string(s.b[start:j]), true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return "", false
		}
	}
	return "", false
}

// uint reads an unsigned decimal integer without sign, fraction or
// exponent, at most max and 18 digits, followed by a delimiter.
func (s *scanner) uint(max uint64) (uint64, bool) {
	start := s.i
	var n uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		if s.i-start == 18 {
			return 0, false
		}
		n = n*10 + uint64(s.b[s.i]-'0')
		s.i++
	}
	if s.i == start || s.i-start > 1 && s.b[start] == '0' || n > max || !s.delimited() {
		return 0, false
	}
	return n, true
}

// delimited reports whether a value ends at s.i.
func (s *scanner) delimited() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// number reads one JSON number (RFC 8259 section 6) and returns its bytes.
func (s *scanner) number() ([]byte, bool) {
	start := s.i
	b := s.b
	digits := func() bool {
		d := s.i
		for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
			s.i++
		}
		return s.i > d
	}
	if s.i < len(b) && b[s.i] == '-' {
		s.i++
	}
	if s.i < len(b) && b[s.i] == '0' {
		s.i++
	} else if s.i >= len(b) || b[s.i] < '1' || b[s.i] > '9' || !digits() {
		return nil, false
	}
	if s.i < len(b) && b[s.i] == '.' {
		s.i++
		if !digits() {
			return nil, false
		}
	}
	if s.i < len(b) && (b[s.i] == 'e' || b[s.i] == 'E') {
		s.i++
		if s.i < len(b) && (b[s.i] == '+' || b[s.i] == '-') {
			s.i++
		}
		if !digits() {
			return nil, false
		}
	}
	if !s.delimited() {
		return nil, false
	}
	return b[start:s.i], true
}

// values reads {"name": number, ...}: a non-empty object of numbers with
// distinct names. The numbers alias s.b.
func (s *scanner) values() (map[string]json.RawMessage, bool) {
	var maps *mapPool[json.RawMessage]
	if s.pools != nil {
		maps = &s.pools.maps
	}
	vals := maps.get(4)
	ok := s.object(func(key []byte) bool {
		num, ok := s.number()
		if !ok {
			return false
		}
		if _, dup := vals[string(key)]; dup {
			return false
		}
		name, known := fieldNames[string(key)] // the known names without an allocation
		if !known {
			name = string(key)
		}
		vals[name] = num
		return true
	})
	return vals, ok
}

// readings reads a non-empty array of {"seq": n, "ts": n, "values": {...}}.
func (s *scanner) readings() ([]readingJSON, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return nil, false
	}
	s.i++
	var rs []readingJSON
	if s.pools != nil && s.pools.readings != nil {
		rs, s.pools.readings = s.pools.readings, nil
	} else {
		rs = make([]readingJSON, 0, 8)
	}
	for {
		s.space()
		var r readingJSON
		var seen uint8
		ok := s.object(func(key []byte) bool {
			var bit uint8
			var ok bool
			switch string(key) {
			case "seq":
				bit = 1
				r.Seq, ok = s.uint(maxScanUint)
			case "ts":
				bit = 2
				var n uint64
				n, ok = s.uint(maxScanUint)
				r.TS = int64(n)
			case "values":
				bit = 4
				r.Values, ok = s.values()
			}
			if !ok || seen&bit != 0 {
				return false
			}
			seen |= bit
			return true
		})
		if !ok {
			return nil, false
		}
		rs = append(rs, r)
		s.space()
		if s.i >= len(s.b) {
			return nil, false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return rs, true
		default:
			return nil, false
		}
	}
}

// fieldNames maps each name of Fields to itself, so that the scanner uses
// one string for a known value name instead of allocating it per reading.
var fieldNames = func() map[string]string {
	m := make(map[string]string, len(Fields))
	for name := range Fields {
		m[name] = name
	}
	return m
}()
