package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to
// 1970-01-01 (RFC 5905, section 6).
const ntpEpochOffset = 2208988800

// QueryNTP asks the SNTP server at addr (host:port, UDP) for its time and
// returns the local clock's offset from it: local time minus server time,
// estimated as ((t1-t0) + (t2-t3))/2 negated, with t0/t3 the local send and
// receive times and t1/t2 the server's receive and transmit times (RFC 4330,
// section 5). The answer must come within timeout and echo the request's
// transmit timestamp; a kiss-o'-death (stratum 0) or unsynchronised server
// (leap indicator 3) is an error.
func QueryNTP(ctx context.Context, addr string, timeout time.Duration, now func() time.Time) (time.Duration, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return 0, fmt.Errorf("ntp %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := make([]byte, 48)
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, version 4, mode 3 (client)
	t0 := now()
	binary.BigEndian.PutUint64(req[40:], toNTP(t0))
	if _, err := conn.Write(req); err != nil {
		return 0, fmt.Errorf("ntp %s: send: %w", addr, err)
	}
	resp := make([]byte, 48)
	n, err := conn.Read(resp)
	t3 := now()
	if err != nil {
		return 0, fmt.Errorf("ntp %s: no answer within %s: %w", addr, timeout, err)
	}
	if n < 48 {
		return 0, fmt.Errorf("ntp %s: short answer of %d bytes", addr, n)
	}
	if mode := resp[0] & 7; mode != 4 {
		return 0, fmt.Errorf("ntp %s: answer mode %d, want 4 (server)", addr, mode)
	}
	if resp[0]>>6 == 3 {
		return 0, fmt.Errorf("ntp %s: server clock not synchronised (leap indicator 3)", addr)
	}
	if resp[1] == 0 {
		return 0, fmt.Errorf("ntp %s: kiss-o'-death %q", addr, resp[12:16])
	}
	if binary.BigEndian.Uint64(resp[24:]) != binary.BigEndian.Uint64(req[40:]) {
		return 0, errors.New("ntp " + addr + ": answer does not echo our request (origin timestamp mismatch)")
	}
	t1 := fromNTP(binary.BigEndian.Uint64(resp[32:]))
	t2 := fromNTP(binary.BigEndian.Uint64(resp[40:]))
	// Server minus local: ((t1 - t0) + (t2 - t3)) / 2.
	serverAhead := (t1.Sub(t0) + t2.Sub(t3)) / 2
	return -serverAhead, nil
}

func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

func fromNTP(v uint64) time.Time {
	secs := int64(v>>32) - ntpEpochOffset
	nanos := (v & 0xffffffff) * 1e9 >> 32
	return time.Unix(secs, int64(nanos))
}

// watchClock checks the clock against Config.NTPServer at start and every
// ClockCheckInterval, sets eldercare_gateway_clock_skew_seconds and logs a
// warning when the skew is over MaxClockSkew.
func (g *Gateway) watchClock(ctx context.Context) {
	check := func() {
		skew, err := QueryNTP(ctx, g.cfg.NTPServer, 5*time.Second, g.now)
		if err != nil {
			if ctx.Err() == nil {
				g.m.clockErrors.Inc()
				g.log.Warn("clock check failed", "err", err)
			}
			return
		}
		g.mu.Lock()
		g.skew, g.skewSeen = skew.Seconds(), true
		g.mu.Unlock()
		if skew > MaxClockSkew || skew < -MaxClockSkew {
			g.log.Warn("gateway clock is off; device timestamps will be off too", "skew", skew, "ntp", g.cfg.NTPServer, "limit", MaxClockSkew)
		} else {
			g.log.Debug("clock checked", "skew", skew, "ntp", g.cfg.NTPServer)
		}
	}
	check()
	t := time.NewTicker(g.cfg.ClockCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
