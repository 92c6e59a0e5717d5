package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/alerting"
)

// forgedChange is an alert change as any MQTT client could publish it.
func forgedChange(t *testing.T, event string, a alerting.Alert) []byte {
	t.Helper()
	b, err := json.Marshal(alerting.Change{ID: fmt.Sprintf("alert-%d-9", a.ID), Event: event, At: testNow, Alert: a})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func liveAlert(f *Feed, id int64) (alerting.Change, bool) {
	for _, c := range f.Alerts() {
		if c.Alert.ID == id {
			return c, true
		}
	}
	return alerting.Change{}, false
}

// Defect 1: alert changes on MQTT are triggers only; the store's state is
// shown, unknown ids are dropped and counted, older states never win.
func TestFeedAlertChangesVerifiedAgainstStore(t *testing.T) {
	t.Parallel()
	// newTestServer builds the feed without a store: New must wire Deps.Alerts.
	ts := newTestServer(t, nil)
	f := ts.feed
	if !f.HasAlertGetter() {
		t.Fatal("New did not give the live feed the alert store")
	}
	sub := f.Subscribe()
	defer sub.Close()
	const topic = "t/v1/alerts/demo-station"

	t.Run("forged opened of an unknown alert", func(t *testing.T) {
		f.HandleMessage(topic, forgedChange(t, "opened", alerting.Alert{ID: 99, Site: "demo-station", Device: "fd-new", Type: "fall", Severity: "critical", Status: "open", OpenedAt: testNow}))
		if _, ok := liveAlert(f, 99); ok {
			t.Error("unknown alert 99 is on the live board")
		}
		if n := testutil.ToFloat64(f.mMessages.WithLabelValues("alert", "unknown_alert")); n != 1 {
			t.Errorf("unknown_alert count = %v, want 1", n)
		}
		select {
		case fr := <-sub.C():
			t.Errorf("forged alert sent to SSE clients: %s", fr)
		default:
		}
	})

	t.Run("forged resolved of an open alert", func(t *testing.T) {
		real := ts.alerts.get(1)
		f.HandleMessage(topic, forgedChange(t, "opened", real))
		forged := real
		forged.Status = alerting.StatusResolved
		f.HandleMessage(topic, forgedChange(t, "resolved", forged))
		got, ok := liveAlert(f, 1)
		if !ok || got.Alert.Status != alerting.StatusOpen {
			t.Fatalf("alert 1 after a forged resolve: %+v (live %v), want open", got, ok)
		}
	})

	t.Run("forged content is replaced by the store's", func(t *testing.T) {
		forged := ts.alerts.get(2)
		forged.Severity, forged.Device, forged.Detail = "warning", "evil", "<b>fake</b>"
		f.HandleMessage(topic, forgedChange(t, "opened", forged))
		got, ok := liveAlert(f, 2)
		if !ok || got.Alert.Severity != "critical" || got.Alert.Device != "fd-new" || got.Alert.Detail != "" {
			t.Errorf("alert 2 = %+v, want the store's state", got.Alert)
		}
	})

	t.Run("a late older change never overwrites a newer state", func(t *testing.T) {
		open := ts.alerts.get(3) // acknowledged in the store
		f.HandleMessage(topic, forgedChange(t, "acknowledged", ts.alerts.get(3)))
		older := open
		older.Status, older.AcknowledgedAt, older.AcknowledgedBy = alerting.StatusOpen, nil, ""
		f.PublishAlert(alerting.Change{ID: "late", Event: "opened", Alert: older})
		if got, _ := liveAlert(f, 3); got.Alert.Status != alerting.StatusAcknowledged {
			t.Errorf("alert 3 = %s after a late opened change, want acknowledged", got.Alert.Status)
		}
		resolved, err := ts.alerts.Resolve(context.Background(), 3, "n", "test", "no_injury", "")
		if err != nil {
			t.Fatal(err)
		}
		f.PublishAlert(alerting.Change{ID: "r", Event: "resolved", Alert: resolved})
		f.PublishAlert(alerting.Change{ID: "late2", Event: "acknowledged", Alert: open})
		f.HandleMessage(topic, forgedChange(t, "opened", ts.alerts.get(3)))
		if got, ok := liveAlert(f, 3); ok {
			t.Errorf("resolved alert 3 came back: %+v", got)
		}
	})

	t.Run("without a store nothing from MQTT is trusted", func(t *testing.T) {
		bare := newTestFeed(t, 8)
		bare.HandleMessage(topic, forgedChange(t, "opened", ts.alerts.get(2)))
		if len(bare.Alerts()) != 0 {
			t.Errorf("feed without a store shows %+v", bare.Alerts())
		}
	})
}

// racingStore answers Get with the given alert after a delay per call.
type racingStore struct {
	mu    sync.Mutex
	calls int
	a     []alerting.Alert
	delay []time.Duration
}

func (r *racingStore) Get(_ context.Context, id int64) (alerting.Alert, error) {
	r.mu.Lock()
	i := r.calls
	r.calls++
	r.mu.Unlock()
	time.Sleep(r.delay[i])
	return r.a[i], nil
}

// Defect 1 (ordering): two concurrent triggers, the first read (older
// state) answered last, never leave the older state on the board.
func TestFeedAlertConcurrentTriggers(t *testing.T) {
	t.Parallel()
	f := newTestFeed(t, 8)
	base := alerting.Alert{ID: 5, Site: "s1", Device: "fd-1", Type: "fall", Severity: "critical", Status: "open", OpenedAt: testNow}
	ack := base
	at := testNow.Add(time.Minute)
	ack.Status, ack.AcknowledgedAt, ack.AcknowledgedBy = alerting.StatusAcknowledged, &at, "n"
	f.SetAlertGetter(&racingStore{a: []alerting.Alert{base, ack}, delay: []time.Duration{50 * time.Millisecond, 0}})
	var wg sync.WaitGroup
	for _, ev := range []string{"opened", "acknowledged"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.HandleMessage("t/v1/alerts/s1", forgedChange(t, ev, base))
		}()
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if got, _ := liveAlert(f, 5); got.Alert.Status != alerting.StatusAcknowledged {
		t.Errorf("alert 5 = %q, want acknowledged", got.Alert.Status)
	}
}

// Defect 2: the API passes an explicit limit (default 500, max 5000) and
// the board asks for enough alerts that no critical one is cut.
func TestAlertListLimit(t *testing.T) {
	t.Parallel()
	crit := alerting.Alert{ID: 1, Site: "demo-station", Device: "fd-new", Type: "fall", Severity: "critical", Status: "open", OpenedAt: testNow.Add(-time.Hour)}
	many := func(n int) []alerting.Alert {
		as := []alerting.Alert{crit}
		for i := range n {
			as = append(as, alerting.Alert{ID: int64(100 + i), Site: "demo-station", Device: fmt.Sprintf("d-%d", i), Type: "device_offline", Severity: "warning", Status: "open", OpenedAt: testNow.Add(-time.Duration(i) * time.Second)})
		}
		return as
	}
	auth := map[string]string{"Authorization": "Bearer " + testToken}

	t.Run("api", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts = newFakeAlerts(func() time.Time { return testNow }, many(150)...) })
		resp, body := ts.do(t, "GET", "/api/v1/alerts?status=open", nil, auth)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var items []alerting.Alert
		if err := json.Unmarshal([]byte(body), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 151 || items[0].ID != 1 {
			t.Errorf("got %d alerts, first %d; want 151 with the critical alert 1 first", len(items), items[0].ID)
		}
		for _, tt := range []struct {
			q    string
			code int
		}{{"limit=5000", 200}, {"limit=1", 200}, {"limit=5001", 400}, {"limit=0", 400}, {"limit=abc", 400}, {"limit=-3", 400}} {
			resp, body := ts.do(t, "GET", "/api/v1/alerts?"+tt.q, nil, auth)
			if resp.StatusCode != tt.code {
				t.Errorf("%s: status %d, want %d", tt.q, resp.StatusCode, tt.code)
			}
			if tt.code == 400 && !strings.Contains(body, "limit") || tt.code == 400 && !strings.Contains(body, "5000") {
				t.Errorf("%s: error %s does not explain the limit", tt.q, body)
			}
		}
	})

	t.Run("board", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts = newFakeAlerts(func() time.Time { return testNow }, many(1100)...) })
		cookie, _ := ts.login(t)
		_, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
		if !strings.Contains(page, `class="titem sev-critical st-open" data-alert="1"`) {
			t.Error("the critical alert 1 is not on the board with 1100 newer warnings")
		}
	})
}

// alertItemHTML returns the <li> of alert id on a page.
func alertItemHTML(t *testing.T, page string, id int64) string {
	t.Helper()
	i := strings.Index(page, fmt.Sprintf(`data-alert="%d"`, id))
	if i < 0 {
		t.Fatalf("alert %d not on the page", id)
	}
	j := strings.Index(page[i:], "</li>")
	return page[i : i+j]
}

// Defect 3: an unassigned alert on the board names its device and site.
func TestBoardUnassignedAlertNamesDeviceAndSite(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, _ := ts.login(t)
	_, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	li := alertItemHTML(t, page, 2)
	for _, want := range []string{"fd-new", "Sunshine Community Care Station"} {
		if !strings.Contains(li, want) {
			t.Errorf("unassigned alert item %q lacks %q", li, want)
		}
	}
	if li := alertItemHTML(t, page, 1); strings.Contains(li, "vm-101") {
		t.Errorf("assigned alert item names its device: %q", li)
	}
	src, err := os.ReadFile("web/src/live.js") // the bundle is minified
	if err != nil {
		t.Fatal(err)
	}
	if js := string(src); !strings.Contains(js, "a.device") || !strings.Contains(js, "t('alerts.site')") {
		t.Error("live.js alertItem does not show the device and site of unassigned alerts")
	}
}

// Defect 4: API alert items have a boolean "unassigned".
func TestAPIAlertUnassignedField(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	_, body := ts.do(t, "GET", "/api/v1/alerts", nil, auth)
	var items []map[string]any
	if err := json.Unmarshal([]byte(body), &items); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		u, ok := it["unassigned"].(bool)
		if !ok {
			t.Errorf("alert %v: unassigned = %#v, want a bool", it["id"], it["unassigned"])
			continue
		}
		if want := it["resident"] == nil; u != want {
			t.Errorf("alert %v: unassigned %v, want %v", it["id"], u, want)
		}
	}
	_, body = ts.do(t, "GET", "/api/v1/alerts/2", nil, auth)
	if !strings.Contains(body, `"unassigned":true`) {
		t.Errorf("GET alert 2: %s lacks unassigned true", body)
	}
}

// Defect 5: a vitals outage answers a generic 502 and logs the detail.
func TestAPIVitalsErrorIsGeneric(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	detail := testError(`query vitals of res-001 from bucket eldercare/autogen: Post "http://10.1.2.3:8086/api/v2/query": dial tcp: connection refused`)
	feed, err := NewFeed(FeedConfig{Root: "t"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{HTTPAddr: "127.0.0.1:0", APIToken: testToken, Root: "t"},
		withCapabilities(Deps{Alerts: newFakeAlerts(time.Now), Registry: testRegistry(), Live: feed, Vitals: fakeVitals{err: detail}, Accounts: testAccounts(t, time.Now)}), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/residents/res-001/vitals", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || e["error"] != "vitals history unavailable" {
		t.Errorf("status %d error %q, want 502 \"vitals history unavailable\"", resp.StatusCode, e["error"])
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "10.1.2.3:8086") {
		t.Errorf("the detail is not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Defect 6: status validation on /alerts, 405 with Allow on the API, a
// case-insensitive bearer scheme.
func TestHTTPStrictness(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, _ := ts.login(t)
	web := map[string]string{"Cookie": cookie}
	t.Run("alerts status", func(t *testing.T) {
		for _, p := range []string{"/alerts?status=bogus", "/alerts/fragment?status=open,nope"} {
			resp, body := ts.do(t, "GET", p, nil, web)
			if resp.StatusCode != 400 || !strings.Contains(body, "status") || !strings.Contains(body, "acknowledged") {
				t.Errorf("%s: status %d, want 400 explaining status", p, resp.StatusCode)
			}
		}
		resp, body := ts.do(t, "GET", "/alerts?status=resolved", nil, web)
		if resp.StatusCode != 200 || strings.Contains(body, "<h2>"+tr("alerts.active")) {
			t.Errorf("?status=resolved: status %d, shows the active list: %v", resp.StatusCode, strings.Contains(body, "<h2>"+tr("alerts.active")))
		}
		resp, body = ts.do(t, "GET", "/alerts?status=acknowledged", nil, web)
		if resp.StatusCode != 200 || strings.Contains(body, `data-alert="1"`) || !strings.Contains(body, `data-alert="3"`) {
			t.Errorf("?status=acknowledged: status %d, wrong rows", resp.StatusCode)
		}
	})
	t.Run("405", func(t *testing.T) {
		auth := map[string]string{"Authorization": "Bearer " + testToken}
		for _, tt := range []struct{ method, path, allow string }{
			{"DELETE", "/api/v1/alerts/1", "GET, HEAD"},
			{"PUT", "/api/v1/alerts", "GET, HEAD"},
			{"GET", "/api/v1/alerts/1/ack", "POST"},
			{"DELETE", "/api/v1/residents/res-001/vitals", "GET, HEAD"},
		} {
			resp, body := ts.do(t, tt.method, tt.path, nil, auth)
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tt.allow || !strings.Contains(body, `"error"`) {
				t.Errorf("%s %s: status %d Allow %q body %s, want 405 Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), body, tt.allow)
			}
		}
		if resp, _ := ts.do(t, "DELETE", "/api/v1/nothing/1", nil, auth); resp.StatusCode != 404 {
			t.Errorf("DELETE unknown API path: %d, want 404", resp.StatusCode)
		}
		if resp, _ := ts.do(t, "DELETE", "/api/v1/alerts/1", nil, nil); resp.StatusCode != 401 {
			t.Errorf("DELETE without token: %d, want 401", resp.StatusCode)
		}
	})
	t.Run("bearer scheme case", func(t *testing.T) {
		for _, h := range []string{"bearer " + testToken, "BEARER " + testToken, "Bearer  " + testToken} {
			if resp, body := ts.do(t, "GET", "/api/v1/alerts", nil, map[string]string{"Authorization": h}); resp.StatusCode != 200 {
				t.Errorf("%q: status %d: %s", h[:7], resp.StatusCode, body)
			}
		}
		for _, h := range []string{"bearer", "bearer wrong-token-0123456789", "Bearerx " + testToken, "Basic " + testToken} {
			if resp, _ := ts.do(t, "GET", "/api/v1/alerts", nil, map[string]string{"Authorization": h}); resp.StatusCode != 401 {
				t.Errorf("%q accepted: %d", h, resp.StatusCode)
			}
		}
	})
}

// Defect 7: times are shown in the site's zone with its abbreviation; an
// alert of an unknown site in UTC labelled UTC.
func TestTimesLabelledWithZone(t *testing.T) {
	t.Parallel()
	ghost := alerting.Alert{ID: 4, Site: "ghost-site", Device: "fd-x", Type: "sos", Severity: "critical", Status: "open", OpenedAt: testNow.Add(-2 * time.Minute)}
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = newFakeAlerts(func() time.Time { return testNow }, append(testAlerts(), ghost)...)
	})
	cookie, _ := ts.loginAs(t, "admin") // an alert of an unknown site: only the admin's scope holds it
	_, board := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	// alert 1 opened 07:55 UTC = 15:55 in Asia/Shanghai (CST)
	if li := alertItemHTML(t, board, 1); !strings.Contains(li, ">15:55 CST<") {
		t.Errorf("board alert 1: %q lacks 15:55 CST", li)
	}
	if li := alertItemHTML(t, board, 4); !strings.Contains(li, ">07:58 UTC<") || !strings.Contains(li, "ghost-site") {
		t.Errorf("board alert 4 of an unknown site: %q lacks 07:58 UTC", li)
	}
	if !strings.Contains(board, `"tz":"Asia/Shanghai"`) || !strings.Contains(board, `"abbr":"CST"`) {
		t.Error("board lacks the sites' zones for the page script")
	}
	_, alerts := ts.do(t, "GET", "/alerts", nil, map[string]string{"Cookie": cookie})
	for _, want := range []string{"2026-03-01 15:55:00 CST", "2026-03-01 07:58:00 UTC"} {
		if !strings.Contains(alerts, want) {
			t.Errorf("/alerts lacks %q", want)
		}
	}
	_, res := ts.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie})
	if !strings.Contains(res, "15:55:00 CST") || !strings.Contains(res, "16:00 CST") {
		t.Error("resident page times lack the zone")
	}
}

// A "repeated" change (a new fall or SOS on an open alert) reaches the
// browsers again, although the alert's state did not change.
func TestFeedRepeatedReachesBrowsers(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	f := ts.feed
	const topic = "t/v1/alerts/demo-station"
	real := ts.alerts.get(1)
	f.HandleMessage(topic, forgedChange(t, "opened", real))
	sub := f.Subscribe()
	defer sub.Close()
	for _, ev := range []string{"repeated", "repeating", "escalated", "reminder"} {
		f.HandleMessage(topic, forgedChange(t, ev, real))
		select {
		case fr := <-sub.C():
			if !strings.Contains(string(fr), `"`+ev+`"`) {
				t.Fatalf("frame %s does not carry the %s event", fr, ev)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("a %s notice did not reach the browsers", ev)
		}
	}
	if n := testutil.ToFloat64(f.mMessages.WithLabelValues("alert", "ok")); n != 5 {
		t.Errorf("ok alert messages = %v, want 5", n)
	}
}

// The store counts the repeats of a continuing breach without a notice
// (Repeats, LastOccurredAt change); a later trigger that brings no other
// change (a duplicate delivery) does not show the alert again, a
// "repeated" change does.
func TestFeedSilentRepeatNotShownAgain(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	f := ts.feed
	sub := f.Subscribe()
	defer sub.Close()
	const topic = "t/v1/alerts/demo-station"
	frames := func() []string {
		var out []string
		for {
			select {
			case fr := <-sub.C():
				out = append(out, string(fr))
			default:
				return out
			}
		}
	}
	f.HandleMessage(topic, forgedChange(t, "opened", ts.alerts.get(1)))
	if got := frames(); len(got) != 1 {
		t.Fatalf("opened: %d frames, want 1: %q", len(got), got)
	}
	ts.alerts.mu.Lock()
	a := ts.alerts.alerts[1]
	last := testNow.Add(time.Minute)
	a.Repeats, a.LastOccurredAt = 3, &last
	ts.alerts.alerts[1] = a
	ts.alerts.mu.Unlock()
	f.HandleMessage(topic, forgedChange(t, "opened", ts.alerts.get(1)))
	if got := frames(); len(got) != 0 {
		t.Errorf("a silent repeat count was shown again: %q", got)
	}
	f.HandleMessage(topic, forgedChange(t, alerting.EventRepeated, ts.alerts.get(1)))
	got := frames()
	if len(got) != 1 || !strings.Contains(got[0], `"event":"repeated"`) || !strings.Contains(got[0], `"repeats":3`) {
		t.Errorf("repeated: %q, want one frame with the event and the store's repeat count", got)
	}
}
