package testenv

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// suffixBase is random per process; suffixN counts calls. Their sum gives suffixes that never repeat within a process
// (for 2^24 calls) and rarely across processes.
var (
	suffixBase = func() uint32 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return binary.LittleEndian.Uint32(b[:])
	}()
	suffixN atomic.Uint32
)

func suffix() string {
	return fmt.Sprintf("%06x", (suffixBase+suffixN.Add(1))&0xffffff)
}

// TopicRoot returns a topic root unique to this call, "test-<sanitized test name>-<6 hex>", made only of [a-z0-9-]
// and at most 52 bytes, so tests sharing a broker never see each other's messages. Append levels with "/".
func TopicRoot(t testing.TB) string {
	return "test-" + sanitize(t.Name(), 40) + "-" + suffix()
}

// ClientID returns an MQTT client id unique to this call, "<role>-<sanitized test name>-<6 hex>", made only of
// [a-z0-9-] and at most 56 bytes (MQTT 3.1.1 only guarantees 23, but Mosquitto and mochi-mqtt accept more).
func ClientID(t testing.TB, role string) string {
	r := sanitize(role, 16)
	if r == "" {
		r = "client"
	}
	return r + "-" + sanitize(t.Name(), 32) + "-" + suffix()
}

// sanitize lower-cases s, turns every run of characters outside [a-z0-9] into one '-', trims '-' at both ends and
// cuts the result to at most max bytes. An empty result becomes "x".
func sanitize(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > max {
		out = strings.TrimRight(out[:max], "-")
	}
	if out == "" {
		out = "x"
	}
	return out
}
