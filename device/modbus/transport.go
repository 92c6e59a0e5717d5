package modbus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	gmodbus "github.com/goburrow/modbus"
)

// rtuOverTCP is a goburrow Transporter that carries RTU frames (slave id,
// PDU, CRC; no MBAP header) over a TCP connection, as serial-to-Ethernet
// converters in "transparent" mode do. goburrow has no such handler, but
// its packagers and transporters are separate: the RTU packager plus this
// transporter make an RTU-over-TCP client.
type rtuOverTCP struct {
	address string
	timeout time.Duration

	mu   sync.Mutex
	conn net.Conn
}

// Send writes one RTU request frame and reads one response frame: slave,
// function, then the byte count and data plus CRC for functions 0x01-0x04,
// or the exception code plus CRC when the function has bit 0x80 set.
func (t *rtuOverTCP) Send(req []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(req) < 4 {
		return nil, fmt.Errorf("rtu over tcp: request of %d bytes", len(req))
	}
	if t.conn == nil {
		d := net.Dialer{Timeout: t.timeout}
		c, err := d.Dial("tcp", t.address)
		if err != nil {
			return nil, err
		}
		t.conn = c
	}
	if err := t.conn.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return nil, err
	}
	if _, err := t.conn.Write(req); err != nil {
		return nil, err
	}
	var buf [256]byte
	if _, err := io.ReadFull(t.conn, buf[:3]); err != nil {
		return nil, err
	}
	n := 0
	switch fc := buf[1]; {
	case fc&0x80 != 0:
		n = 5 // slave, function|0x80, exception code, CRC
	case fc >= 1 && fc <= 4:
		n = 3 + int(buf[2]) + 2
	default:
		return nil, fmt.Errorf("rtu over tcp: response function 0x%02x is not a read (0x01-0x04)", fc)
	}
	if _, err := io.ReadFull(t.conn, buf[3:n]); err != nil {
		return nil, err
	}
	if buf[1] != req[1] && buf[1] != req[1]|0x80 {
		return nil, fmt.Errorf("rtu over tcp: response function 0x%02x does not match request 0x%02x", buf[1], req[1])
	}
	return append([]byte(nil), buf[:n]...), nil
}

// Close closes the connection; the next Send dials again.
func (t *rtuOverTCP) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

// Poll results (the result label of eldercare_gateway_modbus_polls_total).
const (
	ResultOK        = "ok"        // every register read (sensor faults are counted apart)
	ResultTimeout   = "timeout"   // no reply within the bus timeout (a late reply)
	ResultException = "exception" // the slave answered with a Modbus exception
	ResultReset     = "reset"     // the connection was refused, reset or closed
	ResultProtocol  = "protocol"  // a malformed reply: transaction id, unit id, CRC or length mismatch
	ResultSink      = "sink"      // read fine but the sink refused the reading
)

// BusFault is a failed poll of one device: the bus or the slave did not
// deliver the registers. The poller hands it to Sink.Fault, counts it, and
// (except after an exception, which leaves the stream in step) closes the
// connection so that the next poll starts clean.
type BusFault struct {
	Bus      string
	Slave    uint8
	Function Function
	Address  uint16
	Result   string // ResultTimeout, ResultException, ResultReset or ResultProtocol
	Err      error
}

func (f *BusFault) Error() string {
	return fmt.Sprintf("poll bus %s slave %d %s at %d: %s: %v", f.Bus, f.Slave, f.Function, f.Address, f.Result, f.Err)
}

func (f *BusFault) Unwrap() error { return f.Err }

// classify names the poll result of a goburrow error.
func classify(err error) string {
	var me *gmodbus.ModbusError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		return ResultException
	case errors.As(err, &ne) && ne.Timeout():
		return ResultTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return ResultReset
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return ResultReset // connection refused, reset by peer, broken pipe
	}
	return ResultProtocol
}
