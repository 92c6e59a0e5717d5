// Package modbussim is a Modbus server that emulates the Modbus devices the
// gateway polls (XY-MD02, Senseair S8, Eastron SDM120) with their register
// maps, serves read requests (function codes 0x01-0x04) and writes (0x05
// write single coil, 0x06 write single register, 0x10 write multiple
// registers, to addresses the unit has) over Modbus TCP
// (MBAP header + PDU) or RTU framing over TCP, and injects faults on
// demand: a delayed reply, an exception, a reset connection and a wrong
// transaction id.
//
// It is written from the Modbus specifications (Modbus Application Protocol
// V1.1b3; Modbus Messaging on TCP/IP Implementation Guide V1.0b; Modbus over
// Serial Line V1.02 for the RTU frame and CRC) and imports nothing of the
// gateway's Modbus code, so that it never shares a bug with the poller it
// tests.
package modbussim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Framing is how requests and replies are framed on a connection.
type Framing int

const (
	// TCP is Modbus TCP: a 7-byte MBAP header (transaction id, protocol 0,
	// length, unit id) before the PDU.
	TCP Framing = iota
	// RTUOverTCP is RTU framing (slave id, PDU, CRC-16 low byte first) on a
	// TCP connection, as serial-to-Ethernet converters pass it through. An
	// RTU slave that is not on the bus, or a frame with a bad CRC, gets no
	// reply, as on a real RS485 line.
	RTUOverTCP
)

// Exception codes (Modbus Application Protocol V1.1b3, section 7).
const (
	IllegalFunction    byte = 0x01
	IllegalDataAddress byte = 0x02
	IllegalDataValue   byte = 0x03
	DeviceFailure      byte = 0x04
	DeviceBusy         byte = 0x06
	TargetNoResponse   byte = 0x0B
)

// Models the simulator emulates; see Model.
const (
	XYMD02     = "xy-md02"
	SenseairS8 = "senseair-s8"
	SDM120     = "sdm120"
)

// Models lists the emulated device models.
var Models = []string{XYMD02, SenseairS8, SDM120}

// Unit is one slave's data: registers and bits by 0-based PDU address. An
// address that is absent answers exception 0x02 (illegal data address).
type Unit struct {
	Coils          map[uint16]bool
	DiscreteInputs map[uint16]bool
	Holding        map[uint16]uint16
	Input          map[uint16]uint16
}

func newUnit() *Unit {
	return &Unit{Coils: map[uint16]bool{}, DiscreteInputs: map[uint16]bool{}, Holding: map[uint16]uint16{}, Input: map[uint16]uint16{}}
}

// Model returns a fresh register image of a device model with plausible
// readings, laid out as the devices' register maps say
// (../shared/data/modbus/register_maps.csv):
//
//   - xy-md02 (xy-md02_sht20/devices.py): input 0x0001 temperature 0.1 °C
//     (23.5 °C), 0x0002 humidity 0.1 %RH (45.6 %); holding 0x0100 slave
//     address, 0x0101 baud code (2 = 9600).
//   - senseair-s8 (senseair_s8/s8_uart.h): input 0x0000 meter status (0),
//     0x0001 alarm status, 0x0002 output status, 0x0003 CO2 ppm (612),
//     0x0015 PWM output, 0x0019-0x001E ids; holding 0x0000 ack, 0x0001
//     special command, 0x001F ABC period h (180).
//   - sdm120 (eastron_sdm_mbmd/sdm120.go): IEEE 754 float32 big-endian in
//     two input registers each: 0x0000 230.1 V, 0x0006 0.52 A, 0x000C
//     110.4 W, 0x0012 119.7 VA, 0x0018 46.2 VAr, 0x001E 0.92, 0x0046 50.0 Hz,
//     0x0048 1234.5 kWh import, 0x004A 0 kWh export, 0x004C, 0x004E reactive
//     energies, 0x0156 1234.5 kWh total, 0x0158 total reactive energy.
func Model(model string, slave byte) (*Unit, error) {
	u := newUnit()
	switch model {
	case XYMD02:
		u.Input[0x0001] = 235
		u.Input[0x0002] = 456
		u.Holding[0x0100] = uint16(slave)
		u.Holding[0x0101] = 2
	case SenseairS8:
		for a := uint16(0); a <= 3; a++ {
			u.Input[a] = 0
		}
		u.Input[0x0003] = 612
		u.Input[0x0015] = 0
		for a := uint16(0x0019); a <= 0x001E; a++ {
			u.Input[a] = 0x0100 + a
		}
		u.Holding[0x0000] = 0
		u.Holding[0x0001] = 0
		u.Holding[0x001F] = 180
	case SDM120:
		for addr, v := range map[uint16]float32{
			0x0000: 230.1, 0x0006: 0.52, 0x000C: 110.4, 0x0012: 119.7, 0x0018: 46.2, 0x001E: 0.92,
			0x0046: 50.0, 0x0048: 1234.5, 0x004A: 0, 0x004C: 12.5, 0x004E: 0, 0x0156: 1234.5, 0x0158: 12.5,
		} {
			putFloat32(u.Input, addr, v)
		}
	default:
		return nil, fmt.Errorf("modbussim: unknown model %q (models: %s)", model, strings.Join(Models, ", "))
	}
	return u, nil
}

func putFloat32(tab map[uint16]uint16, addr uint16, v float32) {
	b := math.Float32bits(v)
	tab[addr] = uint16(b >> 16)
	tab[addr+1] = uint16(b)
}

// Stats counts what the server saw.
type Stats struct {
	Requests      int64 // complete request frames read
	MaxConcurrent int64 // most requests being answered at the same time, across all connections
	Connections   int64 // connections accepted
	Writes        int64 // write requests (0x05, 0x06, 0x10) that changed a unit
}

// Server serves the units added to it. Its methods are safe for concurrent
// use, also while it serves.
type Server struct {
	framing Framing
	log     *slog.Logger

	mu    sync.Mutex
	units map[byte]*Unit
	// Faults on demand, each applying to the next n requests.
	delayN     int
	delay      time.Duration
	exceptionN int
	exception  byte
	resetN     int
	wrongTIDN  int
	// ServiceTime: every reply waits this long, like a real device's turnaround.
	serviceTime time.Duration

	requests, inflight, maxInflight, conns, writes atomic.Int64
}

// New returns a server with no units. log nil discards.
func New(framing Framing, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{framing: framing, log: log, units: map[byte]*Unit{}}
}

// AddModel adds a unit of a model (see Model) at slave id slave, 1-247.
func (s *Server) AddModel(model string, slave byte) error {
	if slave < 1 || slave > 247 {
		return fmt.Errorf("modbussim: slave %d is outside 1-247", slave)
	}
	u, err := Model(model, slave)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.units[slave]; dup {
		return fmt.Errorf("modbussim: slave %d added twice", slave)
	}
	s.units[slave] = u
	return nil
}

// Table names a register or bit table in SetRegister and SetBit.
type Table byte

// Tables by their read function code.
const (
	CoilTable            Table = 0x01
	DiscreteInputTable   Table = 0x02
	HoldingRegisterTable Table = 0x03
	InputRegisterTable   Table = 0x04
)

// SetRegister sets a 16-bit register of a unit (table HoldingRegisterTable
// or InputRegisterTable).
func (s *Server) SetRegister(slave byte, t Table, addr, value uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.units[slave]
	if !ok {
		return fmt.Errorf("modbussim: no slave %d", slave)
	}
	switch t {
	case HoldingRegisterTable:
		u.Holding[addr] = value
	case InputRegisterTable:
		u.Input[addr] = value
	default:
		return fmt.Errorf("modbussim: table %d has no 16-bit registers", t)
	}
	return nil
}

// SetFloat32 sets two registers at addr, addr+1 to v, big-endian (ABCD) as
// the SDM120 sends it.
func (s *Server) SetFloat32(slave byte, t Table, addr uint16, v float32) error {
	b := math.Float32bits(v)
	if err := s.SetRegister(slave, t, addr, uint16(b>>16)); err != nil {
		return err
	}
	return s.SetRegister(slave, t, addr+1, uint16(b))
}

// SetBit sets a coil or discrete input.
func (s *Server) SetBit(slave byte, t Table, addr uint16, v bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.units[slave]
	if !ok {
		return fmt.Errorf("modbussim: no slave %d", slave)
	}
	switch t {
	case CoilTable:
		u.Coils[addr] = v
	case DiscreteInputTable:
		u.DiscreteInputs[addr] = v
	default:
		return fmt.Errorf("modbussim: table %d has no bits", t)
	}
	return nil
}

// DelayNext delays the next n replies by d each (a late reply).
func (s *Server) DelayNext(n int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delayN, s.delay = n, d
}

// ExceptionNext answers the next n requests with exception code code.
func (s *Server) ExceptionNext(n int, code byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exceptionN, s.exception = n, code
}

// ResetNext closes the connection instead of answering the next n requests.
func (s *Server) ResetNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetN = n
}

// WrongTransactionIDNext answers the next n requests with a transaction id
// one higher than the request's (TCP framing only; RTU has none).
func (s *Server) WrongTransactionIDNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrongTIDN = n
}

// SetServiceTime makes every reply wait d, like a device's turnaround time.
func (s *Server) SetServiceTime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serviceTime = d
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), MaxConcurrent: s.maxInflight.Load(), Connections: s.conns.Load(), Writes: s.writes.Load()}
}

// Slaves lists the slave ids served, sorted.
func (s *Server) Slaves() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []byte
	for id := range s.units {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Run serves connections from ln until ctx is cancelled, then closes ln and
// every connection and returns nil. It returns an accept error other than
// the listener being closed.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("modbussim: accept: %w", err)
		}
		s.conns.Add(1)
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		if ctx.Err() != nil {
			c.Close()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// fault is what happens to one request.
type fault struct {
	delay     time.Duration
	exception byte
	reset     bool
	wrongTID  bool
	service   time.Duration
}

func (s *Server) nextFault() fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := fault{service: s.serviceTime}
	if s.delayN > 0 {
		s.delayN--
		f.delay = s.delay
	}
	switch {
	case s.resetN > 0:
		s.resetN--
		f.reset = true
	case s.exceptionN > 0:
		s.exceptionN--
		f.exception = s.exception
	case s.wrongTIDN > 0:
		s.wrongTIDN--
		f.wrongTID = true
	}
	return f
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	for ctx.Err() == nil {
		var (
			unit byte
			tid  uint16
			pdu  []byte
			err  error
		)
		if s.framing == TCP {
			unit, tid, pdu, err = readMBAP(c)
		} else {
			unit, pdu, err = readRTU(c)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("modbussim: connection closed", "err", err)
			}
			return
		}
		s.requests.Add(1)
		n := s.inflight.Add(1)
		for {
			m := s.maxInflight.Load()
			if n <= m || s.maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		ok := s.answer(c, unit, tid, pdu)
		s.inflight.Add(-1)
		if !ok {
			return
		}
	}
}

// answer replies to one request; false closes the connection.
func (s *Server) answer(c net.Conn, unit byte, tid uint16, pdu []byte) bool {
	f := s.nextFault()
	if f.service > 0 {
		time.Sleep(f.service)
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.reset {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN: a reset connection
		}
		return false
	}
	var reply []byte
	if f.exception != 0 && len(pdu) > 0 {
		reply = []byte{pdu[0] | 0x80, f.exception}
	} else {
		var known bool
		reply, known = s.execute(unit, pdu)
		if !known {
			if s.framing == RTUOverTCP {
				return true // no slave with that id on the line: silence
			}
			reply = []byte{pdu[0] | 0x80, TargetNoResponse}
		}
	}
	var frame []byte
	if s.framing == TCP {
		if f.wrongTID {
			tid++
		}
		frame = make([]byte, 7, 7+len(reply))
		binary.BigEndian.PutUint16(frame[0:], tid)
		binary.BigEndian.PutUint16(frame[4:], uint16(len(reply)+1))
		frame[6] = unit
		frame = append(frame, reply...)
	} else {
		frame = append([]byte{unit}, reply...)
		crc := CRC16(frame)
		frame = append(frame, byte(crc), byte(crc>>8))
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Write(frame)
	return err == nil
}

// execute runs a read PDU against a unit; known is false when no unit has
// that slave id.
func (s *Server) execute(slave byte, pdu []byte) (reply []byte, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.units[slave]
	if !ok {
		return nil, false
	}
	fc := pdu[0]
	switch fc {
	case 0x05, 0x06, 0x10:
		reply := u.write(pdu)
		if reply[0] == fc {
			s.writes.Add(1)
		}
		return reply, true
	}
	if fc < 1 || fc > 4 {
		return []byte{fc | 0x80, IllegalFunction}, true
	}
	if len(pdu) != 5 {
		return []byte{fc | 0x80, IllegalDataValue}, true
	}
	addr := binary.BigEndian.Uint16(pdu[1:])
	qty := binary.BigEndian.Uint16(pdu[3:])
	if fc <= 2 {
		if qty < 1 || qty > 2000 {
			return []byte{fc | 0x80, IllegalDataValue}, true
		}
		tab := u.Coils
		if fc == 2 {
			tab = u.DiscreteInputs
		}
		data := make([]byte, (int(qty)+7)/8)
		for i := range int(qty) {
			v, ok := tab[addr+uint16(i)]
			if !ok || int(addr)+i > 0xFFFF {
				return []byte{fc | 0x80, IllegalDataAddress}, true
			}
			if v {
				data[i/8] |= 1 << (i % 8)
			}
		}
		return append([]byte{fc, byte(len(data))}, data...), true
	}
	if qty < 1 || qty > 125 {
		return []byte{fc | 0x80, IllegalDataValue}, true
	}
	tab := u.Holding
	if fc == 4 {
		tab = u.Input
	}
	data := make([]byte, 2*int(qty))
	for i := range int(qty) {
		v, ok := tab[addr+uint16(i)]
		if !ok || int(addr)+i > 0xFFFF {
			return []byte{fc | 0x80, IllegalDataAddress}, true
		}
		binary.BigEndian.PutUint16(data[2*i:], v)
	}
	return append([]byte{fc, byte(len(data))}, data...), true
}

// write runs a write PDU (Modbus Application Protocol V1.1b3, 6.5 write
// single coil 0x05, 6.6 write single register 0x06, 6.12 write multiple
// registers 0x10) against u. Like a real device it writes only what exists:
// an address the unit does not have answers illegal data address. The
// caller holds the server's lock.
func (u *Unit) write(pdu []byte) []byte {
	fc := pdu[0]
	if len(pdu) < 5 {
		return []byte{fc | 0x80, IllegalDataValue}
	}
	addr := binary.BigEndian.Uint16(pdu[1:])
	val := binary.BigEndian.Uint16(pdu[3:])
	switch fc {
	case 0x05:
		if len(pdu) != 5 || val != 0xFF00 && val != 0x0000 {
			return []byte{fc | 0x80, IllegalDataValue}
		}
		if _, ok := u.Coils[addr]; !ok {
			return []byte{fc | 0x80, IllegalDataAddress}
		}
		u.Coils[addr] = val == 0xFF00
		return append([]byte(nil), pdu...)
	case 0x06:
		if len(pdu) != 5 {
			return []byte{fc | 0x80, IllegalDataValue}
		}
		if _, ok := u.Holding[addr]; !ok {
			return []byte{fc | 0x80, IllegalDataAddress}
		}
		u.Holding[addr] = val
		return append([]byte(nil), pdu...)
	}
	// 0x10: address, quantity, byte count, values.
	qty := val
	if qty < 1 || qty > 123 || len(pdu) != 6+2*int(qty) || int(pdu[5]) != 2*int(qty) {
		return []byte{fc | 0x80, IllegalDataValue}
	}
	for i := range int(qty) {
		if _, ok := u.Holding[addr+uint16(i)]; !ok {
			return []byte{fc | 0x80, IllegalDataAddress}
		}
	}
	for i := range int(qty) {
		u.Holding[addr+uint16(i)] = binary.BigEndian.Uint16(pdu[6+2*i:])
	}
	return []byte{fc, pdu[1], pdu[2], pdu[3], pdu[4]}
}

// readMBAP reads one Modbus TCP request: MBAP header and PDU.
func readMBAP(r io.Reader) (unit byte, tid uint16, pdu []byte, err error) {
	var h [7]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	tid = binary.BigEndian.Uint16(h[0:])
	if pid := binary.BigEndian.Uint16(h[2:]); pid != 0 {
		return 0, 0, nil, fmt.Errorf("modbussim: protocol id %d, want 0", pid)
	}
	n := int(binary.BigEndian.Uint16(h[4:]))
	if n < 2 || n > 254 {
		return 0, 0, nil, fmt.Errorf("modbussim: MBAP length %d outside 2-254", n)
	}
	pdu = make([]byte, n-1)
	if _, err = io.ReadFull(r, pdu); err != nil {
		return
	}
	return h[6], tid, pdu, nil
}

// readRTU reads one RTU request and checks its CRC: a read (0x01-0x04) or
// single write (0x05, 0x06) is slave, function, address, quantity or value,
// CRC: 8 bytes; a write multiple registers (0x10) adds a byte count and the
// values before the CRC.
func readRTU(r io.Reader) (unit byte, pdu []byte, err error) {
	f := make([]byte, 8)
	if _, err = io.ReadFull(r, f[:7]); err != nil {
		return
	}
	if f[1] == 0x10 {
		f = append(f[:7], make([]byte, int(f[6])+2)...)
	}
	if _, err = io.ReadFull(r, f[7:]); err != nil {
		return
	}
	n := len(f) - 2
	if crc := CRC16(f[:n]); byte(crc) != f[n] || byte(crc>>8) != f[n+1] {
		return 0, nil, fmt.Errorf("modbussim: RTU frame % x: bad CRC", f)
	}
	return f[0], append([]byte(nil), f[1:n]...), nil
}

// CRC16 is the Modbus RTU CRC (polynomial 0xA001 reflected, initial value
// 0xFFFF; Modbus over Serial Line V1.02, 6.2.2). It is sent low byte first.
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
