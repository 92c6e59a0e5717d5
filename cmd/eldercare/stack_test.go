package main

// Helpers shared by the tests that run parts of the stack: one InfluxDB for
// the whole package (a database per test), the Modbus simulator behind a
// gateway, and the check for the influxd binary without starting it.

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestMain runs four parallel tests at a time rather than GOMAXPROCS (2 in
// CI): most of this package's tests wait on servers, timers and child
// processes, and the CPU-heavy influxd starts queue on influxStarts anyway.
// (-parallel on the command line wins.)
func TestMain(m *testing.M) { os.Exit(testenv.MainParallel(m, 4)) }

// sharedInflux returns the base URL of the package's InfluxDB and a new
// database name for the calling test, which ingest creates on start
// (testenv.SharedInflux).
func sharedInflux(t *testing.T) (url, db string) {
	t.Helper()
	return testenv.SharedInflux(t, false)
}

// influxStarts holds one token while an influxd of this package starts:
// a start costs seconds of CPU, and parallel tests starting several at once
// on the 2-core machine miss influxd.Start's 30 s deadline.
var influxStarts = make(chan struct{}, 1)

// startingInflux waits for the package's influxd start slot and holds it
// until done is called (at the latest when the test ends). A test holds it
// around influxd.Start, or until an "up" it started has its child InfluxDB
// answering.
func startingInflux(t *testing.T) (done func()) {
	t.Helper()
	select {
	case influxStarts <- struct{}{}:
	case <-time.After(10 * time.Minute):
		t.Fatal("no influxd start slot within 10 min")
	}
	var once sync.Once
	done = func() { once.Do(func() { <-influxStarts }) }
	t.Cleanup(done)
	return done
}

// needInfluxd returns the influxd binary (influxd.Find) for a test that
// starts its own (through "up" or influxd.Start), skipping it under -short
// or when the binary is missing (failing under CI), as testenv.Influx does
// but without starting a server only to find out.
func needInfluxd(t *testing.T) string {
	t.Helper()
	testenv.NeedsServer(t, "InfluxDB (influxd)")
	bin, err := influxd.Find()
	testenv.RequireOrSkip(t, err, "influxd")
	return bin
}

// modbusSimTCP serves the simulated model (a modbussim model name, which is
// also its profile's file name under device/modbus/profiles) as slave 1 on
// a free loopback Modbus TCP port until ctx ends. It writes that profile
// into dir with the poll interval poll instead of the shipped 10 s, and
// returns the simulator's address and the profile's path.
func modbusSimTCP(ctx context.Context, t *testing.T, dir, model, poll string) (addr, profile string) {
	t.Helper()
	sim := modbussim.New(modbussim.TCP, slog.New(slog.DiscardHandler))
	if err := sim.AddModel(model, 1); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sim.Run(ctx, ln)
	prof, err := os.ReadFile(filepath.Join(repoRoot, "device", "modbus", "profiles", model+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fast := strings.Replace(string(prof), "poll_interval: 10s", "poll_interval: "+poll, 1)
	if fast == string(prof) {
		t.Fatalf("profile %s has no poll_interval: 10s to shorten", model)
	}
	profile = filepath.Join(dir, model+"-fast.yaml")
	if err := os.WriteFile(profile, []byte(fast), 0o600); err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), profile
}
