package dashboard

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
)

// TestBoardCheckSensor: an open sensor_suspect alert shows "Check sensor"
// on the resident's bed card and in the alert list (en and zh-CN words).
func TestBoardCheckSensor(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ts.alerts.mu.Lock()
	ts.alerts.alerts[10] = alerting.Alert{ID: 10, Site: "demo-station", Resident: strp("res-001"), Device: "vm-101", Type: alerting.TypeSensorSuspect,
		Severity: alerting.SeverityWarning, Status: alerting.StatusOpen, OpenedAt: testNow.Add(-time.Minute),
		Detail: "check sensor: respiration 0 /min while SpO2 is 100 % and the heart rate steady at 66 bpm, for 15 s"}
	ts.alerts.mu.Unlock()
	cookie, _ := ts.login(t)
	resp, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("board: %d", resp.StatusCode)
	}
	i := strings.Index(page, `data-resident="res-001"`)
	if i < 0 {
		t.Fatal("no bed card of res-001")
	}
	card := page[i:]
	card = card[:strings.Index(card, "</article>")]
	if !strings.Contains(card, "Check sensor (vm-101)") {
		t.Errorf("bed card lacks the check-sensor reason: %s", card)
	}
	if !strings.Contains(page, "Check sensor: impossible readings (vm-101)") {
		t.Error("the alert list lacks the check-sensor alert")
	}
	for _, lang := range []string{LangEN, LangZH} {
		if got := alertWhat(lang, alerting.Alert{Type: alerting.TypeSensorSuspect, Device: "vm-101"}); !strings.Contains(got, "vm-101") || strings.Contains(got, "what.") {
			t.Errorf("%s: %q", lang, got)
		}
	}
}
