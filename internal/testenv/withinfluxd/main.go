// Command withinfluxd runs a command with one influxd for all of it: it
// starts influxd (InfluxDB 1.8, found as internal/influxd.Find finds it) on
// free loopback ports in a temporary directory, runs the command with
// ELDERCARE_TEST_INFLUXD set to the server's base URL (testenv.InfluxEnv),
// then stops the server, removes the directory and exits with the
// command's exit code. make test runs go test under it, so the test
// binaries that need InfluxDB share one server instead of starting one
// each (seconds of CPU apiece on a 2-core machine).
//
//	go run ./internal/testenv/withinfluxd go test ./...
//
// Without an influxd binary it runs the command as it is (the tests then
// start, skip or fail as they do alone) and says so on stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: withinfluxd command [args...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := os.Environ()
	if srv, dir, err := startInflux(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "withinfluxd: %v; running without a shared influxd\n", err)
	} else {
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "withinfluxd: stop influxd: %v\n", err)
			}
			os.RemoveAll(dir)
		}()
		env = append(env, testenv.InfluxEnv+"="+srv.URL())
		fmt.Fprintf(os.Stderr, "withinfluxd: influxd at %s for %s\n", srv.URL(), args[0])
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "withinfluxd: %v\n", err)
		return 1
	}
	// An interrupt reaches the command through the terminal's process
	// group; here it only must not end withinfluxd before the command.
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if code := exit.ExitCode(); code >= 0 {
			return code
		}
		return 1
	default:
		fmt.Fprintf(os.Stderr, "withinfluxd: %v\n", err)
		return 1
	}
}

// startInflux starts influxd in a new temporary directory.
func startInflux(ctx context.Context) (*influxd.Server, string, error) {
	bin, err := influxd.Find()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "eldercare-test-run-influxd-")
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	srv, err := influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(dir, "influxdb")})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return srv, dir, nil
}
