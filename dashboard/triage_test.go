package dashboard

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
)

func TestAlertWhat(t *testing.T) {
	t.Parallel()
	v := 129.0
	b := 5.0
	for _, tc := range []struct {
		a      alerting.Alert
		en, zh string
	}{
		{alerting.Alert{Type: alerting.TypeFall, Detail: "fall detected, peak 58.17 m/s^2"}, "Fall detected", "检测到跌倒"},
		{alerting.Alert{Type: alerting.TypeHeartRate, Value: &v, Detail: "Heart rate 129 bpm for 60 s"}, "Heart rate 129 bpm for 1 min", "心率 129 次/分，持续 1 分钟"},
		{alerting.Alert{Type: alerting.TypeLowBattery, Value: &b, Device: "vm-1"}, "Battery 5 %", "电量 5 %"},
		{alerting.Alert{Type: alerting.TypeDeviceOffline, Device: "bs-101-1"}, "A device stopped reporting (bs-101-1)", "设备停止上报（bs-101-1）"},
	} {
		if got := alertWhat(LangEN, tc.a); got != tc.en {
			t.Errorf("en %s: %q, want %q", tc.a.Type, got, tc.en)
		}
		if got := alertWhat(LangZH, tc.a); got != tc.zh {
			t.Errorf("zh %s: %q, want %q", tc.a.Type, got, tc.zh)
		}
	}
}

func TestPlaceAndDeviceNames(t *testing.T) {
	t.Parallel()
	if got := placeName(LangZH, "room", "Room 101"); got != "101 房" {
		t.Errorf("room: %q", got)
	}
	if got := placeName(LangZH, "bed", "窗边床"); got != "窗边床" {
		t.Errorf("a name not in the English pattern is kept: %q", got)
	}
	if got := deviceName(LangZH, "vitals_monitor", "Vitals monitor 101-1", "vm-101-1"); got != "生命体征监测仪 101-1" {
		t.Errorf("device: %q", got)
	}
	if got := deviceName(LangEN, "vitals_monitor", "Vitals monitor 101-1", "vm-101-1"); got != "Vitals monitor 101-1" {
		t.Errorf("device en: %q", got)
	}
	if got := targetWords(LangZH, []string{"role:nurse_lead", "on_duty"}); got != "护士长、值班人员" {
		t.Errorf("targets: %q", got)
	}
}

// TestTriageRepeatsAndEscalation: a second fall shows on the board as a
// repeat with its time; an escalated alert says who was paged.
func TestTriageRepeatsAndEscalation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ts.alerts.mu.Lock()
	ts.alerts.history[2] = []alerting.HistoryEntry{
		{AlertID: 2, At: testNow.Add(-time.Minute), Action: alerting.ActionOpened},
		{AlertID: 2, At: testNow.Add(-30 * time.Second), Action: alerting.ActionRepeated, Detail: "fall detected"},
	}
	ts.alerts.mu.Unlock()
	cookie, _ := ts.login(t)
	resp, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("board: %d", resp.StatusCode)
	}
	item := page[strings.Index(page, `data-alert="2"`):]
	item = item[:strings.Index(item, "</li>")]
	for _, want := range []string{"happened again 1 time, last 30 s ago", "not acknowledged for 1 min"} {
		if !strings.Contains(item, want) {
			t.Errorf("alert 2 lacks %q: %s", want, item)
		}
	}
}

// escalatingAlerts is fakeAlerts with a policy (nurse lead after 2 min)
// and the escalation state of alert 2: step 0 fired.
type escalatingAlerts struct{ *fakeAlerts }

func (escalatingAlerts) Settings(context.Context) (alerting.Settings, error) {
	return alerting.Settings{Policies: []alerting.Policy{{ID: "falls", Steps: []alerting.Step{
		{After: alerting.Duration(2 * time.Minute), Targets: []string{"role:nurse_lead"}},
		{After: alerting.Duration(5 * time.Minute), Targets: []string{"role:manager"}},
	}}}}, nil
}
func (escalatingAlerts) PutPolicy(context.Context, string, alerting.Policy) error { return nil }
func (escalatingAlerts) PutRoster(context.Context, string, alerting.Roster) error { return nil }
func (escalatingAlerts) Escalation(_ context.Context, id int64) (alerting.EscalationState, bool, error) {
	due := testNow.Add(2 * time.Minute)
	return alerting.EscalationState{Policy: "falls", NextStep: 1, Due: &due}, id == 2, nil
}

func TestTriageEscalationPaged(t *testing.T) {
	t.Parallel()
	var fa *fakeAlerts
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		fa = newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)
		d.Alerts = escalatingAlerts{fa}
	})
	_ = ts
	fa.mu.Lock()
	fa.history[2] = []alerting.HistoryEntry{{AlertID: 2, At: testNow.Add(-10 * time.Second), Action: alerting.ActionEscalated, Detail: "policy falls step 1: lead-1"}}
	fa.mu.Unlock()
	cookie, _ := ts.login(t)
	_, page := ts.do(t, "GET", "/board?lang=zh-CN", nil, map[string]string{"Cookie": cookie})
	item := page[strings.Index(page, `data-alert="2"`):]
	item = item[:strings.Index(item, "</li>")]
	if !strings.Contains(item, "1 分钟未确认：已呼叫护士长") {
		t.Errorf("alert 2 does not say the nurse lead was paged: %s", item)
	}
}
