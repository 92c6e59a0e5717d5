package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// childEnv carries a JSON Config to a re-executed test binary, which then
// runs one ingest Service until SIGTERM (or dies by SIGKILL) instead of the
// tests: a real process that a test can kill -9.
const childEnv = "ELDERCARE_INGEST_TEST_CHILD"

func runChild(raw string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := New(cfg, nil, prometheus.NewRegistry(), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		select {
		case <-svc.subscribed:
			fmt.Println(childSubscribed) // the parent waits for this line (child.waitSubscribed)
		case <-ctx.Done():
		}
	}()
	if err := svc.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childSubscribed is the line a child prints once its subscription is in
// place (its persistent session exists on the broker).
const childSubscribed = "ingest child: subscribed"

// child is ingest running in a child process.
type child struct {
	t          *testing.T
	cfg        Config
	cmd        *exec.Cmd
	subscribed chan struct{} // closed when the current process printed childSubscribed
}

// startChild runs ingest with cfg in a child process; the test's cleanup
// kills it.
func startChild(t *testing.T, cfg Config) *child {
	t.Helper()
	c := &child{t: t, cfg: cfg}
	c.start()
	t.Cleanup(func() { c.kill() })
	c.waitSubscribed(60 * time.Second)
	return c
}

// waitSubscribed waits until the child's subscription is in place, so that
// its persistent session exists before a burst.
func (c *child) waitSubscribed(timeout time.Duration) {
	c.t.Helper()
	select {
	case <-c.subscribed:
	case <-time.After(timeout):
		c.t.Fatalf("ingest child not subscribed within %s", timeout)
	}
}

func (c *child) start() {
	c.t.Helper()
	raw, err := json.Marshal(c.cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = testWriter{c.t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	subscribed := make(chan struct{})
	c.subscribed = subscribed
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == childSubscribed {
				close(subscribed)
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start ingest child: %v", err)
	}
	c.cmd = cmd
}

// kill sends SIGKILL and reaps the process.
func (c *child) kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}

// loadPublisher publishes telemetry at QoS 1 from `devices` simulated
// device ids (d-00000 ...), one message per call to next, `perMsg`
// readings per message. Message i carries seq i*perMsg+1 ... and device
// times base+seq ms, so every reading has a distinct (device, time) and a
// distinct seq.
type loadPublisher struct {
	t       *testing.T
	c       paho.Client
	root    string
	devices int
	perMsg  int
	base    time.Time
}

func newLoadPublisher(t *testing.T, mqttURL, root string, devices, perMsg int) *loadPublisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: root + "-load", CleanSession: true})
	if err != nil {
		t.Fatalf("load publisher: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return &loadPublisher{t: t, c: c, root: root, devices: devices, perMsg: perMsg, base: testenv.Now().Add(-time.Minute)}
}

// payload returns the topic and payload of message i.
func (p *loadPublisher) payload(i int) (string, []byte) {
	dev := fmt.Sprintf("d-%05d", i%p.devices)
	tel := device.Telemetry{V: 1, Device: dev, Boot: 1, ID: uint64(i + 1)}
	first := uint64(i*p.perMsg + 1)
	if p.perMsg == 1 {
		tel.Seq, tel.TS, tel.Values = first, p.base.UnixMilli()+int64(first), map[string]float64{"hr_bpm": 60 + float64(i%40)}
	} else {
		for k := range p.perMsg {
			seq := first + uint64(k)
			tel.Readings = append(tel.Readings, device.Reading{Seq: seq, TS: p.base.UnixMilli() + int64(seq), Values: map[string]float64{"hr_bpm": 60 + float64(k%40)}})
		}
	}
	b, err := json.Marshal(tel)
	if err != nil {
		p.t.Fatal(err)
	}
	return topicOf(p.root, "site-1", dev, device.ChanTelemetry), b
}

// publish sends messages [from, to) with up to 500 unacknowledged
// publishes, and calls at(i) before message i when at is not nil.
func (p *loadPublisher) publish(from, to int, at func(i int)) {
	p.t.Helper()
	window := make(chan paho.Token, 500)
	wait := func(tok paho.Token) {
		if err := mqttconn.Wait(context.Background(), tok, 30*time.Second, "publish"); err != nil {
			p.t.Fatal(err)
		}
	}
	for i := from; i < to; i++ {
		if at != nil {
			at(i)
		}
		topic, b := p.payload(i)
		select {
		case window <- p.c.Publish(topic, 1, false, b):
		default:
			wait(<-window)
			window <- p.c.Publish(topic, 1, false, b)
		}
	}
	close(window)
	for tok := range window {
		wait(tok)
	}
}

// distinctSeq counts distinct seq values of measurement readings in
// bucket, and all points.
func distinctSeq(t *testing.T, influxURL, bucket string) (distinct, points int64) {
	t.Helper()
	q := fmt.Sprintf(`from(bucket:%q) |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement=="readings" and r._field=="seq") |> group()`, bucket)
	for _, r := range flux(t, influxURL, q+` |> count()`) {
		points = r["_value"].(int64)
	}
	for _, r := range flux(t, influxURL, q+` |> distinct() |> count()`) {
		distinct = r["_value"].(int64)
	}
	return distinct, points
}

// waitStored waits until want distinct seq are stored, failing after timeout.
func waitStored(t *testing.T, influxURL, bucket string, want int64, timeout time.Duration) {
	t.Helper()
	var d, n int64
	deadline := time.Now().Add(timeout)
	for {
		// The two counts are two queries: while writes land between them
		// they can disagree, so wait until both have reached want.
		d, n = distinctSeq(t, influxURL, bucket)
		if d >= want && n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d != want || n != want {
		t.Fatalf("stored %d points with %d distinct seq, want exactly %d of each", n, d, want)
	}
}
