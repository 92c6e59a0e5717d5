package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestRunOwnFeed runs the server the way `eldercare up` does: New creates
// the live feed from the config and Run runs it with the HTTP server.
func TestRunOwnFeed(t *testing.T) {
	t.Parallel()
	broker := testenv.Mosquitto(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newServer := func(clientRole string) *Server {
		cfg := Config{HTTPAddr: addr, APIToken: testToken, MQTTURL: broker, Root: testenv.TopicRoot(t), ClientID: testenv.ClientID(t, clientRole)}
		srv, err := New(cfg, withCapabilities(Deps{Alerts: newFakeAlerts(time.Now), Registry: testRegistry(), Vitals: fakeVitals{}, Accounts: testAccounts(t, time.Now)}), prometheus.NewRegistry(), log)
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := newServer("dash")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	testenv.EventuallyTrue(t, 15*time.Second, "/healthz to answer 200", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	t.Run("port in use", func(t *testing.T) {
		err := newServer("dash2").Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("second Run on %s: err %v, want one naming the address", addr, err)
		}
	})

	// An open SSE stream must not hold up the shutdown.
	ts := &testServer{srv: srv}
	cookie, _ := ts.login(t)
	req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
	req.Header.Set("Cookie", cookie)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	testenv.EventuallyTrue(t, 15*time.Second, "the SSE client", func() bool { return srv.Feed().Subscribers() == 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s of cancel")
	}
	if _, err := io.ReadAll(stream.Body); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("stream ended with %v", err)
	}
}

// FuzzHandleMessage: no payload on any topic panics the live feed.
func FuzzHandleMessage(f *testing.F) {
	f.Add("t/v1/s1/vm-1/telemetry", []byte(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":1764400000000,"values":{"hr_bpm":81}}`))
	f.Add("t/v1/s1/bs-1/event", []byte(`{"v":1,"device":"bs-1","boot":1,"id":1,"seq":1,"ts":1764400000000,"type":"bed_exit"}`))
	f.Add("t/v1/s1/gw/status", []byte(`{"v":1,"device":"gw","ts":1764400000000,"state":"offline","reason":"gateway_lost","devices":["a","b"]}`))
	f.Add("t/v1/alerts/s1", []byte(`{"id":"alert-1-1","event":"opened","alert":{"id":1,"resident":null,"opened_at":"2026-01-01T00:00:00Z"}}`))
	f.Add("t/v1/alerts/s1", []byte(`{"alert":{"id":-1}}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		feed, err := NewFeed(FeedConfig{Root: "t", Now: func() time.Time { return time.UnixMilli(1764400000000) }}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		feed.HandleMessage(topic, payload)
		for _, d := range feed.Devices() {
			if d.Device == "" {
				t.Fatalf("state without device id: %+v", d)
			}
		}
	})
}
