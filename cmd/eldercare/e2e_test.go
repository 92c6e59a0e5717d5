package main

// End-to-end tests: real broker (the embedded mochi broker that "up" runs;
// the machine's Mosquitto for TestPipelineMosquitto), real InfluxDB (one
// for the package, a database per test), real SQLite, the real simulators replaying
// the shared recordings, and a real HTTP webhook receiver.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

const (
	e2eSite   = "e2e-station"
	e2eSecret = "e2e-webhook-secret"
)

// e2eRegistry binds one device to one resident per name given.
func e2eRegistry(devices map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sites:\n  - id: %s\n    name: E2E station\n    timezone: Asia/Shanghai\n    rooms:\n      - id: r1\n        name: Room 1\n        beds:\n", e2eSite)
	i := 0
	for dev := range devices {
		fmt.Fprintf(&b, "          - {id: bed-%s, name: \"Bed %d\"}\n", dev, i)
		i++
	}
	b.WriteString("residents:\n")
	for dev, res := range devices {
		fmt.Fprintf(&b, "  - {id: %s, name: \"Resident %s\", site: %s, bed: bed-%s, birth_year: 1940}\n", res, res, e2eSite, dev)
	}
	b.WriteString("devices:\n")
	for dev := range devices {
		kind := "vitals_monitor"
		switch {
		case strings.HasPrefix(dev, "fd-"):
			kind = "fall_detector"
		case strings.HasPrefix(dev, "sos-"):
			kind = "sos_button"
		}
		fmt.Fprintf(&b, "  - {id: %s, site: %s, kind: %s, name: \"%s\", bed: bed-%s}\n", dev, e2eSite, kind, dev, dev)
	}
	b.WriteString("bindings:\n")
	for dev, res := range devices {
		fmt.Fprintf(&b, "  - {device: %s, resident: %s, from: 2020-01-01T00:00:00Z}\n", dev, res)
	}
	return b.String()
}

// webhookSink is a real HTTP receiver that checks every signature itself.
type webhookSink struct {
	mu       sync.Mutex
	changes  []alerting.Change
	badSigns int
	srv      *httptest.Server
}

func newWebhookSink(t *testing.T) *webhookSink {
	w := &webhookSink{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(e2eSecret))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		w.mu.Lock()
		defer w.mu.Unlock()
		if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Eldercare-Signature"))) {
			w.badSigns++
			http.Error(rw, "bad signature", http.StatusUnauthorized)
			return
		}
		var c alerting.Change
		if err := json.Unmarshal(body, &c); err != nil {
			t.Errorf("webhook body is not a change: %v: %s", err, body)
		}
		if c.ID == "" || r.Header.Get("X-Eldercare-Notification-Id") != c.ID {
			t.Errorf("notification id header %q, body id %q", r.Header.Get("X-Eldercare-Notification-Id"), c.ID)
		}
		w.changes = append(w.changes, c)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// opened counts "opened" notifications for alerts matching fn.
func (w *webhookSink) opened(fn func(alerting.Alert) bool) (n int, ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.Event == alerting.EventOpened && fn(c.Alert) {
			n++
			ids = append(ids, c.ID)
		}
	}
	return n, ids
}

type stack struct {
	t         *testing.T
	root      string
	mqtt      string
	influx    string
	influxDB  string // the stack's database in the shared InfluxDB
	db        *sqldb.DB
	mgr       *alerting.Manager
	cache     *registry.Cache
	hook      *webhookSink
	ingestReg *prometheus.Registry
	offline   time.Duration
	alertStop func()
	alertSvc  *alerting.Service
	log       *slog.Logger
}

// startStack runs ingest and alerting in-process against mqttURL and a
// fresh InfluxDB, with the registry given as YAML.
func startStack(t *testing.T, mqttURL, regYAML string, offline time.Duration) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, root: testenv.TopicRoot(t), mqtt: mqttURL, offline: offline,
		hook: newWebhookSink(t), ingestReg: prometheus.NewRegistry(),
		log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	s.influx, s.influxDB = sharedInflux(t)
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "e2e.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(file, []byte(regYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := registry.LoadFile(ctx, store, file); err != nil {
		t.Fatalf("registry: %v\n%s", err, regYAML)
	}
	s.cache = registry.NewCache(store, time.Second)
	if err := s.cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	s.mgr, err = alerting.OpenManager(ctx, db, s.log)
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(ingest.Config{MQTTURL: mqttURL, Root: s.root, ClientID: testenv.ClientID(t, "ingest"),
		InfluxURL: s.influx, InfluxDatabase: s.influxDB, FlushInterval: 100 * time.Millisecond}, ingestLookup(s.cache), s.ingestReg, s.log)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ing.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("ingest: %v", err)
		}
	})
	s.startAlerting()
	t.Cleanup(func() {
		s.alertStop()
		cancel()
		wg.Wait()
		db.Close()
	})
	// Both services subscribe asynchronously; wait until they are.
	testenv.EventuallyTrue(t, 30*time.Second, "ingest and alerting subscribed", func() bool {
		return ing.Ready() && s.alertSvc.Ready() == nil
	})
	return s
}

// startAlerting starts (or restarts) the alerting engine on the stack's
// database, with a stable client id so its persistent session survives.
func (s *stack) startAlerting() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := alerting.New(alerting.Config{MQTTURL: s.mqtt, Root: s.root, ClientID: "e2e-alerting-" + s.root[len(s.root)-6:],
		OfflineTimeout: s.offline, WebhookURL: s.hook.srv.URL, WebhookSecret: e2eSecret, PollEvery: 200 * time.Millisecond},
		s.mgr, alertingResidents(s.cache), prometheus.NewRegistry(), s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(ctx); err != nil && ctx.Err() == nil {
			s.t.Errorf("alerting: %v", err)
		}
	}()
	s.alertSvc = svc
	s.alertStop = func() { cancel(); <-done }
}

func (s *stack) dev(id string) firmwaresim.DeviceConfig {
	return firmwaresim.DeviceConfig{MQTTURL: s.mqtt, Root: s.root, Site: e2eSite, Device: id, Logger: s.log}
}

// alerts lists every alert (any status) of the given type for a device.
func (s *stack) alerts(dev, typ string) []alerting.Alert {
	all, err := s.mgr.List(context.Background(), alerting.Filter{Limit: 1000})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []alerting.Alert
	for _, a := range all {
		if a.Device == dev && (typ == "" || a.Type == typ) {
			out = append(out, a)
		}
	}
	return out
}

// points counts the readings of dev stored in InfluxDB.
func (s *stack) points(dev string) int64 {
	c := influxdb2.NewClient(s.influx, "")
	defer c.Close()
	q := fmt.Sprintf(`from(bucket:%q) |> range(start: -2h, stop: 1h) |> filter(fn: (r) => r._measurement == "readings" and r._field == "seq" and r.device == %q) |> count()`, s.influxDB+"/autogen", dev)
	res, err := c.QueryAPI("").Query(context.Background(), q)
	if err != nil {
		if strings.Contains(err.Error(), "database not found") {
			return 0
		}
		s.t.Fatalf("flux: %v", err)
	}
	var n int64
	for res.Next() {
		n += res.Record().Value().(int64)
	}
	if res.Err() != nil {
		s.t.Fatalf("flux: %v", res.Err())
	}
	return n
}

// settled publishes an SOS press of marker, a device in no registry, after
// everything published so far, and waits for its alert and its opened
// notification. Alerting decides events one at a time in arrival order and
// the dispatcher sends notifications oldest first, so every event published
// before the call has then been decided and every notification it caused
// sent: the positive signal that a wrong extra alert or notification would
// already show.
func (s *stack) settled(marker string) {
	s.t.Helper()
	if err := firmwaresim.RunSOS(context.Background(), firmwaresim.SOSConfig{DeviceConfig: s.dev(marker)}); err != nil {
		s.t.Fatal(err)
	}
	testenv.EventuallyTrue(s.t, 15*time.Second, "the marker "+marker+"'s alert and its notification", func() bool {
		a := s.alerts(marker, alerting.TypeSOS)
		n, _ := s.hook.opened(func(x alerting.Alert) bool { return x.Device == marker })
		return len(a) == 1 && n == 1
	})
}

func rowsWithValues(t *testing.T, file string) int64 {
	rows, err := firmwaresim.ReadBIDMCFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		if len(r.Values()) > 0 {
			n++
		}
	}
	return n
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestPipelineMosquitto runs the vitals scenarios through the machine's
// Mosquitto.
func TestPipelineMosquitto(t *testing.T) {
	t.Parallel()
	pipeline(t, testenv.Mosquitto(t))
}

// TestPipelineEmbedded runs the same scenarios through the embedded broker
// that "eldercare up" uses.
func TestPipelineEmbedded(t *testing.T) {
	t.Parallel()
	pipeline(t, testenv.EmbeddedBroker(t).URL())
}

func pipeline(t *testing.T, mqttURL string) {
	data := testenv.RealData(t)
	file32 := filepath.Join(data, "vitals-bidmc", "bidmc_32_Numerics.csv")
	file01 := filepath.Join(data, "vitals-bidmc", "bidmc_01_Numerics.csv")
	// The monitors' report interval: 4 s in the registry, instead of the
	// vitals_monitor kind's 10 s, after which a silent one is offline
	// (alerting wired as the alerting role and up wire it, with the
	// registry as its directory of intervals).
	const offline = 4 * time.Second
	reg := strings.ReplaceAll(e2eRegistry(map[string]string{
		"vm-32": "res-32", "vm-01": "res-01", "vm-silent": "res-silent",
	}), "kind: vitals_monitor,", fmt.Sprintf("kind: vitals_monitor, report_interval: %s,", offline))
	s := startSupervisedStack(t, mqttURL, reg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	replay := func(dev, file string, end firmwaresim.OnEnd) {
		wg.Go(func() {
			cfg := firmwaresim.VitalsConfig{DeviceConfig: s.dev(dev), File: file, Speed: 100}
			cfg.OnEnd = end
			if err := firmwaresim.RunVitals(ctx, cfg); err != nil {
				t.Errorf("replay %s: %v", dev, err)
			}
		})
	}
	replay("vm-32", file32, firmwaresim.EndClean)
	replay("vm-01", file01, firmwaresim.EndClean)
	wg.Wait()
	// The silent device starts once the clean ones have ended: its offline
	// alert then comes from the same offline check as theirs would, or a
	// later one, and a check decides devices in id order (vm-01 and vm-32
	// before vm-silent). So once its alert is stored, a wrong offline
	// alert of a cleanly disconnected device would be stored too: the
	// positive signal the assertions below wait for, instead of a sleep.
	silentCtx, silentStop := context.WithCancel(ctx)
	defer silentStop()
	go func() {
		cfg := firmwaresim.VitalsConfig{DeviceConfig: s.dev("vm-silent"), Rows: mustRows(t, file01)[:20], Speed: 100}
		cfg.OnEnd = firmwaresim.EndSilent
		_ = firmwaresim.RunVitals(silentCtx, cfg)
	}()

	want32, want01 := rowsWithValues(t, file32), rowsWithValues(t, file01)
	testenv.EventuallyTrue(t, 30*time.Second, "every bidmc_32 row with values stored", func() bool { return s.points("vm-32") >= want32 })
	testenv.EventuallyTrue(t, 30*time.Second, "every bidmc_01 row with values stored", func() bool { return s.points("vm-01") >= want01 })
	testenv.EventuallyTrue(t, 10*time.Second, "spo2_low alert for res-32", func() bool { return len(s.alerts("vm-32", alerting.TypeSpO2Low)) > 0 })

	// The silent device raises its offline alert after the timeout; the
	// cleanly disconnected ones never do.
	testenv.EventuallyTrue(t, offline+10*time.Second, "offline alert for the silent device", func() bool {
		return len(s.alerts("vm-silent", alerting.TypeDeviceOffline)) == 1
	})

	if got := s.points("vm-32"); got != want32 {
		t.Errorf("InfluxDB holds %d points for bidmc_32, want %d (rows with values)", got, want32)
	}
	if got := s.points("vm-01"); got != want01 {
		t.Errorf("InfluxDB holds %d points for bidmc_01, want %d (rows with values)", got, want01)
	}
	spo2 := s.alerts("vm-32", alerting.TypeSpO2Low)
	if len(spo2) != 1 || spo2[0].Resident == nil || *spo2[0].Resident != "res-32" || !spo2[0].Open() {
		t.Fatalf("want exactly one open spo2_low alert for res-32, got %+v", spo2)
	}
	n, ids := s.hook.opened(func(a alerting.Alert) bool { return a.ID == spo2[0].ID })
	if n != 1 {
		t.Errorf("webhook got %d opened notifications for the SpO2 alert (%v), want 1", n, ids)
	}
	if s.hook.badSigns != 0 {
		t.Errorf("%d webhook requests had a bad signature", s.hook.badSigns)
	}
	for _, typ := range []string{alerting.TypeSpO2Low, alerting.TypeHeartRate, alerting.TypeRespiration} {
		if a := s.alerts("vm-01", typ); len(a) != 0 {
			t.Errorf("bidmc_01 (normal) raised %s: %+v", typ, a)
		}
	}
	for _, dev := range []string{"vm-32", "vm-01"} {
		if a := s.alerts(dev, alerting.TypeDeviceOffline); len(a) != 0 {
			t.Errorf("%s ended with a clean disconnect but raised an offline alert: %+v", dev, a)
		}
	}
}

func mustRows(t *testing.T, file string) []firmwaresim.VitalsRow {
	rows, err := firmwaresim.ReadBIDMCFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestFallTrials replays each shared WEDA-FALL trial through the wrist
// detector simulator: every fall trial gives exactly one fall alert, the
// daily activities none.
func TestFallTrials(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	trials := map[string]struct {
		file string
		fall bool // an alert is expected
	}{
		"fd-f01": {"F01/U01_R01_accel.csv", true},
		"fd-f02": {"F02/U02_R01_accel.csv", true},
		"fd-f03": {"F03/U03_R01_accel.csv", true},
		"fd-d01": {"D01/U21_R01_accel.csv", false},
		"fd-d04": {"D04/U22_R01_accel.csv", false},
		"fd-d09": {"D09/U23_R01_accel.csv", false},
	}
	bind := map[string]string{}
	for dev := range trials {
		bind[dev] = "res-" + dev
	}
	s := startStack(t, testenv.EmbeddedBroker(t).URL(), e2eRegistry(bind), time.Hour)
	var wg sync.WaitGroup
	for dev, tr := range trials {
		wg.Go(func() {
			cfg := firmwaresim.FallConfig{DeviceConfig: s.dev(dev), File: filepath.Join(data, "falls-weda", tr.file), Speed: 10}
			if err := firmwaresim.RunFall(context.Background(), cfg); err != nil {
				t.Errorf("%s: %v", dev, err)
			}
		})
	}
	wg.Wait()
	testenv.EventuallyTrue(t, 15*time.Second, "a fall alert for each fall trial", func() bool {
		for dev, tr := range trials {
			if tr.fall && len(s.alerts(dev, alerting.TypeFall)) == 0 {
				return false
			}
		}
		return true
	})
	s.settled("sos-marker") // a wrong second alert would show by now
	for dev, tr := range trials {
		got := s.alerts(dev, alerting.TypeFall)
		want := 0
		if tr.fall {
			want = 1
		}
		if len(got) != want {
			t.Errorf("%s (%s): %d fall alerts, want %d", dev, tr.file, len(got), want)
			continue
		}
		if want == 1 {
			hist, err := s.mgr.History(context.Background(), got[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hist {
				if h.Action == alerting.ActionRepeated {
					t.Errorf("%s: the detector reported the fall more than once: %+v", dev, h)
				}
			}
			if got[0].Resident == nil || *got[0].Resident != bind[dev] || got[0].Severity != alerting.SeverityCritical {
				t.Errorf("%s: alert %+v, want critical for %s", dev, got[0], bind[dev])
			}
		}
	}
}

// TestUnassignedFall: a fall from a device that is in no registry still
// raises an alert, marked unassigned.
func TestUnassignedFall(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	s := startStack(t, testenv.EmbeddedBroker(t).URL(), e2eRegistry(map[string]string{"vm-x": "res-x"}), time.Hour)
	cfg := firmwaresim.FallConfig{DeviceConfig: s.dev("fd-fresh"), File: filepath.Join(data, "falls-weda", "F02/U02_R01_accel.csv"), Speed: 10}
	if err := firmwaresim.RunFall(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 15*time.Second, "fall alert from an unregistered device", func() bool { return len(s.alerts("fd-fresh", alerting.TypeFall)) == 1 })
	a := s.alerts("fd-fresh", alerting.TypeFall)[0]
	if a.Resident != nil || !a.Unassigned {
		t.Errorf("alert %+v: want resident null and unassigned", a)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "its opened notification", func() bool {
		n, _ := s.hook.opened(func(x alerting.Alert) bool { return x.ID == a.ID })
		return n == 1
	})
}

// TestRestartAlerting: restarting alerting while an alert is open neither
// opens a second alert nor sends a second notification, even when the
// same situation is reported again.
func TestRestartAlerting(t *testing.T) {
	t.Parallel()
	s := startStack(t, testenv.EmbeddedBroker(t).URL(), e2eRegistry(map[string]string{"sos-1": "res-a"}), time.Hour)
	boot := uint32(0)
	press := func() {
		// Each run is a new boot of the button, as a real restart is: the
		// platform deduplicates events by (device, boot, seq).
		boot++
		dev := s.dev("sos-1")
		dev.Boot = boot
		if err := firmwaresim.RunSOS(context.Background(), firmwaresim.SOSConfig{DeviceConfig: dev}); err != nil {
			t.Fatal(err)
		}
	}
	press()
	testenv.EventuallyTrue(t, 10*time.Second, "sos alert and its notification", func() bool {
		n, _ := s.hook.opened(func(a alerting.Alert) bool { return a.Device == "sos-1" })
		return n == 1
	})
	s.alertStop()
	press() // while alerting is down: the broker keeps it for the persistent session
	s.startAlerting()
	press()
	testenv.Eventually(t, 10*time.Second, func() string {
		a := s.alerts("sos-1", alerting.TypeSOS)
		if len(a) != 1 {
			return fmt.Sprintf("both presses after the restart recorded: %d sos alerts, want 1", len(a))
		}
		h, _ := s.mgr.History(context.Background(), a[0].ID)
		rep := 0
		for _, e := range h {
			if e.Action == alerting.ActionRepeated {
				rep++
			}
		}
		if rep != 2 {
			return fmt.Sprintf("both presses after the restart recorded: the alert has %d repeats, want 2 (history %+v)", rep, h)
		}
		return ""
	})
	s.settled("sos-marker") // a second notification would have been sent by now
	if a := s.alerts("sos-1", ""); len(a) != 1 {
		t.Errorf("%d alerts after the restart, want 1: %+v", len(a), a)
	}
	if n, ids := s.hook.opened(func(a alerting.Alert) bool { return a.Device == "sos-1" }); n != 1 {
		t.Errorf("%d opened notifications after the restart, want 1: %v", n, ids)
	}
}
