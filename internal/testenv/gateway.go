package testenv

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// RunUntilCleanup runs run (e.g. a gateway source's Run with its sink) in a
// goroutine with a context that ends when the test ends: in t.Cleanup it
// cancels that context and fails the test if run returned an error or did
// not return within 10 s. It returns the context, for whatever else the test
// runs until it ends.
func RunUntilCleanup(t testing.TB, run func(ctx context.Context) error) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10 s of cancellation")
		}
	})
	return ctx
}

// AwaitSubscribed waits until a subscriber under test (a gateway source) has
// its subscription in place: a probe client connected to the broker at url
// (tcp://host:port) publishes payload to topic at QoS 1 every 50 ms until
// handled reports that the subscriber counted one (e.g. a metric of
// messages it skipped or took). It fails the test after 10 s. Messages
// published before the subscription exists are lost, so a test that
// publishes a recording waits here first.
func AwaitSubscribed(t testing.TB, url, topic string, payload []byte, handled func() bool) {
	t.Helper()
	probe := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(ClientID(t, "probe")))
	if tok := probe.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("testenv: probe connect to %s: %v", url, tok.Error())
	}
	defer probe.Disconnect(0)
	deadline := time.Now().Add(10 * time.Second)
	for !handled() {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: no probe message on %s handled within 10 s: the subscriber never subscribed", topic)
		}
		probe.Publish(topic, 1, false, payload).WaitTimeout(time.Second)
		time.Sleep(50 * time.Millisecond)
	}
}
