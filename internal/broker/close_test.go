package broker_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// stuckHook blocks every client's disconnect until released: the shape of
// mochi-mqtt/server#488, where Server.Close waits forever for a client
// goroutine.
type stuckHook struct {
	mqtt.HookBase
	release chan struct{}
}

func (h *stuckHook) ID() string { return "stuck" }
func (h *stuckHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnDisconnect}, []byte{b})
}
func (h *stuckHook) OnDisconnect(*mqtt.Client, error, bool) { <-h.release }

// TestCloseBounded: when a client goroutine never stops, Close returns
// after CloseTimeout with an error that says so, and the store is closed:
// a new broker opens the same file at once (it was locked before).
func TestCloseBounded(t *testing.T) {
	old := broker.CloseTimeout
	broker.CloseTimeout = 200 * time.Millisecond // the hook never returns: any bound is reached
	t.Cleanup(func() { broker.CloseTimeout = old })

	store := filepath.Join(t.TempDir(), "store.db")
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store})
	if err != nil {
		t.Fatal(err)
	}
	h := &stuckHook{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(release)
	if err := b.Server().AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("stuck-1").SetAutoReconnect(false))
	if err := mqttconn.Wait(t.Context(), c.Connect(), 5*time.Second, "connect"); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)

	start := time.Now()
	err = b.Close()
	if err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("Close = %v, want the timeout error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s, want about %s", d, broker.CloseTimeout)
	}
	if err2 := b.Close(); err2 != err {
		t.Errorf("second Close = %v, want the same %v", err2, err)
	}
	b2, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: store})
	if err != nil {
		t.Fatalf("store not released after the bounded close: %v", err)
	}
	release()
	if err := b2.Close(); err != nil {
		t.Errorf("clean close: %v", err)
	}
}

// TestCloseDoesNotWaitForSilentConnections: a connection that never sends
// its CONNECT (a gateway cut off mid-handshake, a port scanner) is not in
// mochi's client list, so mochi's Close neither disconnects it nor stops
// waiting for it. Close must end such connections itself and return
// without the timeout error, well before CloseTimeout.
func TestCloseDoesNotWaitForSilentConnections(t *testing.T) {
	// The connect deadline must not be what ends them here.
	old := broker.ConnectTimeout
	broker.ConnectTimeout = time.Hour
	t.Cleanup(func() { broker.ConnectTimeout = old })
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", strings.TrimPrefix(b.URL(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Half a CONNECT: the fixed header promises more than is sent.
	if _, err := raw.Write([]byte{0x10, 0x20, 0x00, 0x04, 'M'}); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", strings.TrimPrefix(b.URL(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v after %s, want nil", err, time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d >= broker.CloseTimeout {
		t.Errorf("Close took %s", d)
	}
}

// TestSilentConnectionClosedAfterConnectTimeout: a connection that sends no
// CONNECT is closed by the broker once ConnectTimeout has passed, while a
// client that connected stays (its keep-alive replaces the deadline).
func TestSilentConnectionClosedAfterConnectTimeout(t *testing.T) {
	old := broker.ConnectTimeout
	broker.ConnectTimeout = 300 * time.Millisecond
	t.Cleanup(func() { broker.ConnectTimeout = old })
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("keeps-1").SetAutoReconnect(false).SetKeepAlive(30 * time.Second))
	if err := mqttconn.Wait(t.Context(), c.Connect(), 5*time.Second, "connect"); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	silent, err := net.Dial("tcp", strings.TrimPrefix(b.URL(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	silent.SetReadDeadline(start.Add(10 * time.Second))
	n, err := silent.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection: read %d bytes, %v; want it closed by the broker", n, err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %s, before ConnectTimeout", d)
	}
	// The connected client outlived the silent one's deadline.
	if err := mqttconn.Wait(t.Context(), c.Publish("t/keeps", 1, false, "x"), 5*time.Second, "publish"); err != nil {
		t.Errorf("connected client after ConnectTimeout: %v", err)
	}
}
