package modbus

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eldercare-iot/eldercare/device"
)

// Function is a Modbus read function code.
type Function uint8

// The read function codes a profile may use (Modbus Application Protocol
// Specification V1.1b3, section 6).
const (
	Coils            Function = 0x01 // 1-bit read-write outputs; data type bit
	DiscreteInputs   Function = 0x02 // 1-bit read-only inputs; data type bit
	HoldingRegisters Function = 0x03 // 16-bit read-write registers
	InputRegisters   Function = 0x04 // 16-bit read-only registers
)

func (f Function) String() string {
	switch f {
	case Coils:
		return "coils"
	case DiscreteInputs:
		return "discrete inputs"
	case HoldingRegisters:
		return "holding registers"
	case InputRegisters:
		return "input registers"
	}
	return fmt.Sprintf("function 0x%02x", uint8(f))
}

// bits reports whether f reads 1-bit items (coils, discrete inputs).
func (f Function) bits() bool { return f == Coils || f == DiscreteInputs }

// DataType is how a register's raw words become a number.
type DataType string

// Data types: one 16-bit register (u16, i16), two registers (u32, i32 and
// IEEE 754 binary32 f32), or one coil/discrete input (bit, 0 or 1).
const (
	U16 DataType = "u16"
	I16 DataType = "i16"
	U32 DataType = "u32"
	I32 DataType = "i32"
	F32 DataType = "f32"
	Bit DataType = "bit"
)

// Words is the number of 16-bit registers (or bits, for Bit) the type spans.
func (t DataType) Words() int {
	switch t {
	case U32, I32, F32:
		return 2
	}
	return 1
}

// Order is the byte and word order of a value on the wire. Its letters name
// the value's bytes from the most significant (A) to the least (D), in the
// order they arrive: register 0 high byte, register 0 low byte, register 1
// high byte, register 1 low byte. ABCD is plain big-endian (Modbus's own
// order); CDAB swaps the two words ("word swap", common on PLCs and meters);
// BADC swaps the bytes in each word; DCBA is fully little-endian. For 16-bit
// types only the byte order counts: ABCD and CDAB read AB, BADC and DCBA read
// BA.
type Order string

// The four byte/word orders.
const (
	ABCD Order = "ABCD"
	CDAB Order = "CDAB"
	BADC Order = "BADC"
	DCBA Order = "DCBA"
)

// Register is one value a profile reads: where it is, how it decodes and
// which reading field it becomes.
type Register struct {
	Field    string   // reading field name with its unit suffix (protocol v1), e.g. room_temp_c
	Function Function // 0x01-0x04
	Address  uint16   // 0-based PDU address (register 30002 of the manuals is input register address 1)
	Type     DataType
	Order    Order
	Scale    float64 // multiplier applied to the raw integer or float: value = raw * Scale
	Unit     string  // the field's unit, for people (°C, %, ppm, V, A, W, kWh)
	Min, Max float64 // plausible range of the scaled value, inclusive
	// PollInterval is how often the register is read (the profile's
	// poll_interval unless the register sets its own).
	PollInterval time.Duration
	// Writable: the platform may write this register with a setpoint
	// command (Poller.Actuate). Only coils (0x01, written with function
	// 0x05) and holding registers (0x03, written with 0x06, or 0x10 for
	// two-register types) can be writable, and only where the vendor's
	// register map says so. A write to any other register is refused.
	Writable bool
}

// Profile is a device's register map: which registers a poller reads from
// one slave and how each becomes a reading field. Profiles are YAML files;
// see docs/modbus.md for every key.
type Profile struct {
	Name         string      // device name, e.g. "XY-MD02"
	Model        string      // model or variant, e.g. "SHT20 RS485 temperature and humidity sensor"
	Kind         device.Kind // device kind announced on the device's status (env_sensor, other, ...)
	Slave        uint8       // default slave (unit) id, 1-247; a device configuration may override it
	PollInterval time.Duration
	// MergeGap is the largest run of unmapped registers (or bits) a single
	// read may span to fetch two registers at once; 0 merges only adjacent
	// registers. Some devices answer "illegal data address" to any read that
	// touches an unmapped register, so the default is 0.
	MergeGap  int
	Registers []Register
}

// Limits of one read request (Modbus Application Protocol V1.1b3, 6.1-6.4).
const (
	maxReadRegisters = 125
	maxReadBits      = 2000
)

type rawProfile struct {
	Device       string        `yaml:"device"`
	Model        string        `yaml:"model"`
	Kind         string        `yaml:"kind"`
	Slave        int           `yaml:"slave"`
	PollInterval time.Duration `yaml:"poll_interval"`
	MergeGap     int           `yaml:"merge_gap"`
	Registers    []rawRegister `yaml:"registers"`
}

type rawRegister struct {
	Field        string        `yaml:"field"`
	Function     int           `yaml:"function"`
	Address      int           `yaml:"address"`
	Type         string        `yaml:"type"`
	Order        string        `yaml:"order"`
	Scale        *float64      `yaml:"scale"`
	Unit         string        `yaml:"unit"`
	Range        []float64     `yaml:"range"`
	PollInterval time.Duration `yaml:"poll_interval"`
	Writable     bool          `yaml:"writable"`
	line         int
}

// ParseProfile reads a profile from YAML. Decoding is strict: an unknown
// key is an error naming its line, and every problem found is reported
// (errors.Join), each naming the register's line and field.
func ParseProfile(r io.Reader) (*Profile, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if len(b) > 1<<20 {
		return nil, errors.New("profile: larger than 1 MiB")
	}
	var node yaml.Node
	if err := yaml.Unmarshal(b, &node); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var raw rawProfile
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("profile: empty document")
		}
		return nil, fmt.Errorf("profile: %w", err)
	}
	var more rawProfile
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("profile: more than one YAML document; one profile per file")
	}
	// Line numbers of the register list items, for messages.
	if len(node.Content) == 1 && node.Content[0].Kind == yaml.MappingNode {
		m := node.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "registers" && m.Content[i+1].Kind == yaml.SequenceNode {
				for j, item := range m.Content[i+1].Content {
					if j < len(raw.Registers) {
						raw.Registers[j].line = item.Line
					}
				}
			}
		}
	}
	return raw.profile()
}

func (raw *rawProfile) profile() (*Profile, error) {
	p := &Profile{
		Name:         strings.TrimSpace(raw.Device),
		Model:        strings.TrimSpace(raw.Model),
		Kind:         device.Kind(raw.Kind),
		PollInterval: raw.PollInterval,
		MergeGap:     raw.MergeGap,
	}
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("device: required (the device's name, e.g. XY-MD02)"))
	}
	if p.Kind == "" {
		p.Kind = device.EnvSensor
	} else if !p.Kind.Valid() {
		errs = append(errs, fmt.Errorf("kind: %q is not a device kind (%v)", raw.Kind, device.Kinds))
	}
	if raw.Slave < 1 || raw.Slave > 247 {
		errs = append(errs, fmt.Errorf("slave: %d is outside 1-247", raw.Slave))
	} else {
		p.Slave = uint8(raw.Slave)
	}
	if p.PollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: %v; want at least 100ms, e.g. 10s", p.PollInterval))
	}
	if p.MergeGap < 0 || p.MergeGap > maxReadRegisters {
		errs = append(errs, fmt.Errorf("merge_gap: %d is outside 0-%d registers", p.MergeGap, maxReadRegisters))
	}
	if len(raw.Registers) == 0 {
		errs = append(errs, errors.New("registers: at least one register is required"))
	}
	seen := map[string]int{}
	for i, rr := range raw.Registers {
		reg, err := rr.register(p.PollInterval)
		where := fmt.Sprintf("registers[%d]", i)
		if rr.line > 0 {
			where = fmt.Sprintf("line %d: registers[%d]", rr.line, i)
		}
		if rr.Field != "" {
			where += " (" + rr.Field + ")"
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if j, dup := seen[reg.Field]; dup {
			errs = append(errs, fmt.Errorf("%s: field %s already read by registers[%d]", where, reg.Field, j))
			continue
		}
		seen[reg.Field] = i
		p.Registers = append(p.Registers, reg)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("profile %s: %w", cmp(p.Name, "(unnamed)"), err)
	}
	return p, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (rr rawRegister) register(defInterval time.Duration) (Register, error) {
	r := Register{
		Field:        rr.Field,
		Function:     Function(rr.Function),
		Type:         DataType(rr.Type),
		Order:        Order(strings.ToUpper(rr.Order)),
		Unit:         rr.Unit,
		PollInterval: rr.PollInterval,
		Writable:     rr.Writable,
	}
	var errs []error
	if rr.Writable && rr.Function != int(Coils) && rr.Function != int(HoldingRegisters) {
		errs = append(errs, fmt.Errorf("writable: only coils (0x01) and holding registers (0x03) can be written, not function %d", rr.Function))
	}
	if err := device.ValidateFieldName(rr.Field); err != nil {
		errs = append(errs, fmt.Errorf("field: %q: want 1-64 characters of [a-z0-9_] starting with a letter, with a unit suffix (room_temp_c, co2_ppm)", rr.Field))
	}
	if rr.Function < 1 || rr.Function > 4 {
		errs = append(errs, fmt.Errorf("function: %d; want 0x01 coils, 0x02 discrete inputs, 0x03 holding registers or 0x04 input registers", rr.Function))
	}
	switch r.Type {
	case U16, I16, U32, I32, F32:
		if r.Function.bits() {
			errs = append(errs, fmt.Errorf("type: %s needs registers (function 0x03 or 0x04), not %s", r.Type, r.Function))
		}
	case Bit:
		if !r.Function.bits() && rr.Function >= 1 && rr.Function <= 4 {
			errs = append(errs, fmt.Errorf("type: bit needs function 0x01 (coils) or 0x02 (discrete inputs), not %s", r.Function))
		}
	default:
		errs = append(errs, fmt.Errorf("type: %q; want u16, i16, u32, i32, f32 or bit", rr.Type))
	}
	if rr.Address < 0 || rr.Address+r.Type.Words()-1 > 0xFFFF {
		errs = append(errs, fmt.Errorf("address: %d; want a 0-based PDU address 0-65535 (the value spans %d)", rr.Address, r.Type.Words()))
	} else {
		r.Address = uint16(rr.Address)
	}
	switch r.Order {
	case "":
		r.Order = ABCD
	case ABCD, CDAB, BADC, DCBA:
		if r.Type == Bit {
			errs = append(errs, errors.New("order: a bit has no byte order; remove the key"))
		}
	default:
		errs = append(errs, fmt.Errorf("order: %q; want ABCD, CDAB, BADC or DCBA", rr.Order))
	}
	r.Scale = 1
	if rr.Scale != nil {
		r.Scale = *rr.Scale
		if r.Scale == 0 || math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) {
			errs = append(errs, fmt.Errorf("scale: %v; want a finite non-zero multiplier, e.g. 0.1", r.Scale))
		}
	}
	if r.Unit == "" {
		errs = append(errs, errors.New("unit: required (°C, %, ppm, V, A, W, kWh; \"1\" for a plain number)"))
	}
	if len(rr.Range) != 2 {
		errs = append(errs, fmt.Errorf("range: want [min, max], got %d numbers", len(rr.Range)))
	} else {
		r.Min, r.Max = rr.Range[0], rr.Range[1]
		switch {
		case math.IsNaN(r.Min) || math.IsNaN(r.Max) || math.IsInf(r.Min, 0) || math.IsInf(r.Max, 0):
			errs = append(errs, errors.New("range: min and max must be finite"))
		case r.Min > r.Max:
			errs = append(errs, fmt.Errorf("range: min %v is above max %v", r.Min, r.Max))
		}
		if f, ok := device.Fields[r.Field]; ok && (r.Min < f.Min || r.Max > f.Max) {
			errs = append(errs, fmt.Errorf("range: [%v, %v] exceeds the protocol's range for %s, [%v, %v] %s (docs/protocol.md)", r.Min, r.Max, r.Field, f.Min, f.Max, f.Unit))
		}
	}
	if r.PollInterval == 0 {
		r.PollInterval = defInterval
	} else if r.PollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: %v; want at least 100ms", r.PollInterval))
	}
	return r, errors.Join(errs...)
}

//go:embed profiles/*.yaml
var shipped embed.FS

// Shipped lists the names of the profiles built into the binary
// (device/modbus/profiles/<name>.yaml), sorted.
func Shipped() []string {
	ents, _ := shipped.ReadDir("profiles")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// LoadProfile returns the shipped profile called name (see Shipped) or, when
// name contains a path separator or ends in .yaml/.yml, the profile in that
// file.
func LoadProfile(name string) (*Profile, error) {
	var (
		b   []byte
		err error
	)
	if strings.ContainsRune(name, os.PathSeparator) || strings.Contains(name, "/") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		b, err = os.ReadFile(name)
	} else {
		if !slices.Contains(Shipped(), name) {
			return nil, fmt.Errorf("profile %q: no shipped profile of that name (shipped: %s); give a path to a .yaml file for your own", name, strings.Join(Shipped(), ", "))
		}
		b, err = shipped.ReadFile(path.Join("profiles", name+".yaml"))
	}
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	p, err := ParseProfile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}
