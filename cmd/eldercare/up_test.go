package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestInfluxChildRestarts: when the child InfluxDB of "up" dies, it is
// started again on the same URL, so ingest catches up without a restart.
func TestInfluxChildRestarts(t *testing.T) {
	t.Parallel()
	bin := needInfluxd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := startingInflux(t) // held until the restarted child answers
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
	testenv.EventuallyTrue(t, 60*time.Second, "the child InfluxDB answers again on the same URL", func() bool {
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
	started()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Supervise: %v", err)
	}
}

// TestCheckOpenBroker: an open embedded broker may listen on loopback; on
// any other address only with --mqtt-allow-anonymous.
func TestCheckOpenBroker(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		listen  string
		allowed bool
		ok      bool
	}{
		{"127.0.0.1:1883", false, true},
		{"[::1]:1883", false, true},
		{"localhost:1883", false, true},
		{"0.0.0.0:1883", false, false},
		{":1883", false, false},
		{"192.168.1.10:1883", false, false},
		{"0.0.0.0:1883", true, true},
	} {
		err := checkOpenBroker(c.listen, c.allowed)
		if (err == nil) != c.ok {
			t.Errorf("checkOpenBroker(%s, %v) = %v, want ok=%v", c.listen, c.allowed, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--mqtt-allow-anonymous") {
			t.Errorf("the refusal does not name the flag: %v", err)
		}
	}
}

// TestUpRefusesOpenBrokerOnNetwork: "up --demo" (open broker: the demo
// registry has no device credentials) on 0.0.0.0 stops before starting
// anything, naming the flag.
func TestUpRefusesOpenBrokerOnNetwork(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetArgs([]string{"up", "--demo", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--mqtt-listen", "0.0.0.0:0",
		"--influx", "http://127.0.0.1:1", "--mqtt-auth", "off"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "--mqtt-allow-anonymous") {
		t.Fatalf("up with an open broker on 0.0.0.0 = %v, want a refusal naming --mqtt-allow-anonymous", err)
	}
}

// TestInternalMQTTPassword: generated once with mode 0600, then reused.
func TestInternalMQTTPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p1, err := internalMQTTPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, internalMQTTFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	p2, err := internalMQTTPassword(dir)
	if err != nil || p1 != p2 || len(p1) < 32 {
		t.Errorf("second read = %q, %v; want the first %q (>= 32 characters)", p2, err, p1)
	}
}
