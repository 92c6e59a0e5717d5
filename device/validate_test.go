package device

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

func TestDecodeTelemetry(t *testing.T) {
	ms := now.UnixMilli()
	good := `{"v":1,"device":"vm-1","boot":2,"id":9,"seq":90,"ts":` + itoa(ms) + `,"values":{"hr_bpm":81,"spo2_pct":97}}`
	tests := []struct {
		name, in    string
		field, rule string // empty: valid
	}{
		{"single", good, "", ""},
		{"batch", `{"v":1,"device":"vm-1","boot":2,"id":9,"readings":[{"seq":1,"ts":` + itoa(ms-1000) + `,"values":{"hr_bpm":80}},{"seq":2,"ts":` + itoa(ms) + `,"values":{"hr_bpm":81}}]}`, "", ""},
		{"not json", `hello`, "payload", "json"},
		{"truncated", `{"v":1,"device":"vm-1"`, "payload", "json"},
		{"missing ts", `{"v":1,"device":"vm-1","id":1,"values":{"hr_bpm":80}}`, "ts", "required"},
		{"missing device", `{"v":1,"id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}`, "device", "required"},
		{"missing values", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `}`, "values", "required"},
		{"wrong type value", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":"80"}}`, "values.hr_bpm", "type"},
		{"wrong type ts", `{"v":1,"device":"vm-1","id":1,"ts":"now","values":{"hr_bpm":80}}`, "ts", "type"},
		{"NaN string", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"spo2_pct":"NaN"}}`, "values.spo2_pct", "type"},
		{"NaN bare", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"spo2_pct":NaN}}`, "payload", "json"},
		{"null value", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"spo2_pct":null}}`, "values.spo2_pct", "type"},
		{"huge number", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"x":1e999}}`, "values.x", "finite"},
		{"1970", `{"v":1,"device":"vm-1","id":1,"ts":5000,"values":{"hr_bpm":80}}`, "ts", "too_old"},
		{"seconds", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms/1000) + `,"values":{"hr_bpm":80}}`, "ts", "unit_ms"},
		{"hour ahead", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms+3600_000) + `,"values":{"hr_bpm":80}}`, "ts", "future"},
		{"out of range", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"spo2_pct":140}}`, "values.spo2_pct", "range"},
		{"bad field name", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"Heart Rate":80}}`, "values.Heart Rate", "name"},
		{"unknown field", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80},"extra":1}`, "extra", "unknown_field"},
		{"wrong version", `{"v":2,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}`, "v", "version"},
		{"device charset", `{"v":1,"device":"vm/1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}`, "device", "charset"},
		{"both forms", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80},"readings":[]}`, "readings", "exclusive"},
		{"seq not increasing", `{"v":1,"device":"vm-1","id":1,"readings":[{"seq":2,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}},{"seq":2,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}]}`, "readings[1].seq", "increasing"},
		{"batch bad item", `{"v":1,"device":"vm-1","id":1,"readings":[{"seq":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}},{"seq":2,"ts":5,"values":{"hr_bpm":80}}]}`, "readings[1].ts", "too_old"},
		{"trailing data", good + `{}`, "payload", "json"},
		{"null payload", `null`, "payload", "json"},
		{"array payload", `[]`, "payload", "json"},
		{"string payload", `"x"`, "payload", "json"},
		{"missing seq", `{"v":1,"device":"vm-1","id":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}`, "seq", "required"},
		{"batch seq zero", `{"v":1,"device":"vm-1","id":1,"readings":[{"seq":0,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}},{"seq":0,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}}]}`, "readings[0].seq", "required"},
		{"batch ts descending", `{"v":1,"device":"vm-1","id":1,"readings":[{"seq":1,"ts":` + itoa(ms) + `,"values":{"hr_bpm":80}},{"seq":2,"ts":` + itoa(ms-1000) + `,"values":{"hr_bpm":80}}]}`, "readings[1].ts", "increasing"},
		{"in_bed half", `{"v":1,"device":"vm-1","id":1,"seq":1,"ts":` + itoa(ms) + `,"values":{"in_bed":0.5}}`, "values.in_bed", "one_of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tel, err := DecodeTelemetry([]byte(tc.in), now, Limits{})
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(tel.Readings) == 0 || tel.Values != nil {
					t.Fatalf("not normalised: %+v", tel)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %s", tc.in)
			}
			if !hasRule(err, tc.field, tc.rule) {
				t.Fatalf("error %q does not name field %q rule %q", err, tc.field, tc.rule)
			}
		})
	}
}

func TestDecodeTelemetrySize(t *testing.T) {
	big := `{"v":1,"device":"vm-1","id":1,"ts":1,"values":{"x":1` + strings.Repeat(" ", 300<<10) + `}}`
	_, err := DecodeTelemetry([]byte(big), now, Limits{})
	if !hasRule(err, "payload", "size") {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeEvent(t *testing.T) {
	ms := itoa(now.UnixMilli())
	tests := []struct{ name, in, field, rule string }{
		{"fall", `{"v":1,"device":"fd-1","boot":1,"id":1,"seq":1,"ts":` + ms + `,"type":"fall","attrs":{"peak_accel_ms2":61.2}}`, "", ""},
		{"meal", `{"v":1,"device":"mt-1","boot":1,"id":1,"seq":1,"ts":` + ms + `,"type":"meal","attrs":{"card":"04A1","meal":"lunch","eaten_pct":75}}`, "", ""},
		{"meal no card", `{"v":1,"device":"mt-1","id":1,"ts":` + ms + `,"type":"meal","attrs":{"meal":"lunch","eaten_pct":75}}`, "attrs.card", "required"},
		{"meal pct", `{"v":1,"device":"mt-1","id":1,"ts":` + ms + `,"type":"meal","attrs":{"card":"x","meal":"lunch","eaten_pct":175}}`, "attrs.eaten_pct", "range"},
		{"unknown type", `{"v":1,"device":"fd-1","id":1,"ts":` + ms + `,"type":"explode"}`, "type", "one_of"},
		{"nested attr", `{"v":1,"device":"fd-1","id":1,"ts":` + ms + `,"type":"fall","attrs":{"x":{"y":1}}}`, "attrs.x", "type"},
		{"missing seq", `{"v":1,"device":"fd-1","id":1,"ts":` + ms + `,"type":"fall"}`, "seq", "required"},
		{"peak as string", `{"v":1,"device":"fd-1","id":1,"seq":1,"ts":` + ms + `,"type":"fall","attrs":{"peak_accel_ms2":"high"}}`, "attrs.peak_accel_ms2", "type"},
		{"confidence range", `{"v":1,"device":"fd-1","id":1,"seq":1,"ts":` + ms + `,"type":"fall","attrs":{"confidence":7}}`, "attrs.confidence", "range"},
		{"battery string", `{"v":1,"device":"fd-1","id":1,"seq":1,"ts":` + ms + `,"type":"low_battery","attrs":{"battery_pct":"abc"}}`, "attrs.battery_pct", "type"},
		{"attr name backslash", `{"v":1,"device":"fd-1","id":1,"seq":1,"ts":` + ms + `,"type":"fall","attrs":{"x\\":1}}`, "attrs.x\\", "name"},
		{"null attr", `{"v":1,"device":"fd-1","id":1,"seq":1,"ts":` + ms + `,"type":"fall","attrs":{"confidence":null}}`, "attrs.confidence", "type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tc.in), now, Limits{})
			if tc.rule == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !hasRule(err, tc.field, tc.rule) {
				t.Fatalf("error %v does not name %s/%s", err, tc.field, tc.rule)
			}
		})
	}
}

func TestTopics(t *testing.T) {
	tp := Topic{Root: "test-a/x", Site: "s1", Device: "vm-1", Channel: ChanTelemetry}
	got, err := ParseTopic("test-a/x", tp.String())
	if err != nil || got != tp {
		t.Fatalf("roundtrip: %+v %v", got, err)
	}
	ack, err := ParseTopic("", "eldercare/v1/s1/vm-1/cmd/ack")
	if err != nil || ack.Channel != ChanCommandAck {
		t.Fatalf("cmd/ack: %+v %v", ack, err)
	}
	for _, bad := range []string{"eldercare/v1/s1/vm-1", "eldercare/v2/s1/d/telemetry", "eldercare/v1/s 1/d/telemetry", "eldercare/v1/s1/d/foo", "eldercare/v1/s1/+/event"} {
		if _, err := ParseTopic("", bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if s := Subscription("r", ChanEvent); s != "r/v1/+/+/event" {
		t.Fatal(s)
	}
}

func FuzzDecodeTelemetry(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"vm-1","boot":2,"id":9,"seq":90,"ts":1764400000000,"values":{"hr_bpm":81}}`))
	f.Add([]byte(`{"v":1,"device":"vm-1","readings":[{"seq":1,"ts":1764400000000,"values":{"x":1}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tel, err := DecodeTelemetry(b, now, Limits{})
		if err == nil {
			for _, r := range tel.Readings {
				if len(r.Values) == 0 {
					t.Fatal("accepted a reading without values")
				}
			}
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"fd-1","boot":1,"id":1,"seq":1,"ts":1764400000000,"type":"fall"}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = DecodeEvent(b, now, Limits{}) })
}

func hasRule(err error, field, rule string) bool {
	if err == nil {
		return false
	}
	var found bool
	var walk func(error)
	walk = func(e error) {
		var ve *ValidationError
		if v, ok := e.(*ValidationError); ok {
			ve = v
		}
		if ve != nil && ve.Field == field && ve.Rule == rule {
			found = true
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
		}
	}
	walk(err)
	return found
}

func itoa(n int64) string { return strconvFormat(n) }

func strconvFormat(n int64) string { return strconv.FormatInt(n, 10) }
