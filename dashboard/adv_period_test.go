package dashboard

import (
	"strings"
	"testing"
	"time"
)

// TestManagerPeriodRefusals: a bad period on the trends, device health and
// programme pages answers 400 with the reason beside the field in the
// user's language (zh-CN showed ParsePeriod's English), and their CSVs
// refuse it rather than sending this month's figures under another name.
func TestManagerPeriodRefusals(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = &mgrAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)}
	})
	lead, _ := ts.loginAs(t, "lead") // zh-CN
	h := map[string]string{"Cookie": lead}
	for _, c := range []struct{ q, zh string }{
		{"period=custom&from=2026-13-01&to=2026-03-01", "请填写日期"},
		{"period=custom&from=2026-03-01&to=2026-02-01", "结束日期早于开始日期"},
		{"period=custom&from=2016-01-01&to=2026-01-01", "自定义时段最长 366 天"},
		{"period=bogus", "请选择本周、某个月或自定义时段"},
		{"month=2026-1", "请填写月份，例如 2026-03"},
	} {
		for _, p := range []string{"/manager/trends", "/manager/devices", "/manager/programme"} {
			r, page := ts.do(t, "GET", p+"?"+c.q, nil, h)
			if r.StatusCode != 400 || !strings.Contains(page, c.zh) || strings.Contains(page, "want ") || strings.Contains(page, "at most") {
				t.Errorf("%s?%s: %d, reason %q shown %v", p, c.q, r.StatusCode, c.zh, strings.Contains(page, c.zh))
			}
		}
	}
	for _, p := range []string{"/manager/trends?csv=per_day", "/manager/devices?csv=devices", "/manager/programme?csv=visits"} {
		if r, body := ts.do(t, "GET", p+"&period=custom&from=2026-03-01&to=2026-02-01", nil, h); r.StatusCode != 400 || strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") || !strings.Contains(body, "结束日期早于开始日期") {
			t.Errorf("%s with a bad period: %d %.100s", p, r.StatusCode, body)
		}
		if r, _ := ts.do(t, "GET", p+"&period=week", nil, h); r.StatusCode != 200 {
			t.Errorf("%s this week: %d", p, r.StatusCode)
		}
	}
}
