package ingest

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// childConfig is a Config for a child ingest process.
func childConfig(mqttURL, influxURL, db, root, clientID string) Config {
	return Config{MQTTURL: mqttURL, Root: root, ClientID: clientID, InfluxURL: influxURL, InfluxDatabase: db,
		FlushInterval: 50 * time.Millisecond, BatchSize: 1000, MaxInFlight: 2000}
}

// TestKill9AndRestartUnderLoad kills the ingest process with SIGKILL twice
// while 20,000 messages from 10,000 devices are published, restarts it with
// the same client id (persistent session) and checks that every reading is
// stored exactly once.
func TestKill9AndRestartUnderLoad(t *testing.T) {
	mqttURL := testenv.OwnMosquitto(t)
	influxURL := testenv.InfluxServer(t).URL()
	root, db := testenv.TopicRoot(t), "eldercare"
	ing := startChild(t, childConfig(mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest")))
	pub := newLoadPublisher(t, mqttURL, root, 10_000, 1)
	const n = 20_000
	pub.publish(0, n, func(i int) {
		if i == n/3 || i == 2*n/3 {
			ing.kill()
			t.Logf("killed ingest (SIGKILL) before message %d", i)
			if i == 2*n/3 {
				ing.start() // restarted at once, while the publisher goes on
			}
		}
		if i == n/3+2000 {
			ing.start() // restarted after 2,000 messages were queued by the broker
		}
	})
	waitStored(t, influxURL, db+"/autogen", n, 90*time.Second)
}

// TestTwoReplicasOneKilled runs two replicas on one shared subscription,
// kills one mid-burst and restarts it after the burst: nothing is lost,
// nothing stored twice.
func TestTwoReplicasOneKilled(t *testing.T) {
	mqttURL := testenv.OwnMosquitto(t)
	influxURL := testenv.InfluxServer(t).URL()
	root, db := testenv.TopicRoot(t), "eldercare"
	a := startChild(t, childConfig(mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest-a")))
	startChild(t, childConfig(mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest-b")))
	pub := newLoadPublisher(t, mqttURL, root, 10_000, 1)
	const n = 20_000
	pub.publish(0, n, func(i int) {
		if i == n/2 {
			a.kill()
			t.Logf("killed replica a (SIGKILL) before message %d", i)
		}
	})
	// Replica a's unacknowledged messages wait in its persistent session.
	a.start()
	waitStored(t, influxURL, db+"/autogen", n, 90*time.Second)
}

// TestInfluxOutage stops InfluxDB for 25 s under load: ingest stops
// acknowledging, holds at most MaxInFlight messages (the broker keeps the
// rest, its in-flight window is bounded), shows the backlog in its metrics
// and catches up when InfluxDB is back, with nothing lost.
func TestInfluxOutage(t *testing.T) {
	const maxInFlight = 1000
	mqttURL := testenv.OwnMosquitto(t, fmt.Sprintf("max_inflight_messages %d", maxInFlight))
	srv := testenv.InfluxServer(t)
	influxURL := srv.URL()
	root, db := testenv.TopicRoot(t), "eldercare"
	h := startIngest(t, mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest"), nil, func(c *Config) {
		c.MaxInFlight = maxInFlight
		c.BatchSize = 500
	})
	pub := newLoadPublisher(t, mqttURL, root, 10_000, 1)
	pub.publish(0, 2000, nil)
	waitStored(t, influxURL, db+"/autogen", 2000, 60*time.Second)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	writtenBefore := testutil.ToFloat64(h.svc.m.written)
	var heapBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	outageEnd := time.Now().Add(25 * time.Second)
	const n = 30_000
	pub.publish(2000, n, nil)
	var maxHeld float64
	var failing bool
	for time.Now().Before(outageEnd) {
		maxHeld = max(maxHeld, testutil.ToFloat64(h.svc.m.inFlight))
		failing = failing || testutil.ToFloat64(h.svc.m.writeFailing) > 0
		time.Sleep(100 * time.Millisecond)
	}
	if maxHeld > maxInFlight || maxHeld < maxInFlight/2 {
		t.Errorf("in_flight peaked at %v during the outage, want between %d and MaxInFlight %d", maxHeld, maxInFlight/2, maxInFlight)
	}
	if !failing {
		t.Error("write_failing never rose during the outage")
	}
	if w := testutil.ToFloat64(h.svc.m.written); w != writtenBefore {
		t.Errorf("written_total went from %v to %v during the outage, want no change", writtenBefore, w)
	}
	var heapDuring runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapDuring)
	// 28,000 messages were published; ingest holds at most 1,000 of them
	// (about 1 KiB each with their points and goroutine). 64 MiB is far
	// below what holding all of them would take with paho's goroutine per
	// message, and far above the bounded case.
	if grow := int64(heapDuring.HeapInuse) - int64(heapBefore.HeapInuse); grow > 64<<20 {
		t.Errorf("heap grew by %d MiB during the outage", grow>>20)
	}

	u, _ := url.Parse(influxURL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	again, err := influxd.Start(ctx, influxd.Options{DataDir: srv.DataDir(), HTTPAddr: u.Host,
		BindAddr: srv.RPCAddr()})
	if err != nil {
		t.Fatalf("restart influxd: %v", err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	waitStored(t, influxURL, db+"/autogen", n, 120*time.Second)
	testenv.Eventually(t, 10*time.Second, func() string {
		if v := testutil.ToFloat64(h.svc.m.writeFailing); v != 0 {
			return fmt.Sprintf("write_failing %v after recovery", v)
		}
		return ""
	})
}

// TestBrokerRestartResubscribes restarts the test-owned Mosquitto (no
// persistence: the session and its subscription are gone) while ingest
// runs; messages published after the restart are stored.
func TestBrokerRestartResubscribes(t *testing.T) {
	b := testenv.StartMosquitto(t)
	influxURL, db := testInflux(t, true)
	root := testenv.TopicRoot(t)
	h := startIngest(t, b.URL(), influxURL, db, root, testenv.ClientID(t, "ingest"), nil)
	pub := newLoadPublisher(t, b.URL(), root, 100, 1)
	pub.publish(0, 100, nil)
	waitStored(t, influxURL, db+"/autogen", 100, 30*time.Second)
	pub.c.Disconnect(100)
	b.Stop()
	b.Start()
	pub = newLoadPublisher(t, b.URL(), root, 100, 1)
	// ingest reconnects on its own; until it has subscribed again a
	// message has no subscriber and the broker drops it, so wait for the
	// second subscription.
	testenv.Eventually(t, 60*time.Second, func() string {
		if n := h.svc.subscriptions.Load(); n < 2 {
			return fmt.Sprintf("%d subscriptions, want a second one after the broker restart", n)
		}
		return ""
	})
	pub.publish(100, 200, nil)
	waitStored(t, influxURL, db+"/autogen", 200, 30*time.Second)
}
