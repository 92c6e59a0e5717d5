package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// opsGet GETs http://addr+path and returns the status code and body (code
// 0 and the error text when the request fails).
func opsGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkMetrics runs `promtool check metrics` on addr's /metrics and checks
// that each line of want is in it.
func checkMetrics(t *testing.T, promtool, role, addr string, want ...string) {
	t.Helper()
	code, body := opsGet(addr, "/metrics")
	if code != http.StatusOK {
		t.Errorf("%s /metrics: %d %s", role, code, body)
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: promtool check metrics: %v\n%s", role, err, out)
	}
	for _, w := range want {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("%s /metrics lacks %q", role, w)
		}
	}
}

// startRole runs `eldercare <args>` in this process until the test ends.
func startRole(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetOut(io.Discard)
		cmd.SetArgs(args)
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", args[0], err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30 s", args[0])
		}
	})
}

// TestReadyzFollowsBroker runs ingest, alerting, dashboard and gateway (the
// real commands) on a test-owned Mosquitto, InfluxDB and one new SQLite
// file. Each answers /healthz 200 throughout; /readyz of ingest, alerting
// and dashboard turns 503 naming MQTT within seconds of the broker
// stopping, and 200 again after it restarts; eldercare_ready and
// eldercare_mqtt_connected follow. `promtool check metrics` passes on every
// role's /metrics, and the labelled counters exist at 0 before any event.
func TestReadyzFollowsBroker(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool", "apt-get install prometheus (scripts/services.sh)")
	influxURL, _ := sharedInflux(t)
	brk := testenv.StartMosquitto(t)
	root := testenv.TopicRoot(t)
	dsn := sqldbtest.SQLiteDSN(t)
	dir := t.TempDir()

	ingestID, alertingID, dashID, gwID := testenv.ClientID(t, "ingest"), testenv.ClientID(t, "alerting"), testenv.ClientID(t, "dash"), testenv.ClientID(t, "gw")
	ingestAddr, alertingAddr, dashAddr, gwAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	gwFile := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(gwFile, []byte("id: gw-ops\nsite: ops-site\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startRole(t, "ingest", "--mqtt", brk.URL(), "--root", root, "--client-id", ingestID, "--influx", influxURL,
		"--influx-db", "ops_"+strings.ReplaceAll(ingestID, "-", "_"), "--db", dsn, "--http", ingestAddr, "--leave-group-on-stop=false", "--log-level", "error")
	startRole(t, "alerting", "--mqtt", brk.URL(), "--root", root, "--client-id", alertingID, "--db", dsn, "--http", alertingAddr, "--log-level", "error")
	startRole(t, "dashboard", "--mqtt", brk.URL(), "--root", root, "--client-id", dashID, "--db", dsn, "--http", dashAddr,
		"--api-token", "ops-test-token-0123456789", "--influx", influxURL, "--log-level", "error")
	startRole(t, "gateway", "--gateway-config", gwFile, "--mqtt", brk.URL(), "--root", root, "--client-id", gwID,
		"--spool", filepath.Join(dir, "spool.db"), "--http", gwAddr, "--log-level", "error")

	roles := []struct{ name, addr, client string }{{"ingest", ingestAddr, ingestID}, {"alerting", alertingAddr, alertingID}, {"dashboard", dashAddr, dashID}}
	waitAll := func(what string, within time.Duration, code int) {
		t.Helper()
		start := time.Now()
		for _, r := range roles {
			var got int
			var body string
			testenv.EventuallyTrue(t, within, r.name+" "+what, func() bool {
				got, body = opsGet(r.addr, "/readyz")
				return got == code
			})
			if code != http.StatusOK && !strings.Contains(body, "mqtt") {
				t.Errorf("%s /readyz body %q does not name mqtt", r.name, body)
			}
			t.Logf("%s %s after %s (%q)", r.name, what, time.Since(start).Round(10*time.Millisecond), strings.TrimSpace(body))
		}
	}
	waitAll("ready", 90*time.Second, http.StatusOK)
	testenv.EventuallyTrue(t, 30*time.Second, "gateway /readyz", func() bool { c, _ := opsGet(gwAddr, "/readyz"); return c == http.StatusOK })

	checkMetrics(t, promtool, "ingest", ingestAddr, "eldercare_ready 1",
		fmt.Sprintf(`eldercare_mqtt_connected{client_id=%q} 1`, ingestID),
		`eldercare_ingest_dead_letters_total{reason="json"} 0`, `eldercare_ingest_rejected_total{reason="unit_ms"} 0`)
	checkMetrics(t, promtool, "alerting", alertingAddr, "eldercare_ready 1",
		fmt.Sprintf(`eldercare_mqtt_connected{client_id=%q} 1`, alerting.StatusTelemetryClientID(alertingID)),
		`eldercare_alerting_notifications_total{receiver="mqtt",result="failed"} 0`,
		`eldercare_alerting_rejected_total{channel="event",reason="unit_ms"} 0`,
		`eldercare_alerting_open_alerts{severity="critical",status="open"} 0`, "eldercare_alerting_outbox_oldest_seconds 0")
	checkMetrics(t, promtool, "dashboard", dashAddr, "eldercare_ready 1",
		fmt.Sprintf(`eldercare_mqtt_connected{client_id=%q} 1`, dashID),
		`eldercare_alerting_time_to_acknowledge_seconds_count{severity="critical"} 0`)
	checkMetrics(t, promtool, "gateway", gwAddr, "eldercare_ready 1", "eldercare_gateway_spool_oldest_seconds 0",
		fmt.Sprintf(`eldercare_mqtt_connected{client_id=%q} 1`, gwID))

	brk.Stop()
	waitAll("unready after the broker stopped", 20*time.Second, http.StatusServiceUnavailable)
	for _, r := range roles {
		if c, _ := opsGet(r.addr, "/healthz"); c != http.StatusOK {
			t.Errorf("%s /healthz %d while the broker is down, want 200 (liveness)", r.name, c)
		}
		_, body := opsGet(r.addr, "/metrics")
		for _, w := range []string{"eldercare_ready 0", fmt.Sprintf(`eldercare_mqtt_connected{client_id=%q} 0`, r.client)} {
			if !strings.Contains(body, w+"\n") {
				t.Errorf("%s /metrics lacks %q while the broker is down", r.name, w)
			}
		}
	}
	brk.Start()
	waitAll("ready again after the broker restarted", 60*time.Second, http.StatusOK)
}

// TestUpStoresDeadLetters runs `eldercare up` (embedded broker, child
// InfluxDB, SQLite) with ingest's flags, publishes a malformed reading and
// finds it with `eldercare ingest dead-letters --db` on up's database; up's
// /readyz is 200, its /metrics passes promtool and carries the embedded
// broker's metrics, each MQTT connection and the counters at 0.
func TestUpStoresDeadLetters(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool", "apt-get install prometheus (scripts/services.sh)")
	needInfluxd(t) // up starts its own
	data := filepath.Join(t.TempDir(), "data")
	httpAddr, mqttAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx := context.Background()
	started := startingInflux(t) // until up's child InfluxDB answers
	startRole(t, "up", "--data", data, "--http", httpAddr, "--mqtt-listen", mqttAddr, "--mqtt-auth", "off",
		"--influx-listen", testenv.FreeAddr(t), "--influx-rpc-listen", testenv.FreeAddr(t),
		"--batch-size", "100", "--flush-interval", "100ms", "--retention-environment", "720h", "--log-level", "error")
	testenv.EventuallyTrue(t, 2*time.Minute, "up /readyz", func() bool { c, _ := opsGet(httpAddr, "/readyz"); return c == http.StatusOK })
	started()
	checkMetrics(t, promtool, "up", httpAddr, "eldercare_ready 1", `eldercare_mqtt_connected{client_id="eldercare-up-ingest"} 1`,
		`eldercare_ingest_dead_letters_total{reason="json"} 0`, "eldercare_broker_clients_connected 4",
		`eldercare_alerting_notifications_total{receiver="mqtt",result="failed"} 0`,
		`eldercare_alerting_open_alerts{severity="critical",status="open"} 0`)

	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: "tcp://" + mqttAddr, ClientID: testenv.ClientID(t, "pub"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(100)
	topic := device.Topic{Root: device.DefaultRoot, Site: "ops-site", Device: "dev-bad", Channel: device.ChanTelemetry}.String()
	if err := mqttconn.Wait(ctx, pub.Publish(topic, 1, false, []byte("{not json")), 10*time.Second, "publish"); err != nil {
		t.Fatal(err)
	}
	var out string
	testenv.EventuallyTrue(t, 30*time.Second, "the dead letter listed by `ingest dead-letters`", func() bool {
		cmd := newRootCmd()
		var stdout bytes.Buffer
		cmd.SetOut(&stdout)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"ingest", "dead-letters", "--db", "sqlite:" + filepath.Join(data, "eldercare.db")})
		if err := cmd.Execute(); err != nil {
			t.Fatalf("ingest dead-letters: %v", err)
		}
		out = stdout.String()
		return strings.Contains(out, topic)
	})
	if !strings.Contains(out, "json") || !strings.Contains(out, "{not json") {
		t.Errorf("dead letter listing lacks the reason or the payload:\n%s", out)
	}
	if _, body := opsGet(httpAddr, "/metrics"); !strings.Contains(body, `eldercare_ingest_dead_letters_total{reason="json"} 1`+"\n") {
		t.Errorf("up /metrics: dead letter not counted")
	}
}
