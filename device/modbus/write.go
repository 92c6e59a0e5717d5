package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/eldercare-iot/eldercare/device"
)

// Actuate carries a command to a Modbus device on one of the poller's
// buses. Only ActionSetpoint is supported (ActionPing is answered by the
// gateway): params.field names a register of the device's profile that the
// profile declares writable (Register.Writable); params.value, in the
// field's unit, is divided by the register's scale, rounded and written:
// a coil with function 0x05 (value 0 or 1), a 16-bit holding register with
// 0x06, a 32-bit one with 0x10 (write multiple registers) in the register's
// byte/word order.
//
// Errors are *device.CommandError: refused unknown_device (no such device
// on this poller), unsupported (another action, or a field the profile does
// not read), not_writable (the profile reads the field but does not declare
// its register writable), bad_params (value missing, outside the register's
// range, or not representable); failed timeout or device_error (the write
// itself failed: no answer, a Modbus exception).
func (p *Poller) Actuate(ctx context.Context, cmd device.Command) error {
	b, d := p.find(cmd.Device)
	if d == nil {
		return device.Refused(device.ReasonUnknownDevice, "no Modbus device %s on this gateway", cmd.Device)
	}
	if cmd.Action != device.ActionSetpoint {
		return device.Refused(device.ReasonUnsupported, "Modbus device %s (profile %s) supports only setpoint, not %s", d.id, d.profile.Name, cmd.Action)
	}
	field, _ := cmd.Params["field"].(string)
	var reg *Register
	for i := range d.profile.Registers {
		if d.profile.Registers[i].Field == field {
			reg = &d.profile.Registers[i]
		}
	}
	if reg == nil {
		return device.Refused(device.ReasonUnsupported, "profile %s has no register for field %q", d.profile.Name, field)
	}
	if !reg.Writable {
		return device.Refused(device.ReasonNotWritable, "register %s (%s address %d) is not writable in profile %s",
			field, reg.Function, reg.Address, d.profile.Name)
	}
	v, ok := device.ParamNumber(cmd.Params, "value")
	if !ok {
		return device.Refused(device.ReasonBadParams, "params.value: a number in %s is required", reg.Unit)
	}
	if v < reg.Min || v > reg.Max {
		return device.Refused(device.ReasonBadParams, "value %g %s is outside the register's range [%g, %g]", v, reg.Unit, reg.Min, reg.Max)
	}
	words, err := encodeValue(*reg, v)
	if err != nil {
		return device.Refused(device.ReasonBadParams, "%s: %v", field, err)
	}
	if err := ctx.Err(); err != nil {
		return device.Failed(device.ReasonTimeout, "%v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.slave(d.slave)
	switch {
	case reg.Function == Coils:
		on := uint16(0x0000)
		if words[0] != 0 {
			on = 0xFF00
		}
		_, err = b.client.WriteSingleCoil(reg.Address, on)
	case len(words) == 1:
		_, err = b.client.WriteSingleRegister(reg.Address, words[0])
	default:
		buf := make([]byte, 2*len(words))
		for i, w := range words {
			binary.BigEndian.PutUint16(buf[2*i:], w)
		}
		_, err = b.client.WriteMultipleRegisters(reg.Address, uint16(len(words)), buf)
	}
	if err != nil {
		result := classify(err)
		p.log.Warn("modbus write failed", "device", d.id, "field", field, "result", result, "err", err)
		if result == ResultTimeout {
			return device.Failed(device.ReasonTimeout, "write %s (%s address %d): %v", field, reg.Function, reg.Address, err)
		}
		return device.Failed(device.ReasonDeviceError, "write %s (%s address %d): %v", field, reg.Function, reg.Address, err)
	}
	p.log.Info("modbus write", "device", d.id, "field", field, "value", v, "address", reg.Address, "command", cmd.ID)
	return nil
}

func (p *Poller) find(id string) (*bus, *pollDevice) {
	for _, b := range p.buses {
		for _, d := range b.devices {
			if d.id == id {
				return b, d
			}
		}
	}
	return nil, nil
}

// encodeValue turns a value in the field's unit into the register's raw
// words (the inverse of DecodeImage).
func encodeValue(r Register, v float64) ([]uint16, error) {
	raw := v / r.Scale
	if r.Type == F32 {
		u := math.Float32bits(float32(raw))
		return order32(r.Order, u), nil
	}
	raw = math.Round(raw)
	var lo, hi float64
	switch r.Type {
	case Bit:
		lo, hi = 0, 1
	case U16:
		lo, hi = 0, math.MaxUint16
	case I16:
		lo, hi = math.MinInt16, math.MaxInt16
	case U32:
		lo, hi = 0, math.MaxUint32
	case I32:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	if raw < lo || raw > hi {
		return nil, fmt.Errorf("raw value %g does not fit %s", raw, r.Type)
	}
	switch r.Type {
	case Bit:
		return []uint16{uint16(raw)}, nil
	case U16:
		return []uint16{swap16(r.Order, uint16(raw))}, nil
	case I16:
		return []uint16{swap16(r.Order, uint16(int16(raw)))}, nil
	case U32:
		return order32(r.Order, uint32(raw)), nil
	case I32:
		return order32(r.Order, uint32(int32(raw))), nil
	}
	return nil, errors.New("unknown data type")
}

// swap16 puts a 16-bit value in the register's byte order (BADC and DCBA
// swap the bytes).
func swap16(o Order, w uint16) uint16 {
	if o == BADC || o == DCBA {
		return w<<8 | w>>8
	}
	return w
}

// order32 splits a 32-bit value ABCD (A most significant) into two
// registers in order o.
func order32(o Order, u uint32) []uint16 {
	a, b, c, d := byte(u>>24), byte(u>>16), byte(u>>8), byte(u)
	w := func(x, y byte) uint16 { return uint16(x)<<8 | uint16(y) }
	switch o {
	case CDAB:
		return []uint16{w(c, d), w(a, b)}
	case BADC:
		return []uint16{w(b, a), w(d, c)}
	case DCBA:
		return []uint16{w(d, c), w(b, a)}
	}
	return []uint16{w(a, b), w(c, d)}
}
