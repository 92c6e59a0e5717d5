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
	t.Parallel()
	influxURL, db := testInflux(t, false) // the children create the database
	mqttURL := testenv.OwnMosquitto(t)
	root := testenv.TopicRoot(t)
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
	t.Parallel()
	influxURL, db := testInflux(t, false) // the children create the database
	mqttURL := testenv.OwnMosquitto(t)
	root := testenv.TopicRoot(t)
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

// TestInfluxOutage stops InfluxDB under load: ingest stops
// acknowledging, holds at most MaxInFlight messages (the broker keeps the
// rest, its in-flight window is bounded), shows the backlog in its metrics
// and catches up when InfluxDB is back, with nothing lost. It does not run
// in parallel: it measures the process's heap.
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
	const n = 30_000
	pub.publish(2000, n, nil) // the broker holds all 28,000 now (it acknowledged them)
	// The outage lasts until ingest holds a full window and has failed two
	// more writes with it: it keeps trying, holding no more than that.
	var maxHeld, fullAt float64 = 0, -1
	var failing bool
	testenv.Eventually(t, 90*time.Second, func() string {
		held := testutil.ToFloat64(h.svc.m.inFlight)
		maxHeld = max(maxHeld, held)
		failing = failing || testutil.ToFloat64(h.svc.m.writeFailing) > 0
		errs := testutil.ToFloat64(h.svc.m.writeErrors)
		switch {
		case maxHeld > maxInFlight:
			return "" // reported below
		case held < maxInFlight:
			return fmt.Sprintf("in_flight %v during the outage, want the full window MaxInFlight %d", held, maxInFlight)
		case fullAt < 0:
			fullAt = errs
		}
		if errs < fullAt+2 {
			return fmt.Sprintf("write_errors_total %v, want two more failed writes after the window filled at %v", errs, fullAt)
		}
		return ""
	})
	if maxHeld > maxInFlight {
		t.Errorf("in_flight peaked at %v during the outage, want at most MaxInFlight %d", maxHeld, maxInFlight)
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
	t.Parallel()
	influxURL, db := testInflux(t, true)
	b := testenv.StartMosquitto(t)
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
