package modbussim

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

func TestCRC16(t *testing.T) {
	// Modbus over Serial Line V1.02 example and common reference frames.
	tests := []struct {
		frame []byte
		want  uint16
	}{
		{[]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A}, 0xCDC5}, // sent as C5 CD
		{[]byte{0x01, 0x04, 0x00, 0x01, 0x00, 0x02}, 0x0B20}, // sent as 20 0B
	}
	for _, tc := range tests {
		if got := CRC16(tc.frame); got != tc.want {
			t.Errorf("CRC16(% x) = %04x, want %04x", tc.frame, got, tc.want)
		}
	}
}

// TestTCPRequests speaks raw Modbus TCP to the server: reads, exceptions
// for a bad address and an unknown slave, and a wrong transaction id.
func TestTCPRequests(t *testing.T) {
	s := New(TCP, nil)
	if err := s.AddModel(XYMD02, 1); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	ask := func(tid uint16, unit, fc byte, addr, qty uint16) []byte {
		req := make([]byte, 12)
		binary.BigEndian.PutUint16(req, tid)
		binary.BigEndian.PutUint16(req[4:], 6)
		req[6], req[7] = unit, fc
		binary.BigEndian.PutUint16(req[8:], addr)
		binary.BigEndian.PutUint16(req[10:], qty)
		c.Write(req)
		h := make([]byte, 7)
		if _, err := io.ReadFull(c, h); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint16(h[4:])-1)
		io.ReadFull(c, body)
		return append(h, body...)
	}
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"read temp+humidity", ask(7, 1, 4, 1, 2), []byte{0, 7, 0, 0, 0, 7, 1, 4, 4, 0, 235, 1, 200}},
		{"illegal address", ask(8, 1, 4, 9, 1), []byte{0, 8, 0, 0, 0, 3, 1, 0x84, 2}},
		{"unknown slave", ask(9, 9, 4, 1, 1), []byte{0, 9, 0, 0, 0, 3, 9, 0x84, 0x0B}},
		{"illegal function", ask(10, 1, 0x2B, 1, 1), []byte{0, 10, 0, 0, 0, 3, 1, 0xAB, 1}},
		// Write single register (0x06) echoes the request; the value reads back.
		{"write holding", ask(20, 1, 6, 0x101, 1), []byte{0, 20, 0, 0, 0, 6, 1, 6, 1, 1, 0, 1}},
		{"read back", ask(21, 1, 3, 0x101, 1), []byte{0, 21, 0, 0, 0, 5, 1, 3, 2, 0, 1}},
		// A register the unit does not have cannot be written.
		{"write missing", ask(22, 1, 6, 0x200, 1), []byte{0, 22, 0, 0, 0, 3, 1, 0x86, 2}},
	}
	s.WrongTransactionIDNext(1)
	tests = append(tests, struct {
		name      string
		got, want []byte
	}{"wrong tid", ask(11, 1, 3, 0x100, 1), []byte{0, 12, 0, 0, 0, 5, 1, 3, 2, 0, 1}})
	for _, tc := range tests {
		if string(tc.got) != string(tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
	if st := s.Stats(); st.Requests != 8 || st.Connections != 1 {
		t.Errorf("stats %+v", st)
	}
}
