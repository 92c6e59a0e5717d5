//go:build linux

package mqttconn

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lowWaterMark is the SO_RCVLOWAT (socket(7)) a TCP connection with a read
// delay sets while data keeps coming: the kernel wakes the reader only once
// this many bytes are queued (or the read delay has passed), instead of
// once per arriving segment.
//
// Why: Go's poller registers sockets edge-triggered, so every segment the
// broker sends (one per message for Mosquitto) wakes a thread blocked in
// epoll_wait, which takes an idle P, finds nothing to run and sleeps again;
// at 25,000 single-reading messages/s that was about a third of ingest's
// CPU (traced 2026-12-07: 7,000 idle-P wake-ups/s against 190 goroutine
// wake-ups/s; docs/benchmarks.md). Sleeping the read delay did not help:
// the segments still woke the poller during the sleep.
const lowWaterMark = 32 << 10

// batchEnter is the smallest read after which a connection starts
// batching: more than a CONNACK or a PINGRESP, so a connection enters it
// only once messages flow, never while paho's connect deadline applies.
const batchEnter = 64

// lowatReader is lastRead's read on a TCP connection with a read delay
// (Linux). Idle, it reads as any socket does: the first byte wakes it, so
// the first message after a quiet spell costs no delay. Once a read
// returned at least batchEnter bytes it batches: SO_RCVLOWAT is raised to
// lowWaterMark, and a read with less than that queued (poll(2) without POLLIN)
// waits until the mark is reached or the delay has passed, then takes
// what is there. When a whole delay brings nothing it is idle again. So a
// message waits at most the delay, as with the sleep it replaces.
type lowatReader struct {
	conn     *net.TCPConn
	raw      syscall.RawConn
	delay    time.Duration
	batching bool
	// full: the last read filled its buffer, so more may be queued; the
	// next read takes it without waiting for the mark (else every read
	// of a backlog below the mark, by a small buffer, waited a delay).
	full bool
}

// errAgain is a non-blocking read that found nothing queued.
var errAgain = errors.New("mqttconn: nothing queued")

// newLowatReader returns nil where the socket refuses SO_RCVLOWAT (the
// caller then sleeps its delay instead).
func newLowatReader(c *net.TCPConn, delay time.Duration) *lowatReader {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	l := &lowatReader{conn: c, raw: raw, delay: delay}
	if l.setLowat(1) != nil {
		return nil
	}
	return l
}

// read reads into p.
func (l *lowatReader) read(p []byte) (int, error) {
	n, err := l.read1(p)
	l.full = err == nil && len(p) > 0 && n == len(p)
	return n, err
}

func (l *lowatReader) read1(p []byte) (int, error) {
	if !l.batching {
		n, err := l.conn.Read(p)
		if err == nil && n >= batchEnter && l.setLowat(lowWaterMark) == nil {
			l.batching = true
		}
		return n, err
	}
	if err := l.conn.SetReadDeadline(time.Now().Add(l.delay)); err != nil {
		return 0, err
	}
	n, err := l.rawRead(p, !l.full, true)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	// The delay passed below the mark: take what is queued, if anything.
	if err := l.conn.SetReadDeadline(time.Time{}); err != nil {
		return 0, err
	}
	n, err = l.rawRead(p, false, false)
	if err != errAgain {
		return n, err
	}
	// Nothing for a whole delay: idle again, woken by the first byte.
	l.batching = false
	if err := l.setLowat(1); err != nil {
		return 0, err
	}
	return l.conn.Read(p)
}

// rawRead is one read(2) on the socket. With mark, it first waits while
// less than lowWaterMark bytes are queued, until the socket reports
// readable (the mark reached, an error, the end) or the deadline passes;
// with wait, it waits whenever nothing is queued, else such a read returns
// errAgain. A deadline that passes while waiting is returned as
// os.ErrDeadlineExceeded.
func (l *lowatReader) rawRead(p []byte, mark, wait bool) (int, error) {
	var (
		n    int
		rerr error
	)
	err := l.raw.Read(func(fd uintptr) bool {
		if mark {
			mark = false
			// A readiness reported before this wait still counts (the
			// poller keeps it), so a mark crossed just now is not missed.
			// poll(2) reports POLLIN once the mark is reached, and also
			// for the end of the stream or an error (POLLRDHUP, POLLERR,
			// POLLHUP) whose wake-up an earlier read of the data before
			// them may have consumed: those are not waited for.
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
			if n, err := unix.Poll(pfd, 0); err == nil && n == 0 {
				return false
			}
		}
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				break
			}
		}
		return !(rerr == syscall.EAGAIN && wait)
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errAgain
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: l.conn.LocalAddr(), Addr: l.conn.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (l *lowatReader) setLowat(bytes int) error {
	var serr error
	if err := l.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, bytes)
	}); err != nil {
		return err
	}
	return serr
}
