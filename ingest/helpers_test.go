package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// harness is one running ingest service with its broker, InfluxDB and topic root.
type harness struct {
	t         *testing.T
	svc       *Service
	reg       *prometheus.Registry
	mqttURL   string
	influxURL string // the real influxd (writes may go through a proxy)
	root      string
	cancel    context.CancelFunc
	done      chan error
}

type option func(*Config)

// startIngest runs a Service against mqttURL and influxURL (writeURL, if
// set, is where the service writes instead) until the test ends.
func startIngest(t *testing.T, mqttURL, influxURL, db, root, clientID string, res Residents, opts ...option) *harness {
	t.Helper()
	cfg := Config{
		MQTTURL:        mqttURL,
		Root:           root,
		ClientID:       clientID,
		Group:          "ingest",
		InfluxURL:      influxURL,
		InfluxDatabase: db,
		FlushInterval:  50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := New(cfg, res, reg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	svc.now = testenv.Now // receive times on the test's clock (make test-clock pins it)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, svc: svc, reg: reg, mqttURL: mqttURL, influxURL: influxURL, root: root, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		dropSession(t, mqttURL, clientID)
	})
	select {
	case <-svc.subscribed:
	case err := <-h.done:
		h.done <- err
		t.Fatalf("Run returned before subscribing: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("ingest did not subscribe within 60 s")
	}
	return h
}

// stop cancels Run and checks that it returns nil.
func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.done <- nil
	case <-time.After(30 * time.Second):
		h.t.Error("Run did not return within 30 s of cancel")
	}
}

// dropSession ends the persistent session of clientID on the broker by
// connecting once with a clean session.
func dropSession(t *testing.T, mqttURL, clientID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: clientID, CleanSession: true})
	if err != nil {
		t.Logf("drop session %s: %v", clientID, err)
		return
	}
	c.Disconnect(250)
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// publisher connects a plain QoS 1 publisher.
func publisher(t *testing.T, mqttURL string) paho.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: testenv.ClientID(t, "pub"), CleanSession: true})
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	err := mqttconn.Wait(context.Background(), c.Publish(topic, 1, false, payload), 10*time.Second, "publish "+topic)
	if err != nil {
		t.Fatal(err)
	}
}

func topicOf(root, site, dev string, ch device.Channel) string {
	return device.Topic{Root: root, Site: site, Device: dev, Channel: ch}.String()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reading builds a single-reading telemetry payload.
func reading(dev string, seq uint64, ts time.Time, values map[string]float64) device.Telemetry {
	return device.Telemetry{V: 1, Device: dev, Boot: 1, ID: seq, Seq: seq, TS: ts.UnixMilli(), Values: values}
}

// flux runs a Flux query against the real influxd and returns its records
// as maps of column to value.
func flux(t *testing.T, influxURL, query string) []map[string]any {
	t.Helper()
	client := influxdb2.NewClient(influxURL, "")
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.QueryAPI("").Query(ctx, query)
	if err != nil {
		t.Fatalf("flux %s: %v", query, err)
	}
	var out []map[string]any
	for res.Next() {
		out = append(out, res.Record().Values())
	}
	if res.Err() != nil {
		t.Fatalf("flux %s: %v", query, res.Err())
	}
	return out
}

// countSeq returns the number of points of measurement m, counted on its
// always-present seq field.
func countSeq(t *testing.T, influxURL, db, m string) int64 {
	t.Helper()
	q := fmt.Sprintf(`from(bucket:"%s/autogen") |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) |> filter(fn:(r)=> r._measurement==%q and r._field=="seq") |> group() |> count()`, db, m)
	recs := flux(t, influxURL, q)
	if len(recs) == 0 {
		return 0
	}
	n, ok := recs[0]["_value"].(int64)
	if !ok {
		t.Fatalf("count: _value is %T", recs[0]["_value"])
	}
	return n
}

// faultyProxy forwards to target, but answers the first `failures` writes
// (POST /api/v2/write) with 503; failures < 0 fails every write.
type faultyProxy struct {
	*httptest.Server
	failures atomic.Int64
	failed   atomic.Int64
}

func newFaultyProxy(t *testing.T, target string, failures int64) *faultyProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultyProxy{}
	p.failures.Store(failures)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v2/write" {
			if f := p.failures.Load(); f < 0 || p.failed.Load() < f {
				p.failed.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				http.Error(w, `{"code":"unavailable","message":"injected by the test"}`, http.StatusServiceUnavailable)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}
