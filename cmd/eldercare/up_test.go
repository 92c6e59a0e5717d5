package main

import (
	"context"
	"log/slog"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestInfluxChildRestarts: when the child InfluxDB of "up" dies, it is
// started again on the same URL, so ingest catches up without a restart.
func TestInfluxChildRestarts(t *testing.T) {
	testenv.Influx(t) // skips (or fails under CI) without an influxd binary
	bin, err := influxd.Find()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := startInfluxChild(ctx, influxd.Options{Bin: bin, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Stop()
	done := make(chan error, 1)
	go func() { done <- child.Supervise(ctx, slog.New(slog.NewTextHandler(testWriter{t}, nil))) }()

	first := child.current().Pid()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the child InfluxDB answers again on the same URL", func() bool {
		if child.current().Pid() == first {
			return false
		}
		resp, err := http.Get(child.URL() + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Supervise: %v", err)
	}
}
