package testenv

import (
	"io"
	"log/slog"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/broker"
)

// EmbeddedBroker starts the product's own broker (internal/broker, mochi-mqtt)
// on a free loopback port, open to anyone, without a store, and closes it in
// t.Cleanup. It needs no external server, so it runs under -short: use it
// wherever the network broker is not what the test is about; keep
// Mosquitto/StartMosquitto for the tests about Mosquitto.
func EmbeddedBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("testenv: embedded broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("testenv: embedded broker: close: %v", err)
		}
	})
	return b
}
