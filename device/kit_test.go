package device

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestSafetyKitEvents decodes the events of the home safety kit, medication,
// location and visits as a plain MQTT device would send them
// (docs/protocol.md), and refuses those missing a required attribute.
func TestSafetyKitEvents(t *testing.T) {
	ms := itoa(now.UnixMilli())
	ev := func(typ, attrs string) string {
		return `{"v":1,"device":"d-1","boot":1,"id":1,"seq":1,"ts":` + ms + `,"type":"` + typ + `"` + attrs + `}`
	}
	tests := []struct{ name, in, field, rule string }{
		{"smoke", ev("smoke", ``), "", ""},
		{"gas", ev("gas", `,"attrs":{"gas_lel_pct":12}`), "", ""},
		{"gas above 100 %LEL", ev("gas", `,"attrs":{"gas_lel_pct":120}`), "attrs.gas_lel_pct", "range"},
		{"water leak", ev("water_leak", ``), "", ""},
		{"alarm test", ev("alarm_test", `,"attrs":{"result":"ok"}`), "", ""},
		{"tamper", ev("tamper", ``), "", ""},
		{"door open", ev("contact_open", `,"attrs":{"location":"front_door"}`), "", ""},
		{"motion", ev("motion", ``), "", ""},
		{"pull cord", ev("sos", `,"attrs":{"location":"bathroom","source":"pull_cord"}`), "", ""},
		{"sos with position", ev("sos", `,"attrs":{"lat_deg":31.23,"lon_deg":121.47,"accuracy_m":8}`), "", ""},
		{"sos bad latitude", ev("sos", `,"attrs":{"lat_deg":131.23}`), "attrs.lat_deg", "range"},
		{"location not a string", ev("sos", `,"attrs":{"location":3}`), "attrs.location", "type"},
		{"valve closed", ev("valve_closed", `,"attrs":{"command":"c-1"}`), "", ""},
		{"dose taken", ev("dose_taken", `,"attrs":{"slot":"08:00","compartment":3}`), "", ""},
		{"dose without slot", ev("dose_taken", `,"attrs":{"compartment":3}`), "attrs.slot", "required"},
		{"zone", ev("zone", `,"attrs":{"zone":"kitchen"}`), "", ""},
		{"zone without name", ev("zone", ``), "attrs.zone", "required"},
		{"check-in by card", ev("check_in", `,"attrs":{"method":"card","card":"0xA1B2"}`), "", ""},
		{"check-in by app", ev("check_in", `,"attrs":{"method":"app","staff":"u-7"}`), "", ""},
		{"check-in card missing", ev("check_in", `,"attrs":{"method":"reader"}`), "attrs.card", "required"},
		{"check-in bad method", ev("check_in", `,"attrs":{"method":"pigeon"}`), "attrs.method", "one_of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tc.in), now, Limits{})
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !hasRule(err, tc.field, tc.rule) {
				t.Fatalf("error %v, want field %s rule %s", err, tc.field, tc.rule)
			}
		})
	}
}

// TestSafetyKitReadings: the 0|1 states and positions are range-checked.
func TestSafetyKitReadings(t *testing.T) {
	ms := itoa(now.UnixMilli())
	tel := func(values string) string {
		return `{"v":1,"device":"d-1","boot":1,"id":1,"seq":1,"ts":` + ms + `,"values":{` + values + `}}`
	}
	for _, tc := range []struct{ name, in, field string }{
		{"states", tel(`"smoke":1,"gas":0,"water_leak":0,"open":1,"motion":1,"valve_open":0,"siren_on":0,"tamper":0`), ""},
		{"position", tel(`"lat_deg":31.2304,"lon_deg":121.4737,"accuracy_m":12.5`), ""},
		{"mattress", tel(`"hr_bpm":62,"resp_per_min":14,"in_bed":1`), ""},
		{"fridge", tel(`"appliance_temp_c":4.5`), ""},
		{"smoke 2", tel(`"smoke":2`), "values.smoke"},
		{"longitude", tel(`"lon_deg":181`), "values.lon_deg"},
		{"negative accuracy", tel(`"accuracy_m":-1`), "values.accuracy_m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTelemetry([]byte(tc.in), now, Limits{})
			if tc.field == "" && err != nil {
				t.Fatal(err)
			}
			if tc.field != "" && !hasRule(err, tc.field, "range") {
				t.Fatalf("error %v, want a range error on %s", err, tc.field)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	c, err := NewCommand("c-1", "valve-1", ActionValveClose, nil, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	want := `{"v":1,"id":"c-1","ts":1795939200000,"device":"valve-1","action":"valve_close","expires":1795939260000}`
	if string(b) != want {
		t.Errorf("command JSON\n%s\nwant\n%s", b, want)
	}
	d, err := DecodeCommand(b, Limits{})
	if err != nil || d.Action != ActionValveClose || !d.Expired(now.Add(61*time.Second)) || d.Expired(now.Add(59*time.Second)) {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	if f, v, ok := Confirms(ActionValveClose); !ok || f != "valve_open" || v != 0 {
		t.Errorf("Confirms(valve_close) = %s %g %v", f, v, ok)
	}
	if got := CommandTopic("", "home-1", "valve-1"); got != "eldercare/v1/home-1/valve-1/cmd" {
		t.Errorf("CommandTopic = %s", got)
	}
	if !slices.Contains(Actions(Valve), ActionValveClose) || slices.Contains(Actions(MotionSensor), ActionValveClose) {
		t.Errorf("Actions: valve %v, motion %v", Actions(Valve), Actions(MotionSensor))
	}
	for _, tc := range []struct {
		name, in, field, rule string
	}{
		{"no action", `{"v":1,"id":"c","ts":1,"device":"d"}`, "action", "one_of"},
		{"unknown action", `{"v":1,"id":"c","ts":1,"device":"d","action":"explode"}`, "action", "one_of"},
		{"no id", `{"v":1,"ts":1,"device":"d","action":"ping"}`, "id", "required"},
		{"expires before ts", `{"v":1,"id":"c","ts":10,"device":"d","action":"ping","expires":5}`, "expires", "range"},
		{"setpoint without field", `{"v":1,"id":"c","ts":1,"device":"d","action":"setpoint","params":{"value":3}}`, "params.field", "required"},
		{"setpoint without value", `{"v":1,"id":"c","ts":1,"device":"d","action":"setpoint","params":{"field":"abc_period_h"}}`, "params.value", "required"},
		{"siren too long", `{"v":1,"id":"c","ts":1,"device":"d","action":"siren_on","params":{"duration_s":3600}}`, "params.duration_s", "range"},
		{"old name key", `{"v":1,"id":"c","ts":1,"device":"d","name":"ping"}`, "name", "unknown_field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand([]byte(tc.in), Limits{})
			if !hasRule(err, tc.field, tc.rule) {
				t.Fatalf("error %v, want field %s rule %s", err, tc.field, tc.rule)
			}
		})
	}
}

func TestCommandAck(t *testing.T) {
	c := Command{V: 1, ID: "c-1", TS: 1, Device: "m-1", Action: ActionSetpoint}
	a := AckFor(c, "m-1", now, Refused(ReasonNotWritable, "register %s is not writable", "co2_ppm"))
	b, _ := json.Marshal(a)
	want := `{"v":1,"device":"m-1","id":"c-1","ts":1795939200000,"action":"setpoint","status":"refused","reason":"not_writable","error":"register co2_ppm is not writable"}`
	if string(b) != want {
		t.Errorf("ack JSON\n%s\nwant\n%s", b, want)
	}
	if _, err := DecodeCommandAck(b, Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCommandAck([]byte(`{"v":1,"device":"m-1","id":"c-1","ts":1,"status":"failed"}`), Limits{}); !hasRule(err, "reason", "required") {
		t.Errorf("failed ack without a reason: %v", err)
	}
	if _, err := DecodeCommandAck([]byte(`{"v":1,"device":"m-1","id":"c-1","ts":1,"status":"ok"}`), Limits{}); !hasRule(err, "status", "one_of") {
		t.Errorf("status ok: %v", err)
	}
}

// FuzzDecodeCommand: the gateway decodes whatever arrives on a cmd topic;
// it never panics, and what it accepts re-encodes to a command that
// decodes again.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"c-1","ts":1,"device":"valve-1","action":"valve_close","expires":2}`))
	f.Add([]byte(`{"v":1,"id":"c-2","ts":1,"device":"co2-1","action":"setpoint","params":{"field":"abc_period_h","value":0}}`))
	f.Add([]byte(`{"v":1,"id":"c-3","ts":1,"device":"s-1","action":"siren_on","params":{"duration_s":1e400}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b, Limits{})
		if err != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted %s but cannot re-encode: %v", b, err)
		}
		if _, err := DecodeCommand(out, Limits{}); err != nil {
			t.Fatalf("accepted %s, re-encoded %s is refused: %v", b, out, err)
		}
	})
}

// FuzzDecodeCommandAck: likewise for the acks the platform reads.
func FuzzDecodeCommandAck(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"m-1","id":"c-1","ts":1,"status":"refused","reason":"not_writable","error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeCommandAck(b, Limits{})
		if err != nil {
			return
		}
		out, _ := json.Marshal(a)
		if _, err := DecodeCommandAck(out, Limits{}); err != nil {
			t.Fatalf("accepted %s, re-encoded %s is refused: %v", b, out, err)
		}
	})
}
