//go:build !linux

package mqttconn

import (
	"net"
	"time"
)

// lowatReader needs SO_RCVLOWAT and poll(2) POLLRDHUP as Linux has them; elsewhere a
// connection sleeps its read delay instead (lastRead).
type lowatReader struct{}

func newLowatReader(*net.TCPConn, time.Duration) *lowatReader { return nil }

func (*lowatReader) read([]byte) (int, error) { panic("unreachable") }
