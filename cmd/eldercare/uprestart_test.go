package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// upChildEnv carries the arguments of "eldercare up" to the test binary
// re-executed as a child process by TestUpRestartKeepsReadings.
const upChildEnv = "ELDERCARE_TEST_UP_CHILD_ARGS"

// TestUpChildProcess is not a test: run by TestUpRestartKeepsReadings as a
// separate process (the test binary itself), it runs "eldercare up" as
// main does, so the parent can SIGTERM or kill -9 it.
func TestUpChildProcess(t *testing.T) {
	args := os.Getenv(upChildEnv)
	if args == "" {
		t.Skip("runs only as the child process of TestUpRestartKeepsReadings")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatal(err)
	}
	root.SetArgs(argv)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "eldercare up:", err)
		os.Exit(1)
	}
}

type gwConn struct{ c paho.Client }

// upProc is "eldercare up" running in a child process.
type upProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startUp(t *testing.T, args []string) *upProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestUpChildProcess$", "-test.v")
	argv, _ := json.Marshal(args)
	cmd.Env = append(os.Environ(), upChildEnv+"="+string(argv))
	p := &upProc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("eldercare up output (tail):\n%s", lastN(p.out.String(), 6000))
		}
	})
	return p
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *upProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("eldercare up did not exit within 60 s of %v", sig)
	}
}

// influxReadings returns count(seq) and count(distinct(seq)) of a device's
// readings.
func influxReadings(base, db, dev string) (n, distinct int, err error) {
	q := fmt.Sprintf(`SELECT count("seq"), count(distinct("seq")) FROM "readings" WHERE "device" = '%s'`, dev)
	resp, err := http.Get(base + "/query?db=" + url.QueryEscape(db) + "&q=" + url.QueryEscape(q))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, 0, err
	}
	if len(r.Results) == 0 || r.Results[0].Error != "" {
		return 0, 0, fmt.Errorf("query: %+v", r)
	}
	if len(r.Results[0].Series) == 0 {
		return 0, 0, nil
	}
	v := r.Results[0].Series[0].Values[0]
	// A count is null while no point has a seq yet (InfluxDB returns the row
	// with null columns): that is 0 stored, not an error.
	num := func(x any) int {
		f, _ := x.(float64)
		return int(f)
	}
	if len(v) < 3 {
		return 0, 0, fmt.Errorf("query: row %v has no counts", v)
	}
	return num(v[1]), num(v[2]), nil
}

// outageProxy forwards TCP connections to target (the package's influxd)
// from an address of its own, until Down: then the address refuses
// connections, as a stopped InfluxDB's does, and every forwarded
// connection is closed. Up listens on the same address again.
type outageProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener // nil while down
	conns  []net.Conn
}

func newOutageProxy(t *testing.T, target string) *outageProxy {
	t.Helper()
	p := &outageProxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

func (p *outageProxy) URL() string { return "http://" + p.addr }

func (p *outageProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // went down meanwhile
				p.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// Down closes the listener and every forwarded connection.
func (p *outageProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Up listens on the proxy's address again (retrying for up to 10 s while
// the port is still held).
func (p *outageProxy) Up() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("listen on %s again: %v", p.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUpRestartKeepsReadings: "eldercare up" (authentication on, the
// default) with InfluxDB unreachable takes 100 readings from a gateway at
// QoS 1, is stopped (SIGTERM; or kill -9 right after the last PUBACK) and
// started again; once InfluxDB is reachable again all 100 are stored
// exactly once. The embedded broker's store keeps ingest's session and its
// queue. InfluxDB is the package's shared one behind an outageProxy, whose
// address refuses connections during the outage as a stopped influxd's
// would: no influxd start per case.
func TestUpRestartKeepsReadings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"kill -9", syscall.SIGKILL}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testUpRestart(t, c.sig)
		})
	}
}

func testUpRestart(t *testing.T, sig syscall.Signal) {
	influxURL, db := sharedInflux(t) // up creates db
	influx := newOutageProxy(t, strings.TrimPrefix(influxURL, "http://"))
	dir := t.TempDir()
	ctx := context.Background()

	hash, err := registry.HashPassword("gw-secret")
	if err != nil {
		t.Fatal(err)
	}
	regFile := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(regFile, []byte(`sites:
  - {id: s1, name: Site 1, timezone: Asia/Shanghai}
devices:
  - {id: gw-1, site: s1, kind: gateway}
  - {id: vm-1, site: s1, kind: vitals_monitor, gateway: gw-1}
credentials:
  - {username: gw-1, password_hash: "`+hash+`"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	mqttAddr := testenv.FreeAddr(t)
	root := testenv.TopicRoot(t)
	args := []string{"up", "--data", filepath.Join(dir, "data"), "--http", "127.0.0.1:0", "--mqtt-listen", mqttAddr,
		"--influx", influx.URL(), "--influx-db", db, "--registry", regFile, "--root", root, "--log-level", "info"}
	up := startUp(t, args)

	gwURL := "tcp://gw-1:gw-secret@" + mqttAddr
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	connectGW := func() *gwConn {
		var g *gwConn
		testenv.EventuallyTrue(t, 60*time.Second, "eldercare up's broker accepts the gateway", func() bool {
			c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: gwURL, ClientID: "gw-1", ConnectTimeout: 2 * time.Second, Logger: quiet})
			if err != nil {
				return false
			}
			g = &gwConn{c: c}
			return true
		})
		return g
	}
	publish := func(g *gwConn, dev string, seq int, ts int64) {
		t.Helper()
		b, _ := json.Marshal(device.Telemetry{V: 1, Device: dev, Boot: 1, ID: uint64(seq), Seq: uint64(seq), TS: ts, Values: map[string]float64{"hr_bpm": 70}})
		topic := device.Topic{Root: root, Site: "s1", Device: dev, Channel: device.ChanTelemetry}.String()
		if err := mqttconn.Wait(ctx, g.c.Publish(topic, 1, false, b), 10*time.Second, "publish "+topic); err != nil {
			t.Fatal(err)
		}
	}

	// A probe reading shows ingest has subscribed and writes.
	g := connectGW()
	testenv.EventuallyTrue(t, 60*time.Second, "a probe reading stored (ingest subscribed)", func() bool {
		publish(g, "gw-1", int(time.Now().UnixMilli()%1e6)+1, time.Now().UnixMilli())
		n, _, err := influxReadings(influxURL, db, "gw-1")
		return err == nil && n > 0
	})

	influx.Down()
	base := time.Now().Add(-time.Minute).UnixMilli()
	for i := 1; i <= 100; i++ {
		publish(g, "vm-1", i, base+int64(i)*100)
	}
	// Every reading is acknowledged by the broker: stop "up" at once.
	up.stop(t, sig)
	g.c.Disconnect(0)
	if sig == syscall.SIGTERM && up.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("up exited with %v after SIGTERM", up.cmd.ProcessState)
	}

	up = startUp(t, args)
	defer up.stop(t, syscall.SIGTERM)
	// Let the new "up" restore its broker before InfluxDB returns: the
	// gateway connects again.
	g = connectGW()
	defer g.c.Disconnect(0)
	influx.Up()
	var n, distinct int
	testenv.EventuallyTrue(t, 120*time.Second, "100 readings stored after the restart", func() bool {
		n, distinct, err = influxReadings(influxURL, db, "vm-1")
		// count(distinct(seq)) can come back null (0) in the same answer
		// as a full count(seq) while InfluxDB settles the new points (seen
		// once in CI: 100 stored, 0 distinct): wait for both counts.
		return err == nil && n >= 100 && distinct > 0
	})
	if n != 100 || distinct != 100 {
		t.Errorf("stored %d readings (%d distinct seq), want 100 and 100", n, distinct)
	}
}
