package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
)

var charset = regexp.MustCompile(`^[a-z0-9-]+$`)

func TestTopicRoot(t *testing.T) {
	seen := make(map[string]bool)
	for range 10000 {
		r := TopicRoot(t)
		if seen[r] {
			t.Fatalf("TopicRoot repeated %q", r)
		}
		seen[r] = true
	}
	for _, name := range []string{"Plain", "With Spaces/And#Sub_Test", "中文名字", strings.Repeat("Long/", 40)} {
		t.Run(name, func(t *testing.T) {
			r := TopicRoot(t)
			if !charset.MatchString(r) || len(r) > 52 || !strings.HasPrefix(r, "test-") || strings.Contains(r, "--") {
				t.Fatalf("TopicRoot = %q: want test-<name>-<hex> of [a-z0-9-], <= 52 bytes, no empty segment", r)
			}
			if a, b := TopicRoot(t), TopicRoot(t); a == b {
				t.Fatalf("two calls in one test returned %q", a)
			}
		})
	}
}

func TestClientID(t *testing.T) {
	for _, role := range []string{"ingest", "Alerting Replica#2", "", strings.Repeat("r", 100)} {
		id := ClientID(t, role)
		if !charset.MatchString(id) || len(id) > 64 {
			t.Errorf("ClientID(%q) = %q: want [a-z0-9-], <= 64 bytes", role, id)
		}
		if ClientID(t, role) == id {
			t.Errorf("ClientID(%q) repeated %q", role, id)
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"TestFoo", 40, "testfoo"},
		{"TestFoo/sub_case#01", 40, "testfoo-sub-case-01"},
		{"--a--b--", 40, "a-b"},
		{"abc-def", 4, "abc"},
		{"中文", 40, "x"},
		{"", 40, "x"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestFreePort(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr %s not bindable: %v", addr, err)
	}
	l.Close()
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
}

func TestRealData(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ELDERCARE_REALDATA", dir)
	if got := RealData(t); got != dir {
		t.Fatalf("RealData = %q, want %q", got, dir)
	}

	t.Setenv("ELDERCARE_REALDATA", "")
	t.Setenv("CI", "")   // outside CI a missing folder skips; under CI it fails
	t.Chdir(t.TempDir()) // no go.mod above
	fake := &recordingTB{TB: t}
	RealData(fake)
	if !strings.Contains(fake.skipped, "ELDERCARE_REALDATA") {
		t.Fatalf("RealData without recordings: skip message %q does not name ELDERCARE_REALDATA", fake.skipped)
	}
}

// recordingTB records Skipf and Fatalf instead of stopping the test.
type recordingTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recordingTB) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestUnavailableFatalUnderCI(t *testing.T) {
	for _, tt := range []struct {
		ci    string
		fatal bool
	}{{"", false}, {"false", false}, {"true", true}, {"1", true}, {"yes", true}} {
		t.Setenv("CI", tt.ci)
		fake := &recordingTB{TB: t}
		unavailable(fake, "no %s", "server")
		if got := fake.fatal != ""; got != tt.fatal {
			t.Errorf("CI=%q: fatal = %v, want %v (skip %q, fatal %q)", tt.ci, got, tt.fatal, fake.skipped, fake.fatal)
		}
	}
}

// connect returns a connected paho client; handler, if set, receives messages routed to no subscription callback.
func connect(t *testing.T, url, role string, clean bool, handler mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(ClientID(t, role)).SetCleanSession(clean).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(false)
	if handler != nil {
		opts.SetDefaultPublishHandler(handler)
	}
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", role, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func wait(t *testing.T, what string, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v (or no answer within 10 s)", what, tok.Error())
	}
}

// roundtrip publishes one QoS 1 message under a fresh topic root and waits for a subscriber to receive it.
func roundtrip(t *testing.T, url string) {
	t.Helper()
	root := TopicRoot(t)
	got := make(chan string, 1)
	sub := connect(t, url, "sub", true, nil)
	wait(t, "subscribe", sub.Subscribe(root+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Topic() + " " + string(m.Payload()):
		default:
		}
	}))
	pub := connect(t, url, "pub", true, nil)
	wait(t, "publish", pub.Publish(root+"/bed-1/fall", 1, false, "fall detected"))
	select {
	case m := <-got:
		if want := root + "/bed-1/fall fall detected"; m != want {
			t.Fatalf("received %q, want %q", m, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not received within 10 s")
	}
	sub.Disconnect(100)
	pub.Disconnect(100)
}

func TestOwnMosquittoRestart(t *testing.T) {
	b := StartMosquitto(t)
	if !strings.HasPrefix(b.URL(), "tcp://127.0.0.1:") || b.Port() == 1883 {
		t.Fatalf("URL = %s", b.URL())
	}
	roundtrip(t, b.URL())

	port := b.Port()
	b.Stop()
	if b.Running() {
		t.Fatal("Running after Stop")
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("broker still accepts connections after Stop")
	}
	b.Stop() // idempotent

	b.Start()
	if b.Port() != port {
		t.Fatalf("port changed across restart: %d -> %d", port, b.Port())
	}
	roundtrip(t, b.URL())

	b.Kill()
	b.Start()
	roundtrip(t, b.URL())
	if !strings.Contains(b.Log(), "running") {
		t.Errorf("broker log lacks start-up lines:\n%s", b.Log())
	}
}

func TestOwnMosquittoSimple(t *testing.T) {
	roundtrip(t, OwnMosquitto(t, "max_keepalive 120"))
}

// TestOwnMosquittoNeverDrops queues more QoS 1 messages for an offline persistent session than Mosquitto's default
// max_queued_messages (1000) and expects every one after reconnecting.
func TestOwnMosquittoNeverDrops(t *testing.T) {
	const n = 3000
	url := OwnMosquitto(t)
	root := TopicRoot(t)
	id := ClientID(t, "sub")
	received := make(chan struct{}, n)
	handler := func(_ mqtt.Client, m mqtt.Message) { received <- struct{}{} }
	newSub := func() mqtt.Client {
		opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
			SetAutoReconnect(false).SetDefaultPublishHandler(handler)
		c := mqtt.NewClient(opts)
		wait(t, "connect sub", c.Connect())
		return c
	}
	sub := newSub()
	wait(t, "subscribe", sub.Subscribe(root+"/#", 1, nil))
	sub.Disconnect(100)

	pub := connect(t, url, "pub", true, nil)
	for i := range n {
		wait(t, "publish", pub.Publish(fmt.Sprintf("%s/bed-%d/vitals", root, i%10), 1, false, "x"))
	}

	sub = newSub()
	defer sub.Disconnect(100)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range n {
		select {
		case <-received:
		case <-ctx.Done():
			t.Fatalf("received %d of %d queued messages", i, n)
		}
	}
}

func TestMachineMosquitto(t *testing.T) {
	roundtrip(t, Mosquitto(t))
}

func TestInfluxDB(t *testing.T) {
	url := InfluxDB(t, "eldercare")
	client := influxdb2.NewClient(url, "")
	defer client.Close()
	if err := client.WriteAPIBlocking("", "eldercare/autogen").WriteRecord(t.Context(), "vitals,bed=1 spo2_pct=97"); err != nil {
		t.Fatalf("write into created database: %v", err)
	}
}

func TestNowPinned(t *testing.T) {
	t.Setenv(NowEnv, "2026-12-07T00:30:00Z")
	got := Now()
	pin := time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC)
	if got.Before(pin) || got.Sub(pin) > time.Since(started)+time.Second {
		t.Errorf("Now() = %v, want the pin %v plus the test binary's run time", got, pin)
	}
	if got.Weekday() != time.Monday {
		t.Errorf("weekday %v", got.Weekday())
	}
	t.Setenv(NowEnv, "")
	if d := time.Since(Now()); d < 0 || d > time.Second {
		t.Errorf("unpinned Now() is %v from the wall clock", d)
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	n := 0
	Eventually(t, 5*time.Second, func() string {
		if n++; n < 3 {
			return "not yet"
		}
		return ""
	})
	if n != 3 {
		t.Errorf("cond asked %d times, want 3", n)
	}
	r := &recordingTB{TB: t}
	EventuallyTrue(r, 50*time.Millisecond, "never", func() bool { return false })
	if !strings.Contains(r.fatal, "never") {
		t.Errorf("fatal %q, want it to name the condition", r.fatal)
	}
}

// TestConnectAs: the embedded broker admits a client with credentials
// (it is open) and a CONNECT longer than 127 bytes (two-byte remaining
// length); a port with nothing listening is an error, not a refusal.
func TestConnectAs(t *testing.T) {
	t.Parallel()
	b := EmbeddedBroker(t)
	addr := strings.TrimPrefix(b.URL(), "tcp://")
	if err := ConnectAs(addr, ClientID(t, "short"), "", "", 5*time.Second); err != nil {
		t.Errorf("anonymous: %v", err)
	}
	if err := ConnectAs(addr, ClientID(t, "long"), "user-"+strings.Repeat("u", 100), strings.Repeat("p", 100), 5*time.Second); err != nil {
		t.Errorf("with a 200-byte user name and password: %v", err)
	}
	var refused *ConnackError
	if err := ConnectAs(FreeAddr(t), "x", "", "", time.Second); err == nil || errors.As(err, &refused) {
		t.Errorf("nothing listening: %v, want a connection error", err)
	}
}
