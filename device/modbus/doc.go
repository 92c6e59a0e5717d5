// Package modbus reads Modbus devices for the edge gateway: device profiles
// (YAML register maps, see ParseProfile and docs/modbus.md), a pure decoder
// from registers to reading values (Register.Decode, DecodeImage) that
// rejects NaN, infinities and implausible values as sensor faults, and a
// Poller over github.com/goburrow/modbus for Modbus TCP, RTU on a serial
// line and RTU over TCP, which hands readings and faults to a Sink.
//
// Profiles shipped with the binary: xy-md02 (XY-MD02 temperature and
// humidity), senseair-s8 (Senseair S8 CO2) and sdm120 (Eastron SDM120
// energy meter); see Shipped.
package modbus
