package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// testLogger writes to the test log (verbose runs only show it).
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func openSpool(t testing.TB, path string, cfg spool.Config) *spool.Spool {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "spool.db")
	}
	cfg.Path = path
	sp, err := spool.Open(context.Background(), cfg, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// run starts g.Run and stops it in Cleanup (testenv.RunUntilCleanup).
func run(t testing.TB, g *Gateway) {
	t.Helper()
	testenv.RunUntilCleanup(t, g.Run)
}

// got is one reading as a subscriber saw it.
type got struct {
	dev       string
	boot      uint32
	seq, id   uint64
	ts        int64
	n         float64
	payloadSz int
}

// subscriber collects every telemetry reading under root, with a
// persistent session so nothing is lost across a broker restart (the
// broker must run with persistence).
type subscriber struct {
	mu       sync.Mutex
	readings []got
	events   []device.Event
	statuses []device.Status
	msgs     int
}

func subscribe(t testing.TB, url, root string) *subscriber {
	t.Helper()
	s := &subscriber{}
	handler := func(_ paho.Client, m paho.Message) {
		tp, err := device.ParseTopic(root, m.Topic())
		if err != nil {
			t.Errorf("subscriber: %v", err)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch tp.Channel {
		case device.ChanTelemetry:
			tel, err := device.DecodeTelemetry(m.Payload(), time.Now(), device.Limits{})
			if err != nil {
				t.Errorf("subscriber: invalid telemetry from the gateway: %v\n%s", err, m.Payload())
				return
			}
			s.msgs++
			for _, r := range tel.Readings {
				s.readings = append(s.readings, got{tel.Device, tel.Boot, r.Seq, tel.ID, r.TS, r.Values["n"], len(m.Payload())})
			}
		case device.ChanEvent:
			ev, err := device.DecodeEvent(m.Payload(), time.Now(), device.Limits{})
			if err != nil {
				t.Errorf("subscriber: invalid event from the gateway: %v\n%s", err, m.Payload())
				return
			}
			s.events = append(s.events, *ev)
		case device.ChanStatus:
			st, err := device.DecodeStatus(m.Payload(), device.Limits{})
			if err != nil {
				t.Errorf("subscriber: invalid status from the gateway: %v\n%s", err, m.Payload())
				return
			}
			s.statuses = append(s.statuses, *st)
		}
	}
	filter := root + "/v1/#"
	c, err := mqttconn.Connect(context.Background(), mqttconn.Options{
		URL: url, ClientID: testenv.ClientID(t, "sub"), CleanSession: false, DefaultHandler: handler, OrderMatters: true,
		OnConnect: func(c paho.Client) {
			c.Subscribe(filter, 1, handler)
		},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(context.Background(), c.Subscribe(filter, 1, handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return s
}

func (s *subscriber) snapshot() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]got(nil), s.readings...)
}

// dedup keeps the first arrival of every (device, boot, seq).
func dedup(rs []got) []got {
	seen := map[string]bool{}
	var out []got
	for _, r := range rs {
		k := fmt.Sprintf("%s/%d/%d", r.dev, r.boot, r.seq)
		if !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}

// checkNumbered asserts that after deduplication the readings' "n" values are
// exactly 1..want in order.
func checkNumbered(t testing.TB, rs []got, want int) {
	t.Helper()
	d := dedup(rs)
	if len(d) != want {
		ns := make([]float64, min(len(d), 100))
		for i := range ns {
			ns[i] = d[i].n
		}
		t.Fatalf("%d distinct readings after dedup (of %d received), want %d: n = %v", len(d), len(rs), want, ns)
	}
	for i, r := range d {
		if r.n != float64(i+1) {
			lo, hi := max(0, i-3), min(len(d), i+3)
			t.Fatalf("reading %d after dedup has n=%g, want %d (out of order or lost); around it: %+v", i, r.n, i+1, d[lo:hi])
		}
	}
}
