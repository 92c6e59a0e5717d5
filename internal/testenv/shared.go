package testenv

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// shared is the test binary's one influxd, started by the first
// SharedInflux call and stopped by Main. Starting influxd costs seconds of
// CPU (Flux's start-up), too much to pay per test on a 2-core machine.
var shared struct {
	once sync.Once
	srv  *influxd.Server // nil when the run's influxd (InfluxEnv) is used
	url  string
	dir  string
	err  error
}

// InfluxEnv is the environment variable through which one influxd serves
// every test binary of a run: its base URL ("http://127.0.0.1:PORT"), set
// by make test, which runs go test under internal/testenv/withinfluxd.
// When it is set, SharedInflux (and the browser tests) use that server and
// start none: each influxd start costs seconds of CPU, once per package
// otherwise. Database names carry the process id, so the binaries of a run
// never share a database.
const InfluxEnv = "ELDERCARE_TEST_INFLUXD"

// InfluxFromEnv returns the run's influxd URL from InfluxEnv, if set.
func InfluxFromEnv() (url string, ok bool) {
	url = os.Getenv(InfluxEnv)
	return url, url != ""
}

// Main runs the package's tests and then stops what they shared (the
// influxd of SharedInflux); use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// It returns m.Run's exit code.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop the shared influxd:", err)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

// MainParallel is Main for a package whose tests mostly wait (on servers
// starting, timers, child processes, the broker) rather than compute: it
// lets n tests that call t.Parallel run at once, instead of go test's
// default of GOMAXPROCS (2 on a 2-core machine, where such a package then
// spends most of its time with both slots waiting). A -parallel given on
// the command line wins, and n below GOMAXPROCS changes nothing. Use it as
// the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.MainParallel(m, 4)) }
func MainParallel(m *testing.M, n int) int {
	flag.Parse() // TestMain must parse before it reads flags (package testing)
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && n > runtime.GOMAXPROCS(0) {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: set -test.parallel:", err)
		}
	}
	return Main(m)
}

// SharedInflux returns the base URL of the test binary's one influxd
// (started on first use; the package's TestMain must be Main, which stops
// it) and a database name unique to t ("t_" + TopicRoot, lower case, '_'
// for '-' and '/'). With create the database is created; without, the code
// under test creates it. It skips t under -short or without an influxd
// binary (failing under CI), as Influx does, and fails t when the shared
// influxd could not start: every test sharing it then fails with the same
// error.
func SharedInflux(t testing.TB, create bool) (url, db string) {
	t.Helper()
	NeedsServer(t, "InfluxDB (influxd)")
	external, ok := InfluxFromEnv()
	var bin string
	if !ok {
		var err error
		bin, err = influxd.Find()
		RequireOrSkip(t, err, "influxd")
	}
	shared.once.Do(func() {
		if ok {
			shared.url = external
			return
		}
		shared.dir, shared.err = os.MkdirTemp("", "eldercare-test-influxd-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.srv, shared.err = influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(shared.dir, "influxdb"),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if shared.err == nil {
			shared.url = shared.srv.URL()
		}
	})
	if shared.err != nil {
		t.Fatalf("testenv: the shared influxd: %v", shared.err)
	}
	url = shared.url
	db = fmt.Sprintf("t_%d_%s", os.Getpid(), strings.NewReplacer("-", "_", "/", "_").Replace(strings.ToLower(TopicRoot(t))))
	if create {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := influxd.CreateDatabase(ctx, url, db); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return url, db
}
