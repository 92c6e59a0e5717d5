// Package browser_test drives the dashboard in headless Debian chromium
// (/usr/bin/chromium) with chromedp, against a real stack: the embedded
// MQTT broker, the alerting service and alert store on SQLite, the device
// registry with the demo facility, an InfluxDB database and the dashboard
// with user accounts, wired as `eldercare up` wires them. Each test has its
// own stack and its own browser contexts; the Chromium process and the
// influxd holding the databases are shared by the package (main_test.go).
package browser_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// chromiumPath is Debian's Chromium (package chromium): the alarm tests
// start it, because they need what only the full browser has (system
// notifications through a service worker).
const chromiumPath = "/usr/bin/chromium"

// headlessShellPath is Debian's chromium-headless-shell, the headless-only
// build of the same Chromium (no GPU process, no browser UI): the package's
// shared browser, which every other test uses. On the 2-core development
// machine the package took 226 busy CPU-s with it against 496 with the full
// Chromium (2026-12-08; all tests but the alarm one passing with either).
// Without it the shared browser is the full Chromium.
const headlessShellPath = "/usr/bin/chromium-headless-shell"

// account is a demo user of the stack.
type account struct {
	user     dashboard.User
	password string
	landing  string // path "/" redirects this role to
}

// stack is one running platform.
type stack struct {
	base     string // http://127.0.0.1:port
	mqttURL  string
	root     string
	influx   string // base URL of influxd
	influxDB string // the stack's database (retention policy autogen)
	mgr      *alerting.Manager
	alr      *alerting.Service
	store    *registry.Store
	dash     *dashboard.Server
	accounts map[string]account // by username
	pub      paho.Client
	// eventID numbers the stack's published events and readings; parallel
	// subtests share a stack, so it is atomic (nextID).
	eventID atomic.Int64
	// lastFall is the device time of the last publishFall in Unix ms (zero: none).
	lastFall atomic.Int64
}

// startStack starts the platform for one test and stops it at cleanup.
func startStack(t *testing.T) *stack {
	t.Helper()
	influxURL, influxDB := influxDatabase(t) // first: it skips under -short
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	brk, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.Open(ctx, "sqlite:"+demoDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	cache := registry.NewCache(store, 10*time.Second)
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	mgr, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.TopicRoot(t)
	alr, err := alerting.New(alerting.Config{
		MQTTURL: brk.URL(), Root: root, ClientID: testenv.ClientID(t, "alerting"),
		Rules: alerting.RuleConfig{Directory: func() alerting.Directory { return cache.Current() }},
	}, mgr, alerting.ResidentsFunc(func(dev string, at time.Time) (registry.Resident, bool) {
		sn := cache.Current()
		if sn == nil {
			return registry.Resident{}, false
		}
		return sn.ResidentAt(dev, at)
	}), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := dashboard.OpenAccounts(ctx, db, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{mqttURL: brk.URL(), root: root, influx: influxURL, influxDB: influxDB, mgr: mgr, alr: alr, store: store, accounts: map[string]account{}}
	for _, a := range demoAccounts {
		st.accounts[a.user.Username] = a
	}

	addr := testenv.FreeAddr(t)
	dash, err := dashboard.New(dashboard.Config{
		HTTPAddr: addr, APIToken: "browser-test-token-0123456789",
		MQTTURL: brk.URL(), Root: root, ClientID: testenv.ClientID(t, "dashboard"),
		InfluxURL: influxURL, InfluxBucket: influxDB + "/autogen",
		SSEHeartbeat: 2 * time.Second,
	}, dashboard.Deps{
		Alerts: mgr, Registry: store, Accounts: acc, History: mgr, Commands: alr, Unknown: mgr,
		AckLinks: mgr, Doses: mgr, Trends: mgr, ResponseTimes: mgr, Escalations: mgr, Thresholds: mgr, Policies: mgr, Settings: mgr,
		Cards: store, Beds: store, Onboard: store, Binder: store, Importer: store,
	}, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 4)
	run := func(name string, f func(context.Context) error) {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("registry cache", cache.Run)
	run("alerting", alr.Run)
	run("dashboard", dash.Run)
	st.base = "http://" + addr
	st.dash = dash

	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: brk.URL(), ClientID: testenv.ClientID(t, "devices"), CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	st.pub = pub
	t.Cleanup(func() {
		pub.Disconnect(100)
		cancel()
		for range 3 {
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("the stack did not stop within 20 s")
				return
			}
		}
		brk.Close()
		db.Close()
	})
	// Ready: the dashboard's live feed on the broker (/readyz), and the
	// alerting engine subscribed (a device message published before that
	// is lost, and the test would wait for an alert that never opens).
	waitHTTP(t, st.base+"/readyz")
	deadline := time.Now().Add(30 * time.Second)
	for err := alr.Ready(); err != nil; err = alr.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("alerting not ready within 30 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st
}

// waitFor waits (up to d) until cond holds, looking every 10 ms; it fails
// the test naming what when it does not.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 30 s", url)
}

// nextID returns the next event id (and seq) of the stack's publishers.
func (st *stack) nextID() int64 { return st.eventID.Add(1) }

// publishFall publishes a fall event of the demo's wrist detector fd-001
// (bound to res-001) and returns when the broker has it.
func (st *stack) publishFall(t *testing.T) time.Time {
	t.Helper()
	id := st.nextID()
	now := time.Now()
	payload := fmt.Sprintf(`{"v":1,"device":"fd-001","boot":%d,"id":%d,"seq":%d,"ts":%d,"type":"fall","attrs":{"peak_accel_ms2":61.2,"confidence":0.97}}`,
		now.Unix(), id, id, now.UnixMilli())
	topic := st.root + "/v1/" + firmwaresim.DemoSite + "/fd-001/event"
	if err := mqttconn.Wait(context.Background(), st.pub.Publish(topic, 1, false, payload), 5*time.Second, "publish fall"); err != nil {
		t.Fatal(err)
	}
	st.lastFall.Store(now.UnixMilli())
	return now
}

// writeVitals writes heart-rate and SpO2 samples of res-001 over the last
// hour into InfluxDB (measurement "readings", as ingest writes them).
func (st *stack) writeVitals(t *testing.T) {
	t.Helper()
	var b strings.Builder
	now := time.Now()
	for i := 0; i < 60; i++ {
		at := now.Add(-time.Duration(i) * time.Minute)
		fmt.Fprintf(&b, "readings,site=%s,device=vm-101-1,resident=res-001,kind=vitals_monitor hr_bpm=%d,spo2_pct=%d %d\n",
			firmwaresim.DemoSite, 70+i%9, 95+i%3, at.UnixNano())
	}
	st.writeInflux(t, b.String())
}

// writeInflux writes points in line protocol (nanosecond timestamps) into
// the stack's InfluxDB database.
func (st *stack) writeInflux(t *testing.T, lines string) {
	t.Helper()
	resp, err := http.Post(st.influx+"/write?db="+url.QueryEscape(st.influxDB)+"&rp=autogen", "text/plain", strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("influx write: %d %s", resp.StatusCode, body)
	}
}

// browser returns a chromedp context of a tab in a fresh browser context
// (its own cookie jar and window, 1280x900) of the package's Chromium,
// closed at cleanup.
func browser(t *testing.T) context.Context {
	t.Helper()
	return newTab(t, chromium(t))
}

// fullScreenshot is a PNG of the whole page (chromedp.FullScreenshot(100)),
// encoded for speed rather than size: the screenshots are artifacts to look
// at, and the encoding of a whole phone page took about 0.25 s of a core.
var fullScreenshot chromedp.Action[[]byte] = func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
	yes := true
	r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
		CaptureBeyondViewport: &yes, FromSurface: &yes, OptimizeForSpeed: &yes, Format: page.CaptureScreenshotFormatPng,
	})
	if err != nil {
		return nil, err
	}
	return r.Data, nil
}

// within bounds one chromedp step.
func within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// artifactsDir is $ELDERCARE_ARTIFACTS, else t.TempDir()/artifacts.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("ELDERCARE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
