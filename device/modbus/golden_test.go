package modbus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/eldercare-iot/eldercare/device/modbus"
)

var update = flag.Bool("update", false, "rewrite the expected.json golden files in testdata/")

// registersFile is testdata/<case>/registers.json: register and bit values
// by 0-based address (decimal or 0x hex keys). Profile names a shipped
// profile when the case has no profile.yaml.
type registersFile struct {
	Profile        string            `json:"profile,omitempty"`
	Input          map[string]uint16 `json:"input,omitempty"`
	Holding        map[string]uint16 `json:"holding,omitempty"`
	Coils          map[string]bool   `json:"coils,omitempty"`
	DiscreteInputs map[string]bool   `json:"discrete_inputs,omitempty"`
}

type expectedFault struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

type expectedFile struct {
	Values map[string]float64 `json:"values"`
	Faults []expectedFault    `json:"faults"`
}

func addrs[V any](t *testing.T, in map[string]V) map[uint16]V {
	out := map[uint16]V{}
	for k, v := range in {
		a, err := strconv.ParseUint(k, 0, 16)
		if err != nil {
			t.Fatalf("registers.json: address %q: %v", k, err)
		}
		out[uint16(a)] = v
	}
	return out
}

func loadCase(t *testing.T, dir string) (*modbus.Profile, modbus.Image) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "registers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rf registersFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("registers.json: %v", err)
	}
	var p *modbus.Profile
	if rf.Profile != "" {
		p, err = modbus.LoadProfile(rf.Profile)
	} else {
		p, err = modbus.LoadProfile(filepath.Join(dir, "profile.yaml"))
	}
	if err != nil {
		t.Fatal(err)
	}
	return p, modbus.Image{Input: addrs(t, rf.Input), Holding: addrs(t, rf.Holding), Coils: addrs(t, rf.Coils), DiscreteInputs: addrs(t, rf.DiscreteInputs)}
}

func decodeCase(t *testing.T, dir string) expectedFile {
	p, im := loadCase(t, dir)
	values, faults := p.DecodeImage(im)
	got := expectedFile{Values: values, Faults: []expectedFault{}}
	for _, f := range faults {
		var sf *modbus.SensorFault
		if !errors.As(f, &sf) {
			t.Fatalf("fault %v is not a *SensorFault", f)
		}
		got.Faults = append(got.Faults, expectedFault{Field: sf.Field, Reason: sf.Reason, Error: f.Error()})
	}
	sort.Slice(got.Faults, func(i, j int) bool { return got.Faults[i].Field < got.Faults[j].Field })
	return got
}

// TestGolden decodes testdata/<case>/registers.json with the case's profile
// and compares values and sensor faults with expected.json (-update
// rewrites it).
func TestGolden(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob("testdata/*/registers.json")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases in testdata/: %v", err)
	}
	for _, f := range dirs {
		dir := filepath.Dir(f)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := decodeCase(t, dir)
			b, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			path := filepath.Join(dir, "expected.json")
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("%s differs; got\n%s\nwant\n%s", path, b, want)
			}
		})
	}
}

// TestGoldenPinned states the facts the golden files must hold, so that a
// careless -update cannot bless a wrong decoder.
func TestGoldenPinned(t *testing.T) {
	t.Parallel()
	abcd := float64(math.Float32frombits(0x000041BC)) // ~2.36e-41, a denormal
	tests := []struct {
		dir        string
		values     map[string]float64
		faultField string
		reason     string
	}{
		{dir: "f32-cdab", values: map[string]float64{"room_temp_c": 23.5, "room_temp_abcd_c": abcd}},
		{dir: "senseair-s8-65535", values: map[string]float64{"abc_period_h": 180}, faultField: "co2_ppm", reason: modbus.ReasonRange},
		{dir: "co2-u16-65535", values: map[string]float64{}, faultField: "co2_ppm", reason: modbus.ReasonRange},
		{dir: "xy-md02", values: map[string]float64{"room_temp_c": 23.5, "humidity_pct": 45.6}},
		{dir: "xy-md02-below-zero", values: map[string]float64{"room_temp_c": -10, "humidity_pct": 80}},
		{dir: "senseair-s8", values: map[string]float64{"co2_ppm": 612, "abc_period_h": 180}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			got := decodeCase(t, filepath.Join("testdata", tc.dir))
			if len(got.Values) != len(tc.values) {
				t.Errorf("values %v, want %v", got.Values, tc.values)
			}
			for k, v := range tc.values {
				if g, ok := got.Values[k]; !ok || math.Abs(g-v) > 1e-9*math.Max(1, math.Abs(v)) {
					t.Errorf("%s = %v, want %v", k, g, v)
				}
			}
			if tc.faultField != "" {
				if len(got.Faults) != 1 || got.Faults[0].Field != tc.faultField || got.Faults[0].Reason != tc.reason {
					t.Errorf("faults %+v, want one %s fault on %s", got.Faults, tc.reason, tc.faultField)
				}
			}
		})
	}
	if abcd == 23.5 {
		t.Fatal("ABCD must differ from CDAB")
	}
}

// TestDecodeOrders checks every type under every order against values
// built by hand.
func TestDecodeOrders(t *testing.T) {
	t.Parallel()
	f := math.Float32bits(-1234.5) // 0xC49A5000
	tests := []struct {
		typ   modbus.DataType
		order modbus.Order
		words []uint16
		want  float64
	}{
		{modbus.F32, modbus.ABCD, []uint16{uint16(f >> 16), uint16(f)}, -1234.5},
		{modbus.F32, modbus.CDAB, []uint16{uint16(f), uint16(f >> 16)}, -1234.5},
		{modbus.F32, modbus.BADC, []uint16{0x9AC4, 0x0050}, -1234.5},
		{modbus.F32, modbus.DCBA, []uint16{0x0050, 0x9AC4}, -1234.5},
		{modbus.F32, modbus.CDAB, []uint16{0x0000, 0x41BC}, 23.5},
		{modbus.U32, modbus.ABCD, []uint16{0x0001, 0x0002}, 65538},
		{modbus.U32, modbus.CDAB, []uint16{0x0002, 0x0001}, 65538},
		{modbus.U32, modbus.BADC, []uint16{0x0100, 0x0200}, 65538},
		{modbus.U32, modbus.DCBA, []uint16{0x0200, 0x0100}, 65538},
		{modbus.I32, modbus.ABCD, []uint16{0xFFFF, 0xFFFE}, -2},
		{modbus.I32, modbus.CDAB, []uint16{0xFFFE, 0xFFFF}, -2},
		{modbus.U16, modbus.ABCD, []uint16{0x1234}, 0x1234},
		{modbus.U16, modbus.CDAB, []uint16{0x1234}, 0x1234},
		{modbus.U16, modbus.BADC, []uint16{0x1234}, 0x3412},
		{modbus.I16, modbus.ABCD, []uint16{0xFF9C}, -100},
		{modbus.I16, modbus.DCBA, []uint16{0x9CFF}, -100},
		{modbus.Bit, modbus.ABCD, []uint16{1}, 1},
		{modbus.Bit, modbus.ABCD, []uint16{0}, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s-%s-%04x", tc.typ, tc.order, tc.words), func(t *testing.T) {
			r := modbus.Register{Field: "x", Type: tc.typ, Order: tc.order, Scale: 1, Min: -1e12, Max: 1e12}
			got, err := r.Decode(tc.words)
			if err != nil || got != tc.want {
				t.Fatalf("Decode = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestDecodeFaults: NaN, infinities and out-of-range values are sensor
// faults with their reason; a wrong word count is a plain error.
func TestDecodeFaults(t *testing.T) {
	t.Parallel()
	r := modbus.Register{Field: "voltage_v", Type: modbus.F32, Order: modbus.ABCD, Scale: 1, Unit: "V", Min: 0, Max: 300}
	tests := []struct {
		name   string
		words  []uint16
		reason string
	}{
		{"nan", []uint16{0x7FC0, 0x0000}, modbus.ReasonNaN},
		{"nan-payload", []uint16{0xFFFF, 0xFFFF}, modbus.ReasonNaN},
		{"plus-inf", []uint16{0x7F80, 0x0000}, modbus.ReasonInf},
		{"minus-inf", []uint16{0xFF80, 0x0000}, modbus.ReasonInf},
		{"above", []uint16{0x43C8, 0x0000}, modbus.ReasonRange}, // 400 V
		{"below", []uint16{0xBF80, 0x0000}, modbus.ReasonRange}, // -1 V
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Decode(tc.words)
			var sf *modbus.SensorFault
			if !errors.As(err, &sf) || sf.Reason != tc.reason {
				t.Fatalf("Decode(%04x) error %v, want a %s sensor fault", tc.words, err, tc.reason)
			}
		})
	}
	if _, err := r.Decode([]uint16{1}); err == nil {
		t.Error("one word for an f32 decoded without error")
	}
	if v, err := r.Decode([]uint16{0x4366, 0x0000}); err != nil || v != 230 {
		t.Errorf("230 V decoded as %v, %v", v, err)
	}
}
