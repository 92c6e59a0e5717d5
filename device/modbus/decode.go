package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Sensor fault reasons (the reason label of
// eldercare_gateway_modbus_sensor_faults_total).
const (
	ReasonRange   = "range"   // the scaled value is outside the register's plausible range
	ReasonNaN     = "nan"     // an f32 register holds a NaN
	ReasonInf     = "inf"     // an f32 register holds an infinity
	ReasonMissing = "missing" // the register was not read (a decoding input without it)
)

// SensorFault is a register whose value must not be published: NaN, an
// infinity, or a value outside its plausible range. The poller hands it to
// Sink.Fault and counts it; it never becomes a reading.
type SensorFault struct {
	Field  string
	Reason string  // ReasonRange, ReasonNaN, ReasonInf or ReasonMissing
	Value  float64 // the decoded, scaled value (NaN/Inf as read)
	Min    float64
	Max    float64
	Unit   string
}

func (f *SensorFault) Error() string {
	switch f.Reason {
	case ReasonRange:
		return fmt.Sprintf("sensor fault: %s = %v %s is outside its plausible range [%v, %v]", f.Field, f.Value, f.Unit, f.Min, f.Max)
	case ReasonMissing:
		return fmt.Sprintf("sensor fault: %s: register not read", f.Field)
	}
	return fmt.Sprintf("sensor fault: %s = %v: not a finite number", f.Field, f.Value)
}

// Image is a snapshot of a slave's data: 16-bit registers and bits by
// 0-based PDU address. A poller fills it from its reads; tests fill it from
// registers.json.
type Image struct {
	Coils          map[uint16]bool
	DiscreteInputs map[uint16]bool
	Holding        map[uint16]uint16
	Input          map[uint16]uint16
}

// words returns the n registers of table f at addr, or false when any is
// missing.
func (im Image) words(f Function, addr uint16, n int) ([]uint16, bool) {
	var tab map[uint16]uint16
	var bits map[uint16]bool
	switch f {
	case HoldingRegisters:
		tab = im.Holding
	case InputRegisters:
		tab = im.Input
	case Coils:
		bits = im.Coils
	case DiscreteInputs:
		bits = im.DiscreteInputs
	}
	w := make([]uint16, n)
	for i := range n {
		a := addr + uint16(i)
		if bits != nil || f.bits() {
			v, ok := bits[a]
			if !ok {
				return nil, false
			}
			if v {
				w[i] = 1
			}
			continue
		}
		v, ok := tab[a]
		if !ok {
			return nil, false
		}
		w[i] = v
	}
	return w, true
}

// Decode turns a register's raw words (one per 16-bit register in wire
// order, or one 0/1 word for a bit) into its scaled value. It returns a
// *SensorFault for NaN or Inf (f32) and for a value outside [Min, Max], and
// a plain error when the number of words does not fit the type. It is a pure
// function.
func (r Register) Decode(words []uint16) (float64, error) {
	if len(words) != r.Type.Words() {
		return 0, fmt.Errorf("decode %s: %s needs %d words, got %d", r.Field, r.Type, r.Type.Words(), len(words))
	}
	var raw float64
	switch r.Type {
	case Bit:
		if words[0] != 0 {
			raw = 1
		}
	case U16:
		raw = float64(r.u16(words[0]))
	case I16:
		raw = float64(int16(r.u16(words[0])))
	case U32:
		raw = float64(r.u32(words))
	case I32:
		raw = float64(int32(r.u32(words)))
	case F32:
		raw = float64(math.Float32frombits(r.u32(words)))
	default:
		return 0, fmt.Errorf("decode %s: unknown type %q", r.Field, r.Type)
	}
	v := raw * r.Scale
	switch {
	case math.IsNaN(v):
		return v, &SensorFault{Field: r.Field, Reason: ReasonNaN, Value: v, Min: r.Min, Max: r.Max, Unit: r.Unit}
	case math.IsInf(v, 0):
		return v, &SensorFault{Field: r.Field, Reason: ReasonInf, Value: v, Min: r.Min, Max: r.Max, Unit: r.Unit}
	case v < r.Min || v > r.Max:
		return v, &SensorFault{Field: r.Field, Reason: ReasonRange, Value: v, Min: r.Min, Max: r.Max, Unit: r.Unit}
	}
	return v, nil
}

// u16 applies the byte order to one register: BADC and DCBA swap its bytes.
func (r Register) u16(w uint16) uint16 {
	if r.Order == BADC || r.Order == DCBA {
		return w<<8 | w>>8
	}
	return w
}

// u32 reorders the four wire bytes of two registers into the big-endian
// value ABCD: Order[i] names the value byte that arrives at wire position i.
func (r Register) u32(words []uint16) uint32 {
	var wire, val [4]byte
	binary.BigEndian.PutUint16(wire[0:], words[0])
	binary.BigEndian.PutUint16(wire[2:], words[1])
	order := r.Order
	switch order {
	case ABCD, CDAB, BADC, DCBA:
	default:
		order = ABCD // ParseProfile accepts only the four orders
	}
	for i := range 4 {
		val[order[i]-'A'] = wire[i]
	}
	return binary.BigEndian.Uint32(val[:])
}

// DecodeImage decodes every register of regs from im: the good values by
// field name, and a *SensorFault (or decoding error) for each register that
// must not be published. It is a pure function.
func DecodeImage(regs []Register, im Image) (map[string]float64, []error) {
	values := make(map[string]float64, len(regs))
	var faults []error
	for _, r := range regs {
		w, ok := im.words(r.Function, r.Address, r.Type.Words())
		if !ok {
			faults = append(faults, &SensorFault{Field: r.Field, Reason: ReasonMissing, Min: r.Min, Max: r.Max, Unit: r.Unit})
			continue
		}
		v, err := r.Decode(w)
		if err != nil {
			faults = append(faults, err)
			continue
		}
		values[r.Field] = v
	}
	return values, faults
}

// DecodeImage decodes all of p's registers; see the function DecodeImage.
func (p *Profile) DecodeImage(im Image) (map[string]float64, []error) {
	return DecodeImage(p.Registers, im)
}
