package modbus_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/modbus"
)

func TestShippedProfiles(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"xy-md02":     {"room_temp_c", "humidity_pct"},
		"senseair-s8": {"co2_ppm", "abc_period_h"},
		"sdm120":      {"voltage_v", "current_a", "power_w", "apparent_power_va", "reactive_power_var", "power_factor", "frequency_hz", "energy_kwh", "export_energy_kwh", "total_energy_kwh"},
	}
	if got := modbus.Shipped(); len(got) != len(want) {
		t.Fatalf("Shipped() = %v, want the %d profiles %v", got, len(want), want)
	}
	for name, fields := range want {
		t.Run(name, func(t *testing.T) {
			p, err := modbus.LoadProfile(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Registers) != len(fields) {
				t.Fatalf("%d registers, want %d", len(p.Registers), len(fields))
			}
			for i, f := range fields {
				r := p.Registers[i]
				fn := modbus.InputRegisters
				if r.Writable {
					fn = modbus.HoldingRegisters // only the S8's ABC period (HR32) is declared writable
				}
				if r.Field != f || r.Function != fn || r.PollInterval != 10*time.Second || r.Writable != (f == "abc_period_h") {
					t.Errorf("register %d = %+v, want field %s, %s, 10s", i, r, f, fn)
				}
			}
		})
	}
	if _, err := modbus.LoadProfile("no-such-device"); err == nil || !strings.Contains(err.Error(), "xy-md02") {
		t.Errorf("unknown profile error %v should list the shipped ones", err)
	}
}

const goodProfile = `device: T
slave: 3
poll_interval: 5s
registers:
  - field: room_temp_c
    function: 0x04
    address: 1
    type: i16
    scale: 0.1
    unit: °C
    range: [-40, 80]
    poll_interval: 2s
`

func TestParseProfile(t *testing.T) {
	t.Parallel()
	p, err := modbus.ParseProfile(strings.NewReader(goodProfile))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Registers[0]
	if p.Slave != 3 || p.PollInterval != 5*time.Second || r.PollInterval != 2*time.Second || r.Scale != 0.1 || r.Order != modbus.ABCD || r.Min != -40 || r.Max != 80 {
		t.Errorf("parsed %+v %+v", p, r)
	}

	bad := []struct {
		name, yaml string
		want       []string // every substring must appear in the error
	}{
		{"unknown key names its line", strings.Replace(goodProfile, "    unit: °C\n", "    unit: °C\n    colour: red\n", 1), []string{"line 11", "colour"}},
		{"unknown top-level key", "devise: T\n" + goodProfile, []string{"line 1", "devise"}},
		{"slave out of range", strings.Replace(goodProfile, "slave: 3", "slave: 248", 1), []string{"slave: 248"}},
		{"every problem reported", strings.NewReplacer("type: i16", "type: float", "range: [-40, 80]", "range: [80, -40]", "function: 0x04", "function: 7").Replace(goodProfile),
			[]string{"line 5: registers[0] (room_temp_c)", "type: \"float\"", "min 80 is above max -40", "function: 7"}},
		{"range wider than the protocol's", strings.Replace(goodProfile, "[-40, 80]", "[-50, 80]", 1), []string{"exceeds the protocol's range"}},
		{"bit needs coils", strings.Replace(goodProfile, "type: i16", "type: bit", 1), []string{"bit needs function 0x01"}},
		{"f32 spans past 65535", strings.NewReplacer("type: i16", "type: f32", "address: 1", "address: 65535").Replace(goodProfile), []string{"address: 65535"}},
		{"bad order", strings.Replace(goodProfile, "type: i16", "type: i16\n    order: ACBD", 1), []string{"order: \"ACBD\""}},
		{"zero scale", strings.Replace(goodProfile, "scale: 0.1", "scale: 0", 1), []string{"scale: 0"}},
		{"bad field name", strings.Replace(goodProfile, "field: room_temp_c", "field: Room Temp", 1), []string{"field: \"Room Temp\""}},
		{"duplicate field", goodProfile + "  - {field: room_temp_c, function: 4, address: 2, type: u16, unit: x, range: [0, 1]}\n", []string{"already read by registers[0]"}},
		{"no registers", "device: T\nslave: 1\npoll_interval: 1s\n", []string{"at least one register"}},
		{"short interval", strings.Replace(goodProfile, "poll_interval: 5s", "poll_interval: 1ms", 1), []string{"poll_interval: 1ms"}},
		{"empty", "", []string{"empty"}},
		{"two documents", goodProfile + "---\n" + goodProfile, []string{"more than one"}},
		{"not yaml", "device: [", []string{"profile"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := modbus.ParseProfile(strings.NewReader(tc.yaml))
			if err == nil {
				t.Fatal("parsed without error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(goodProfile))
	for _, name := range modbus.Shipped() {
		if b, err := modbus.ShippedBytes(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("registers: [{type: f32, address: 65535}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := modbus.ParseProfile(bytes.NewReader(b))
		if err != nil {
			return
		}
		// A parsed profile is valid: every register decodes its zero words
		// without panicking and within its declared shape.
		if p.Slave < 1 || p.Slave > 247 || len(p.Registers) == 0 {
			t.Fatalf("accepted profile with slave %d and %d registers", p.Slave, len(p.Registers))
		}
		for _, r := range p.Registers {
			if r.Min > r.Max || r.Scale == 0 || r.PollInterval <= 0 {
				t.Fatalf("accepted register %+v", r)
			}
			r.Decode(make([]uint16, r.Type.Words()))
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add("f32", "CDAB", uint16(0x0000), uint16(0x41BC), 1.0)
	f.Add("i16", "BADC", uint16(0xFF9C), uint16(0), 0.1)
	f.Add("u32", "DCBA", uint16(0xFFFF), uint16(0xFFFF), 1e-3)
	f.Add("f32", "ABCD", uint16(0x7FC0), uint16(0), 1.0)
	f.Fuzz(func(t *testing.T, typ, order string, w0, w1 uint16, scale float64) {
		r := modbus.Register{Field: "x", Type: modbus.DataType(typ), Order: modbus.Order(order), Scale: scale, Min: -1e6, Max: 1e6}
		words := []uint16{w0, w1}[:max(1, r.Type.Words())]
		v, err := r.Decode(words)
		if err == nil && (v < r.Min || v > r.Max || v != v) {
			t.Fatalf("Decode(%04x) = %v without error, outside [%v, %v]", words, v, r.Min, r.Max)
		}
	})
}
