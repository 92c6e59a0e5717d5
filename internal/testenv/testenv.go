// Package testenv is the shared test harness: it finds the real recordings, starts a fresh InfluxDB 1.8 per call,
// connects to the machine's Mosquitto or starts a test-owned one, and hands out unique topic roots, client ids and
// free loopback ports. Import it only from _test.go files.
//
// A missing external binary skips the test, except when $CI is set (to anything but a false value), where it fails
// the test: CI must have every server.
package testenv

import (
	"os"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/realdata"
)

// RealData returns the directory of real recordings (falls-weda, vitals-bidmc, modbus, ...), found by realdata.Find:
// $ELDERCARE_REALDATA, else ../shared/data next to the directory holding go.mod. It skips the test when none is
// found, and fails it when $ELDERCARE_REALDATA names something that is not a directory.
func RealData(t testing.TB) string {
	t.Helper()
	dir, ok := realdata.Find()
	if ok {
		return dir
	}
	if v := os.Getenv(realdata.Env); v != "" {
		t.Fatalf("testenv: $%s=%q is not a directory", realdata.Env, v)
	}
	unavailable(t, "real recordings not found; set %s to the recordings directory "+
		"(default: ../shared/data next to the repository root)", realdata.Env)
	return ""
}

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	Unavailable(t, format, args...)
}
