package testenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// InfluxServer starts a fresh influxd (internal/influxd) with its data in t.TempDir() on free loopback ports, and
// stops it in t.Cleanup. Use it when the test must stop InfluxDB itself (an outage); otherwise use Influx.
// Flux start-up makes each call cost a few seconds of CPU, so start one per test that needs isolation, not per case.
//
// It skips the test when the influxd binary is missing (with the install command), or fails it under CI, and
// under -short.
func InfluxServer(t testing.TB) *influxd.Server {
	t.Helper()
	NeedsServer(t, "InfluxDB (influxd)")
	bin, err := influxd.Find()
	if err != nil {
		unavailable(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(t.TempDir(), "influxdb")})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: influxd log tail:\n%s", lastBytes(srv.LogTail(), 2048))
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return srv
}

// Influx starts a fresh influxd as InfluxServer does and returns its base URL, http://127.0.0.1:port. With the v2
// client, use an empty token and the bucket "database/retention-policy".
func Influx(t testing.TB) (url string) {
	t.Helper()
	return InfluxServer(t).URL()
}

// InfluxDB starts a fresh influxd as Influx does and creates database db (with its default "autogen" retention
// policy, so bucket db+"/autogen" is writable). It returns the base URL.
func InfluxDB(t testing.TB, db string) (url string) {
	t.Helper()
	url = Influx(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := influxd.CreateDatabase(ctx, url, db); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return url
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
