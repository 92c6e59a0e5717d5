package broker_test

import (
	"bytes"
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
