package ingest

import (
	"os"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestMain runs a child ingest when the kill -9 and replica tests start
// this binary as one (childEnv), and otherwise the tests, which share one
// influxd (testenv.SharedInflux, a database each).
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	os.Exit(testenv.Main(m))
}

// testInflux returns the package's influxd URL and a database name unique to
// t, created when create is true (testenv.SharedInflux).
func testInflux(t *testing.T, create bool) (url, db string) {
	t.Helper()
	return testenv.SharedInflux(t, create)
}
