package ingest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// One influxd serves the whole package (started on first use, stopped in
// TestMain); each test writes into its own database. Starting influxd costs
// seconds of CPU, too much to pay per test.
var pkgInflux struct {
	once sync.Once
	srv  *influxd.Server
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	code := m.Run()
	if pkgInflux.srv != nil {
		if err := pkgInflux.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop influxd:", err)
		}
	}
	if pkgInflux.dir != "" {
		os.RemoveAll(pkgInflux.dir)
	}
	os.Exit(code)
}

// testInflux returns the package's influxd URL and a database name unique to
// t, created when create is true. It skips t when influxd is not installed
// (testenv's rule: fails under CI).
func testInflux(t *testing.T, create bool) (url, db string) {
	t.Helper()
	testenv.NeedsServer(t, "InfluxDB (influxd)")
	startPkgInflux()
	if pkgInflux.err != nil {
		testenv.Unavailable(t, "influxd: %v", pkgInflux.err)
	}
	url = pkgInflux.srv.URL()
	db = strings.ReplaceAll(testenv.TopicRoot(t), "-", "_")
	if create {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := influxd.CreateDatabase(ctx, url, db); err != nil {
			t.Fatal(err)
		}
	}
	return url, db
}

// startPkgInflux starts the package's influxd once; later calls wait until
// it has started (or failed to).
func startPkgInflux() {
	pkgInflux.once.Do(func() {
		bin, err := influxd.Find()
		if err != nil {
			pkgInflux.err = err
			return
		}
		pkgInflux.dir, err = os.MkdirTemp("", "ingest-influxd-")
		if err != nil {
			pkgInflux.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		pkgInflux.srv, pkgInflux.err = influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: pkgInflux.dir})
	})
}
