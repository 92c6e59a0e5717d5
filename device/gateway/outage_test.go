package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// The outage tests cut the uplink for 12 s while 60 numbered readings, one
// every 200 ms, go into the gateway, and then check that all 60 reach a
// subscriber exactly once after deduplication by (device, boot, seq), in
// order, followed by a 61st reading taken after the broker is back (the
// marker: once it is in, any late duplicate or stray of the backlog would
// be too). The cut outlasts twice the uplink's longest reconnect interval
// (internal/mqttconn, 5 s). They run in parallel, each with its own
// Mosquitto.

const (
	outageReadings = 60
	outageGap      = 200 * time.Millisecond // between two readings during the cut
	outageDevice   = "bed-1"
)

// persistentBroker starts a test-owned Mosquitto that keeps sessions across
// Stop/Start, so the subscriber's queue survives the cut.
func persistentBroker(t *testing.T) *testenv.Broker {
	// Mosquitto started as root drops to the mosquitto user, which must be
	// able to reach and write its database directory: t.TempDir's parent
	// is private, so make one of our own.
	dir, err := os.MkdirTemp("", "eldercare-gateway-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return testenv.StartMosquitto(t, "persistence true", "persistence_location "+dir+"/", "autosave_interval 0")
}

func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s uplink cut; skipped with -short")
	}
	t.Parallel()
	b := persistentBroker(t)
	root := testenv.TopicRoot(t)
	sub := subscribe(t, b.URL(), root)
	sp := openSpool(t, "", spool.Config{})
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: b.URL(), ClientID: testenv.ClientID(t, "gw"),
		Devices: []Device{{ID: outageDevice, Kind: device.BedSensor, Interval: time.Second}}}, sp, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	testenv.EventuallyTrue(t, 15*time.Second, "uplink connected", g.Connected)

	b.Stop()
	testenv.EventuallyTrue(t, 5*time.Second, "uplink to notice the cut", func() bool { return !g.Connected() })
	ctx := context.Background()
	for n := 1; n <= outageReadings; n++ {
		if err := g.Reading(ctx, outageDevice, time.Now(), map[string]float64{"n": float64(n)}); err != nil {
			t.Fatalf("reading %d: %v", n, err)
		}
		if g.Connected() {
			t.Fatalf("uplink connected during the cut (reading %d)", n)
		}
		time.Sleep(outageGap)
	}
	if n, _ := sp.Len(); n != outageReadings {
		t.Errorf("spool holds %d entries at the end of the cut, want %d", n, outageReadings)
	}
	b.Start()
	if err := g.Reading(ctx, outageDevice, time.Now(), map[string]float64{"n": outageReadings + 1}); err != nil {
		t.Fatalf("marker reading: %v", err)
	}
	testenv.EventuallyTrue(t, 30*time.Second, "60 readings and the marker at the subscriber", func() bool { return len(dedup(sub.snapshot())) >= outageReadings+1 })
	checkNumbered(t, sub.snapshot(), outageReadings+1)
	testenv.EventuallyTrue(t, 10*time.Second, "spool empty after PUBACKs", func() bool { n, _ := sp.Len(); return n == 0 })
}

// TestOutageKill9 runs the gateway as a child process (this test binary
// re-executed), kills it with SIGKILL after reading 30, in the middle of
// the cut, and starts it again on the same spool.
func TestOutageKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s uplink cut; skipped with -short")
	}
	t.Parallel()
	b := persistentBroker(t)
	root := testenv.TopicRoot(t)
	sub := subscribe(t, b.URL(), root)
	spoolPath := filepath.Join(t.TempDir(), "spool.db")
	clientID := testenv.ClientID(t, "gw")

	child := startHelper(t, b.URL(), root, spoolPath, clientID)
	testenv.EventuallyTrue(t, 15*time.Second, "child gateway connected", func() bool { return child.connected() })

	b.Stop()
	var boots []uint32
	for n := 1; n <= outageReadings; n++ {
		child.send(t, n)
		if n == outageReadings/2 {
			boots = append(boots, child.boot)
			child.kill9(t)
			child = startHelper(t, b.URL(), root, spoolPath, clientID)
		}
		time.Sleep(outageGap)
	}
	boots = append(boots, child.boot)
	if boots[1] <= boots[0] {
		t.Errorf("boot after kill -9 is %d, want > %d", boots[1], boots[0])
	}
	b.Start()
	child.send(t, outageReadings+1) // the marker
	testenv.EventuallyTrue(t, 30*time.Second, "60 readings and the marker at the subscriber", func() bool { return len(dedup(sub.snapshot())) >= outageReadings+1 })
	rs := sub.snapshot()
	checkNumbered(t, rs, outageReadings+1)
	// Readings taken before the kill keep the first boot's identity.
	for _, r := range dedup(rs) {
		wantBoot := boots[0]
		if r.n > outageReadings/2 {
			wantBoot = boots[1]
		}
		if r.boot != wantBoot {
			t.Errorf("reading n=%g has boot %d, want %d", r.n, r.boot, wantBoot)
		}
	}
}

// The helper process: a gateway whose source is stdin. Each line "n" is a
// reading {"n": n} taken now; "ok n" on stdout means it is committed.
const helperEnv = "ELDERCARE_GATEWAY_TEST_HELPER"

func helperMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sp, err := spool.Open(ctx, spool.Config{Path: os.Getenv("GW_SPOOL")}, nil, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: os.Getenv("GW_ROOT"), MQTTURL: os.Getenv("GW_URL"),
		ClientID: os.Getenv("GW_CLIENT"), Devices: []Device{{ID: outageDevice, Kind: device.BedSensor, Interval: time.Second}}}, sp, nil, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go g.Run(ctx)
	fmt.Printf("boot %d\n", sp.Boot())
	go func() {
		for ctx.Err() == nil {
			if g.Connected() {
				fmt.Println("connected")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad line:", in.Text())
			return 2
		}
		if err := g.Reading(ctx, outageDevice, time.Now(), map[string]float64{"n": float64(n)}); err != nil {
			fmt.Printf("err %d %v\n", n, err)
			continue
		}
		fmt.Printf("ok %d\n", n)
	}
	return 0
}

type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	boot   uint32
	mu     sync.Mutex
	isConn bool
	stderr *bytes.Buffer
}

func startHelper(t *testing.T, url, root, spoolPath, clientID string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GW_URL="+url, "GW_ROOT="+root, "GW_SPOOL="+spoolPath, "GW_CLIENT="+clientID)
	h := &helper{cmd: cmd, lines: make(chan string, 100), stderr: &bytes.Buffer{}}
	cmd.Stderr = &syncWriter{w: h.stderr}
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gateway child %d stderr:\n%s", cmd.Process.Pid, h.stderr.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "connected" {
				h.mu.Lock()
				h.isConn = true
				h.mu.Unlock()
				continue
			}
			h.lines <- line
		}
		close(h.lines)
	}()
	select {
	case line := <-h.lines:
		var boot uint32
		if _, err := fmt.Sscanf(line, "boot %d", &boot); err != nil {
			t.Fatalf("child said %q, want boot N", line)
		}
		h.boot = boot
	case <-time.After(15 * time.Second):
		t.Fatalf("child did not start within 15 s; stderr:\n%s", h.stderr.String())
	}
	return h
}

func (h *helper) connected() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.isConn
}

// send hands reading n to the child and waits until it is committed.
func (h *helper) send(t *testing.T, n int) {
	t.Helper()
	if _, err := fmt.Fprintf(h.stdin, "%d\n", n); err != nil {
		t.Fatalf("send reading %d: %v", n, err)
	}
	select {
	case line := <-h.lines:
		if line != fmt.Sprintf("ok %d", n) {
			t.Fatalf("child answered %q to reading %d", line, n)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("child did not commit reading %d within 10 s", n)
	}
}

func (h *helper) kill9(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
