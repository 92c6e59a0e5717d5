package testenv

import (
	"fmt"
	"os"
	"time"
)

// NowEnv pins the clock of the time-sensitive tests: an RFC 3339 time such
// as 2026-12-07T00:30:00Z (a Monday 00:30 UTC, in the first hour of a 7-day
// InfluxDB shard). `make test-clock` sets it.
const NowEnv = "ELDERCARE_TEST_NOW"

// started is when this test binary started: a pinned clock runs on from
// its pin at the wall clock's pace.
var started = time.Now()

// Now is the "now" of tests whose data depends on the time of day or week
// (InfluxDB shard boundaries, day windows), and of the code under test
// where it takes a clock: $ELDERCARE_TEST_NOW plus the time since the test
// binary started when that is set, else the wall clock. It panics on a
// value that is not RFC 3339, so that a mistyped pin cannot silently test
// the wall clock instead.
func Now() time.Time {
	v := os.Getenv(NowEnv)
	if v == "" {
		return time.Now()
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		panic(fmt.Sprintf("testenv: $%s=%q: %v", NowEnv, v, err))
	}
	return t.Add(time.Since(started))
}
