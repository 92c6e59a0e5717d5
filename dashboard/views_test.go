package dashboard

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// settingsAlerts is fakeAlerts with alerting.Manager's settings and
// response-time report.
type settingsAlerts struct {
	*fakeAlerts
	smu   sync.Mutex
	set   alerting.Settings
	stats []alerting.ResponseStat
	from  time.Time
}

func (f *settingsAlerts) Settings(context.Context) (alerting.Settings, error) {
	f.smu.Lock()
	defer f.smu.Unlock()
	return f.set, nil
}

func (f *settingsAlerts) PutRecipient(_ context.Context, _ string, r alerting.Recipient) error {
	if err := r.Validate(); err != nil {
		return err
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	f.set.Recipients = slices.DeleteFunc(f.set.Recipients, func(x alerting.Recipient) bool { return x.ID == r.ID })
	f.set.Recipients = append(f.set.Recipients, r)
	return nil
}

func (f *settingsAlerts) PutPolicy(_ context.Context, _ string, p alerting.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	f.set.Policies = append(f.set.Policies, p)
	return nil
}

func (f *settingsAlerts) PutRoster(_ context.Context, _ string, r alerting.Roster) error {
	if err := r.Validate(); err != nil {
		return err
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	f.set.Rosters = append(f.set.Rosters, r)
	return nil
}

func (f *settingsAlerts) ResponseTimes(_ context.Context, from, _ time.Time) ([]alerting.ResponseStat, error) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.from = from
	return f.stats, nil
}

// bindRegistry is fakeRegistry with Bind and Unbind.
type bindRegistry struct {
	*fakeRegistry
	mu    sync.Mutex
	calls []string
}

func (r *bindRegistry) Bind(_ context.Context, dev, res string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "bind "+dev+" "+res)
	return nil
}

func (r *bindRegistry) Unbind(_ context.Context, dev string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bindings {
		if b.DeviceID == dev && b.To == nil {
			r.calls = append(r.calls, "unbind "+dev)
			return nil
		}
	}
	return fmt.Errorf("unbind %s: %w", dev, registry.ErrNotFound)
}

// windowVitals records the windows it is asked for.
type windowVitals struct {
	mu     sync.Mutex
	everys []time.Duration
}

func (v *windowVitals) ResidentVitals(context.Context, string, time.Time, time.Time) (map[string][]Point, error) {
	return nil, nil
}

func (v *windowVitals) ResidentVitalsEvery(_ context.Context, _ string, from, to time.Time, every time.Duration) (map[string][]Point, error) {
	v.mu.Lock()
	v.everys = append(v.everys, every)
	v.mu.Unlock()
	return map[string][]Point{"hr_bpm": {{T: to.Add(-3 * every), V: 70}, {T: to.Add(-2 * every), V: 72}, {T: to.Add(-every), V: 75}}}, nil
}

func (ts *testServer) postForm(t *testing.T, cookie, path string, v url.Values) (*http.Response, string) {
	t.Helper()
	return ts.do(t, "POST", path, strings.NewReader(v.Encode()), map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
}

// body is the page after <body>: without the head's translation table
// for the page script.
func body(page string) string {
	if i := strings.Index(page, "<body>"); i >= 0 {
		return page[i:]
	}
	return page
}

func TestTranslationsComplete(t *testing.T) {
	t.Parallel()
	// Key parity of the catalogues: TestCatalogues.
	for _, o := range alerting.Outcomes {
		if trIn(LangZH, "outcome."+o) == "outcome."+o {
			t.Errorf("outcome %s untranslated", o)
		}
	}
	for _, r := range Roles {
		if trIn(LangZH, "role."+r) == "role."+r {
			t.Errorf("role %s untranslated", r)
		}
	}
}

func TestLanguagePerUser(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	tests := []struct {
		user, query, want, notWant string
	}{
		{"lead", "", "实时看板", "Live board"},             // User.Lang zh-CN
		{"nurse", "", "Live board", "实时看板"},            // User.Lang en
		{"nurse", "?lang=zh-CN", "实时看板", "Live board"}, // the switch changes the account's language
		{"nurse", "", "实时看板", "Live board"},            // and it stays changed
		{"nurse", "?lang=en", "Live board", "实时看板"},
	}
	for _, tc := range tests {
		t.Run(tc.user+tc.query, func(t *testing.T) {
			cookie, _ := ts.loginAs(t, tc.user)
			resp, page := ts.do(t, "GET", "/board"+tc.query, nil, map[string]string{"Cookie": cookie})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			page = body(page)
			if !strings.Contains(page, tc.want) || strings.Contains(page, tc.notWant) {
				t.Errorf("board: want %q and not %q", tc.want, tc.notWant)
			}
		})
	}
	t.Run("zh-CN board in full", func(t *testing.T) {
		cookie, _ := ts.loginAs(t, "lead")
		_, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
		if !strings.Contains(page, `<html lang="zh-CN">`) {
			t.Error("no lang=zh-CN")
		}
		page = body(page)
		for _, want := range []string{"需要立即处理", "确认", "误报", "紧急", "15:55 CST"} {
			if !strings.Contains(page, want) {
				t.Errorf("zh-CN board lacks %q", want)
			}
		}
	})
}

func TestLangFallback(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	tests := []struct {
		name  string
		path  string
		hdr   map[string]string
		want  string
		setCk bool
	}{
		{"param", "/login?lang=zh-CN", nil, LangZH, true},
		{"cookie", "/login", map[string]string{"Cookie": langCookie + "=zh-CN"}, LangZH, false},
		{"bad cookie", "/login", map[string]string{"Cookie": langCookie + "=xx"}, LangEN, false},
		{"accept-language", "/login", map[string]string{"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"}, LangZH, false},
		{"english first", "/login", map[string]string{"Accept-Language": "en-GB,zh;q=0.5"}, LangEN, false},
		{"bad param", "/login?lang=%3Cb%3E", nil, LangEN, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, page := ts.do(t, "GET", tc.path, nil, tc.hdr)
			if !strings.Contains(page, `<html lang="`+tc.want+`">`) {
				t.Errorf("page language is not %s: %.120s", tc.want, page)
			}
			if got := cookieOf(resp, langCookie) != ""; got != tc.setCk {
				t.Errorf("language cookie set: %t, want %t", got, tc.setCk)
			}
		})
	}
}

func TestBoardQueueAndTwoTaps(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, csrf := ts.login(t)
	_, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	q := page[strings.Index(page, `id="triage"`):]
	// Waiting alerts first, by severity then age: 2 (critical fall) before
	// 1 (high); then those being handled: 3 (acknowledged).
	i3, i2, i1 := strings.Index(q, `data-alert="3"`), strings.Index(q, `data-alert="2"`), strings.Index(q, `data-alert="1"`)
	if i3 < 0 || i2 < 0 || i1 < 0 || !(i2 < i1 && i1 < i3) {
		t.Errorf("queue order: alert 2 at %d, 1 at %d, 3 at %d; want 2, 1, 3", i2, i1, i3)
	}
	if !strings.Contains(q, `name="outcome" value="false_alarm"`) {
		t.Error("queue has no one-tap resolve button per outcome")
	}
	// Tap 1: acknowledge. Tap 2: resolve with an outcome.
	resp, _ := ts.postForm(t, cookie, "/alerts/2/ack", url.Values{"_csrf": {csrf}, "back": {"/board"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/board" {
		t.Fatalf("ack: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = ts.postForm(t, cookie, "/alerts/2/resolve", url.Values{"_csrf": {csrf}, "back": {"/board"}, "outcome": {"false_alarm"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("resolve: %d", resp.StatusCode)
	}
	if a := ts.alerts.get(2); a.Status != alerting.StatusResolved || a.Outcome != alerting.OutcomeFalseAlarm || a.AcknowledgedBy != "Nurse Zhang" {
		t.Errorf("alert 2 after two taps: %+v", a)
	}
}

func TestBoardScope(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, _ := ts.loginAs(t, "faraway")
	_, page := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": cookie})
	if strings.Contains(page, "res-001") || strings.Contains(page, `data-alert="1"`) {
		t.Error("a caregiver of another site sees demo-station's beds or alerts")
	}
	fam, _ := ts.loginAs(t, "daughter")
	if resp, _ := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": fam}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("family on /board: %d, want 404", resp.StatusCode)
	}
}

func TestResidentPageWindowsAndCheckIn(t *testing.T) {
	t.Parallel()
	wv := &windowVitals{}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Vitals = wv })
	cookie, csrf := ts.login(t)
	resp, page := ts.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	page = body(page)
	if !slices.Equal(wv.everys, []time.Duration{30 * time.Second, 5 * time.Minute}) {
		t.Errorf("vitals windows %v, want [30s 5m]", wv.everys)
	}
	for _, want := range []string{"Vitals, last hour", "Vitals, last 24 hours", "<polyline", "No visit recorded.", `action="/residents/res-001/checkin"`} {
		if !strings.Contains(page, want) {
			t.Errorf("resident page lacks %q", want)
		}
	}
	resp, _ = ts.postForm(t, cookie, "/residents/res-001/checkin", url.Values{"_csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("check-in: %d", resp.StatusCode)
	}
	_, page = ts.do(t, "GET", "/residents/res-001?checkedin=1", nil, map[string]string{"Cookie": cookie})
	if !strings.Contains(page, "Visit recorded.") || !strings.Contains(page, "16:00:00 CST · Nurse Zhang") {
		t.Errorf("after check-in the page shows no visit")
	}
	vs, err := ts.srv.visits().Visits(context.Background(), testNow.Add(-time.Hour), testNow.Add(time.Hour))
	if err != nil || len(vs) != 1 || vs[0].Resident != "res-001" || vs[0].Actor != "Nurse Zhang" || vs[0].Source != VisitCheckin {
		t.Errorf("visits %+v, %v", vs, err)
	}
	t.Run("scope", func(t *testing.T) {
		far, farCSRF := ts.loginAs(t, "faraway")
		if resp, _ := ts.postForm(t, far, "/residents/res-001/checkin", url.Values{"_csrf": {farCSRF}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("check-in outside scope: %d, want 404", resp.StatusCode)
		}
		fam, famCSRF := ts.loginAs(t, "daughter")
		if resp, _ := ts.postForm(t, fam, "/residents/res-001/checkin", url.Values{"_csrf": {famCSRF}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("family check-in: %d, want 404", resp.StatusCode)
		}
		if resp, _ := ts.do(t, "GET", "/residents/res-002", nil, map[string]string{"Cookie": fam}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("family on another resident: %d, want 404", resp.StatusCode)
		}
	})
}

func TestVitalSentence(t *testing.T) {
	t.Parallel()
	hr := familyRanges[0]
	tests := []struct {
		lang    string
		v       float64
		want    string
		verdict string
	}{
		{LangEN, 72, "Heart rate 72 bpm — normal (50-120)", "normal"},
		{LangEN, 131, "Heart rate 131 bpm — above the usual range (50-120)", "high"},
		{LangEN, 44, "Heart rate 44 bpm — below the usual range (50-120)", "low"},
		{LangZH, 72, "心率 72 次/分 — 正常（50-120）", "normal"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.lang, tc.v), func(t *testing.T) {
			got, verdict := vitalSentence(tc.lang, hr, tc.v)
			if got != tc.want || verdict != tc.verdict {
				t.Errorf("got %q %s, want %q %s", got, verdict, tc.want, tc.verdict)
			}
		})
	}
	if sp := familyRanges[1]; sp.Lo != 90 || sp.Hi != 100 {
		t.Errorf("SpO2 range %v-%v, want 90-100 (alerting.SpO2Low)", sp.Lo, sp.Hi)
	}
}

func TestFamilyView(t *testing.T) {
	t.Parallel()
	old := testNow.Add(-40 * 24 * time.Hour)
	extra := []alerting.Alert{
		{ID: 10, Site: "demo-station", Resident: strp("res-001"), Device: "fd-001", Type: "fall", Severity: "critical", Status: "resolved", OpenedAt: old, ResolvedAt: &old, Outcome: "no_injury"},
		{ID: 11, Site: "demo-station", Resident: strp("res-002"), Device: "vm-102", Type: "sos", Severity: "critical", Status: "open", OpenedAt: testNow.Add(-time.Hour)},
	}
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = newFakeAlerts(func() time.Time { return testNow }, append(testAlerts(), extra...)...)
	})
	ts.feed.HandleMessage("t/v1/demo-station/vm-101/telemetry", []byte(`{"v":1,"device":"vm-101","boot":1,"id":1,"seq":1,"ts":`+ms(testNow.Add(-20*time.Second))+`,"values":{"hr_bpm":72,"spo2_pct":88,"resp_per_min":16}}`))
	ts.feed.HandleMessage("t/v1/demo-station/bs-101/event", []byte(`{"v":1,"device":"bs-101","boot":1,"id":1,"seq":1,"ts":`+ms(testNow.Add(-10*time.Minute))+`,"type":"bed_entry"}`))
	cookie, _ := ts.loginAs(t, "otherfamily") // English; linked to res-002
	_, page := ts.do(t, "GET", "/family", nil, map[string]string{"Cookie": cookie})
	page = body(page)
	if strings.Contains(page, "Wang Xiuying") || !strings.Contains(page, "SOS") {
		t.Error("otherfamily sees res-001, or not their own resident's SOS")
	}
	if !strings.Contains(page, "&lt;b&gt;Li &#34;Bold&#34;&lt;/b&gt;") {
		t.Error("the resident's name is not escaped")
	}
	zh, _ := ts.loginAs(t, "daughter") // zh-CN; linked to res-001
	_, page = ts.do(t, "GET", "/family", nil, map[string]string{"Cookie": zh})
	page = body(page)
	for _, want := range []string{"在床休息", "心率 72 次/分 — 正常（50-120）", "血氧 88 % — 低于正常范围（90-100）", "跌倒", "血氧偏低"} {
		if !strings.Contains(page, want) {
			t.Errorf("family page lacks %q", want)
		}
	}
	if strings.Contains(page, `data-alert="10"`) || strings.Contains(page, "未受伤") {
		t.Error("an event older than 30 days is listed")
	}
	if resp, _ := ts.do(t, "GET", "/manager", nil, map[string]string{"Cookie": zh}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("family on /manager: %d", resp.StatusCode)
	}
}

func TestFamilyPreferences(t *testing.T) {
	t.Parallel()
	var sa *settingsAlerts
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		sa = &settingsAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)}
		d.Alerts = sa
	})
	cookie, csrf := ts.loginAs(t, "otherfamily")
	tests := []struct {
		name   string
		form   url.Values
		code   int
		msgs   []string
		stored *alerting.Recipient
	}{
		{"bad fields", url.Values{"email": {"not-an-address"}, "quiet": {"on"}, "start": {"25:00"}, "end": {"7pm"}, "zone": {"<script>alert(1)</script>"}}, 400,
			[]string{"an e-mail address like name@example.org", "a time of day as HH:MM", "an IANA time zone such as Asia/Shanghai", "&lt;script&gt;alert(1)&lt;/script&gt;"}, nil},
		{"good", url.Values{"email": {"li@example.org"}, "quiet": {"on"}, "start": {"22:00"}, "end": {"07:00"}, "zone": {"Asia/Shanghai"}}, 303, nil,
			&alerting.Recipient{ID: "otherfamily", Name: "Li Family", Role: RoleFamily, Sites: []string{"demo-station"}, Email: "li@example.org"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("_csrf", csrf)
			resp, page := ts.postForm(t, cookie, "/family/preferences", tc.form)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(page, m) {
					t.Errorf("page lacks %q", m)
				}
			}
			if strings.Contains(page, "<script>alert(1)") {
				t.Error("hostile input not escaped")
			}
			set, _ := sa.Settings(context.Background())
			if tc.stored == nil {
				if len(set.Recipients) != 0 {
					t.Errorf("invalid form stored %+v", set.Recipients)
				}
				return
			}
			if len(set.Recipients) != 1 {
				t.Fatalf("recipients %+v", set.Recipients)
			}
			r := set.Recipients[0]
			if r.ID != tc.stored.ID || r.Name != tc.stored.Name || r.Email != tc.stored.Email || r.Role != tc.stored.Role ||
				!slices.Equal(r.Sites, tc.stored.Sites) || r.Quiet == nil || r.Quiet.Start.String() != "22:00" || r.Quiet.Zone != "Asia/Shanghai" {
				t.Errorf("stored %+v", r)
			}
		})
	}
	_, page := ts.do(t, "GET", "/family/preferences", nil, map[string]string{"Cookie": cookie})
	if !strings.Contains(page, `value="li@example.org"`) || !strings.Contains(page, `value="22:00"`) {
		t.Error("the form does not show the stored preferences")
	}
}

// reportFixture: 4 beds (2 nursing), 3 occupied; alerts on two devices.
func reportFixture() (*directory, []alerting.Alert, Period) {
	loc, _ := time.LoadLocation("Asia/Shanghai")
	p, _ := MonthPeriod("2026-02", testNow, loc)
	d := &directory{
		sites: []registry.Site{{ID: "s1", Name: "Station 1", TimeZone: "Asia/Shanghai"}, {ID: "s2", Name: "Other"}},
		beds: []registry.Bed{{ID: "b1", SiteID: "s1", Nursing: true}, {ID: "b2", SiteID: "s1", Nursing: true}, {ID: "b3", SiteID: "s1"},
			{ID: "b4", SiteID: "s1"}, {ID: "x1", SiteID: "s2"}},
		residents: []registry.Resident{{ID: "r1", SiteID: "s1", BedID: "b1", Name: "=HYPERLINK(1)", Vulnerable: true},
			{ID: "r2", SiteID: "s1", BedID: "b3", Name: "Two"}, {ID: "r3", SiteID: "s1", BedID: "b4", Name: "Three", Vulnerable: true},
			{ID: "r9", SiteID: "s2", BedID: "x1", Name: "Elsewhere", Vulnerable: true}},
		siteByID: map[string]registry.Site{}, resByID: map[string]registry.Resident{}, locs: map[string]*time.Location{}, roomByID: map[string]registry.Room{},
		bedByID: map[string]registry.Bed{}, devByID: map[string]registry.Device{},
	}
	for _, s := range d.sites {
		d.siteByID[s.ID], d.locs[s.ID] = s, siteLocation(s.TimeZone)
	}
	for _, r := range d.residents {
		d.resByID[r.ID] = r
	}
	in := func(day int) *time.Time { x := time.Date(2026, 2, day, 10, 0, 0, 0, loc); return &x }
	var as []alerting.Alert
	add := func(dev, typ, outcome string, res *string, day int) {
		as = append(as, alerting.Alert{ID: int64(len(as) + 1), Site: "s1", Device: dev, Type: typ, Resident: res, Status: "resolved",
			OpenedAt: *in(day), ResolvedAt: in(day), Outcome: outcome})
	}
	// fd-1: 4 resolved in February, 3 false alarms; fd-2: 1 resolved, 0
	// false; one of fd-2 resolved in January does not count.
	add("fd-1", "fall", "false_alarm", strp("r1"), 2)
	add("fd-1", "fall", "false_alarm", strp("r1"), 3)
	add("fd-1", "fall", "false_alarm", strp("r1"), 4)
	add("fd-1", "fall", "no_injury", strp("r1"), 5)
	add("fd-2", "sos", "injury", strp("r2"), 6)
	jan := time.Date(2026, 1, 20, 0, 0, 0, 0, loc)
	as = append(as, alerting.Alert{ID: 99, Site: "s1", Device: "fd-2", Type: "fall", Status: "resolved", OpenedAt: jan, ResolvedAt: &jan, Outcome: "false_alarm"})
	add("mt-1", "meal_missed", "other", strp("r2"), 7)
	add("mt-1", "meal_missed", "other", strp("r2"), 8)
	return d, as, p
}

func TestReportNumbers(t *testing.T) {
	t.Parallel()
	d, as, p := reportFixture()
	onlyS1 := func(s string) bool { return s == "s1" }
	t.Run("occupancy", func(t *testing.T) {
		rows := occupancyReport(d, onlyS1)
		if len(rows) != 1 {
			t.Fatalf("rows %+v", rows)
		}
		r := rows[0]
		if r.Beds != 4 || r.Occupied != 3 || r.Nursing != 2 || r.NursingOccupied != 1 || r.Occupancy != 0.75 || r.NursingShare != 0.5 {
			t.Errorf("%+v", r)
		}
	})
	t.Run("false alarms", func(t *testing.T) {
		rows := falseAlarmReport(as, p, onlyS1)
		want := []FalseAlarmRow{{Device: "fd-1", Resolved: 4, False: 3, Rate: 0.75}, {Device: "fd-2", Resolved: 1, False: 0, Rate: 0}, {Device: "mt-1", Resolved: 2, False: 0, Rate: 0}}
		if !slices.Equal(rows, want) {
			t.Errorf("got %+v\nwant %+v", rows, want)
		}
	})
	t.Run("meals", func(t *testing.T) {
		rows := mealReport(d, map[string]int{"r1": 50, "r2": 40}, true, as, p, onlyS1)
		want := []MealRow{{"r1", "=HYPERLINK(1)", 50, 0}, {"r2", "Two", 40, 2}, {"r3", "Three", 0, 0}}
		if !slices.Equal(rows, want) {
			t.Errorf("got %+v", rows)
		}
		if rows := mealReport(d, nil, false, as, p, onlyS1); rows[1].Served != -1 || rows[1].Missed != 2 {
			t.Errorf("meals without InfluxDB: %+v", rows[1])
		}
	})
	t.Run("visits", func(t *testing.T) {
		loc := d.loc("s1")
		at := func(day, h int) time.Time { return time.Date(2026, 2, day, h, 0, 0, 0, loc).UTC() }
		visits := []Visit{
			{Resident: "r1", At: at(1, 9)}, {Resident: "r1", At: at(1, 15), Source: VisitCardTap}, // same local day
			{Resident: "r1", At: at(2, 7)}, {Resident: "r1", At: at(28, 23)},
			{Resident: "r1", At: time.Date(2026, 3, 1, 0, 30, 0, 0, loc).UTC()}, // March in Shanghai
			{Resident: "r2", At: at(3, 9)},                                      // not vulnerable
		}
		rows := visitReport(d, visits, p, testNow, onlyS1)
		want := []VisitRow{{Resident: "r1", Name: "=HYPERLINK(1)", Visits: 4, DaysVisited: 3, Days: 28, Coverage: 3.0 / 28},
			{Resident: "r3", Name: "Three", Days: 28, Coverage: 0}}
		if !slices.Equal(rows, want) {
			t.Errorf("got %+v\nwant %+v", rows, want)
		}
	})
	t.Run("days so far", func(t *testing.T) {
		mar, _ := MonthPeriod("", testNow, d.loc("s1")) // 2026-03-01 16:00 CST
		if mar.Label != "2026-03" || mar.elapsedDays(testNow) != 1 {
			t.Errorf("%s: %d days", mar.Label, mar.elapsedDays(testNow))
		}
	})
}

func TestReportCSV(t *testing.T) {
	t.Parallel()
	d, as, p := reportFixture()
	keep := func(s string) bool { return s == "s1" }
	ms := func(d time.Duration) *time.Duration { return &d }
	rep := &Report{Period: p, Occupancy: occupancyReport(d, keep), FalseAlarms: falseAlarmReport(as, p, keep),
		Meals: mealReport(d, nil, false, as, p, keep), Visits: visitReport(d, nil, p, testNow, keep),
		Devices:  []DeviceHealthRow{{Site: "s1", Type: "unprotected", Resident: "r1", Detail: "@SUM(A1)"}},
		Response: []alerting.ResponseStat{{Dimension: "shift", Key: "night", Alerts: 3, Acknowledged: 2, AckP50: ms(90 * time.Second), AckP90: ms(4 * time.Minute)}}}
	tests := []struct {
		name   string
		header string
		rows   int
		check  func(rows [][]string) string
	}{
		{"occupancy", "site,site_name,beds,occupied,occupancy,nursing_beds,nursing_occupied,nursing_share", 1,
			func(r [][]string) string { return strings.Join(r[1], ",") }},
		{"devices", "site,type,resident,resident_name,device,since,detail", 1, func(r [][]string) string { return r[1][6] }},
		{"response", "dimension,key,alerts,acknowledged,resolved,ack_p50_ms,ack_p90_ms,resolve_p50_ms,resolve_p90_ms", 1,
			func(r [][]string) string { return strings.Join(r[1], ",") }},
		{"false_alarms", "device,resolved,false_alarms,rate", 3, func(r [][]string) string { return strings.Join(r[1], ",") }},
		{"meals", "resident,name,served,missed", 3, func(r [][]string) string { return strings.Join(r[1], ",") }},
		{"visits", "resident,name,visits,days_visited,days,coverage", 2, func(r [][]string) string { return strings.Join(r[2], ",") }},
	}
	want := map[string]string{
		"occupancy":    "s1,Station 1,4,3,0.7500,2,1,0.5000",
		"devices":      "'@SUM(A1)",
		"response":     "shift,night,3,2,0,90000,240000,,",
		"false_alarms": "fd-1,4,3,0.7500",
		"meals":        "r1,'=HYPERLINK(1),,0",
		"visits":       "r3,Three,0,0,28,0.0000",
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := rep.WriteCSV(&b, tc.name); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(rows[0], ",") != tc.header || len(rows) != tc.rows+1 {
				t.Fatalf("header %q, %d rows:\n%s", rows[0], len(rows)-1, b.String())
			}
			if got := tc.check(rows); got != want[tc.name] {
				t.Errorf("got %q, want %q", got, want[tc.name])
			}
		})
	}
	if err := rep.WriteCSV(&strings.Builder{}, "nope"); err == nil {
		t.Error("unknown report accepted")
	}
}

func TestManagerPage(t *testing.T) {
	t.Parallel()
	var sa *settingsAlerts
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		sa = &settingsAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)}
		p50 := 2 * time.Minute
		sa.stats = []alerting.ResponseStat{{Dimension: "site", Key: "demo-station", Alerts: 3, AckP50: &p50}, {Dimension: "site", Key: "other-site", Alerts: 9},
			{Dimension: "shift", Key: "night", Alerts: 3, AckP50: &p50}}
		d.Alerts = sa
	})
	cookie, _ := ts.loginAs(t, "manager")
	resp, page := ts.do(t, "GET", "/manager?month=2026-02", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	page = body(page)
	for _, want := range []string{"50.0 %", "2 min", "night", "/manager/reports/visits.csv?month=2026-02", "Meal records are unavailable"} {
		if !strings.Contains(page, want) {
			t.Errorf("manager page lacks %q", want)
		}
	}
	if strings.Contains(page, "other-site") {
		t.Error("manager sees another site's response times")
	}
	if want := time.Date(2026, 2, 1, 0, 0, 0, 0, siteLocation("Asia/Shanghai")); !sa.from.Equal(want) {
		t.Errorf("period starts %s, want %s (site zone)", sa.from, want)
	}
	resp, body := ts.do(t, "GET", "/manager/reports/occupancy.csv?month=2026-02", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), `filename="occupancy-2026-02.csv"`) ||
		!strings.Contains(body, "demo-station,Sunshine Community Care Station,2,2,1.0000,1,1,0.5000") {
		t.Errorf("CSV: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/manager?month=2026-13", 400}, {"/manager?month=<b>", 400}, {"/manager/reports/nope.csv", 404}, {"/manager/reports/occupancy", 404},
	} {
		if resp, page := ts.do(t, "GET", tc.path, nil, map[string]string{"Cookie": cookie}); resp.StatusCode != tc.code || strings.Contains(page, "<b>") {
			t.Errorf("%s: %d, want %d (or unescaped)", tc.path, resp.StatusCode, tc.code)
		}
	}
	nurse, _ := ts.login(t)
	if resp, _ := ts.do(t, "GET", "/manager", nil, map[string]string{"Cookie": nurse}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("caregiver on /manager: %d", resp.StatusCode)
	}
}

func TestAdminForms(t *testing.T) {
	t.Parallel()
	var br *bindRegistry
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		br = &bindRegistry{fakeRegistry: testRegistry()}
		d.Registry = br
		d.Alerts = &settingsAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)}
	})
	cookie, csrf := ts.loginAs(t, "admin")
	resp, page := ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 || !strings.Contains(page, "Sunshine Community Care Station") || !strings.Contains(page, "Wang Mei") {
		t.Fatalf("admin page: %d", resp.StatusCode)
	}
	tests := []struct {
		name, path string
		form       url.Values
		code       int
		msgs       []string
	}{
		{"bind", "/admin/bind", url.Values{"device": {"fd-new"}, "resident": {"res-002"}}, 303, nil},
		{"bind unknown", "/admin/bind", url.Values{"device": {"<i>x</i>"}, "resident": {"nobody"}}, 400, []string{"choose a registered device", "choose a registered resident"}},
		{"unbind", "/admin/unbind", url.Values{"device": {"fd-001"}}, 303, nil},
		{"unbind unbound", "/admin/unbind", url.Values{"device": {"vm-101"}}, 400, []string{"this device is not bound to anyone"}},
		{"policy", "/admin/policy", url.Values{"id": {"night"}, "steps": {"0s on_duty\n3m role:nurse_lead"}, "repeat": {"5m"}}, 303, nil},
		{"policy bad", "/admin/policy", url.Values{"id": {"bad id!"}, "steps": {"soon everyone"}, "repeat": {"often"}}, 400,
			[]string{"1-64 letters, digits", "line 1: want a delay and targets", "a duration such as 5m"}},
		{"policy bad target", "/admin/policy", url.Values{"id": {"p2"}, "steps": {"0s pager"}}, 400, []string{"want on_duty, role:&lt;role&gt;, team:&lt;id&gt; or account:&lt;id&gt;"}},
		{"roster", "/admin/roster", url.Values{"site": {"demo-station"}, "zone": {"Asia/Shanghai"}, "shifts": {"day 07:00 19:00 ana\nnight 19:00 07:00 bo"}}, 303, nil},
		{"roster bad", "/admin/roster", url.Values{"site": {"demo-station"}, "zone": {"Mars/Base"}, "shifts": {"day 7am 19:00 ana"}}, 400,
			[]string{"an IANA time zone", "line 1: want name, start, end"}},
		{"user", "/admin/users", url.Values{"username": {"carer2"}, "name": {"Carer Two"}, "role": {"caregiver"}, "lang": {"zh-CN"}, "sites": {"demo-station"}}, 200, []string{"carer2"}},
		{"user bad", "/admin/users", url.Values{"username": {"Bad Name"}, "role": {"king"}, "lang": {"en"}}, 400, []string{"only lower-case letters", "role &#34;king&#34;"}},
		{"user taken", "/admin/users", url.Values{"username": {"nurse"}, "role": {"caregiver"}, "lang": {"en"}, "sites": {"demo-station"}}, 400, []string{"this username is taken"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("_csrf", csrf)
			resp, page := ts.postForm(t, cookie, tc.path, tc.form)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.code, page)
			}
			page = body(page)
			for _, m := range tc.msgs {
				if !strings.Contains(page, m) {
					t.Errorf("page lacks %q", m)
				}
			}
			if strings.Contains(page, "<i>x</i>") {
				t.Error("hostile input not escaped")
			}
		})
	}
	if want := []string{"bind fd-new res-002", "unbind fd-001"}; !slices.Equal(br.calls, want) {
		t.Errorf("registry calls %v, want %v", br.calls, want)
	}
	set, _ := ts.srv.policies().Settings(context.Background())
	if len(set.Policies) != 1 || len(set.Policies[0].Steps) != 2 || time.Duration(set.Policies[0].Repeat) != 5*time.Minute || len(set.Rosters) != 1 || len(set.Rosters[0].Shifts) != 2 {
		t.Errorf("settings %+v", set)
	}
	if _, err := ts.srv.deps.Accounts.Authenticate(context.Background(), "carer2", "x"); err == nil {
		t.Error("wrong password accepted")
	}
	manager, _ := ts.loginAs(t, "manager")
	if resp, _ := ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": manager}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("manager on /admin: %d", resp.StatusCode)
	}
}

// TestAdminRegistry edits a real registry (SQLite) through the admin form.
func TestAdminRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	reg := testRegistry()
	doc := &registry.Document{Sites: []registry.SiteSpec{{ID: "demo-station", Name: "Sunshine Community Care Station", TimeZone: "Asia/Shanghai",
		Rooms: []registry.RoomSpec{{ID: "r101", Name: "Room 101", Beds: []registry.BedSpec{{ID: "b101-1", Name: "Bed 1", Nursing: true}, {ID: "b101-2", Name: "Bed 2"}}}}}},
		Residents: reg.residents}
	if err := store.Import(ctx, doc); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Registry = store })
	cookie, csrf := ts.loginAs(t, "admin")
	tests := []struct {
		name string
		form url.Values
		code int
		msgs []string
	}{
		{"site", url.Values{"kind": {"site"}, "id": {"home-7"}, "name": {"Home 7"}, "timezone": {"Europe/Berlin"}}, 303, nil},
		{"site bad", url.Values{"kind": {"site"}, "id": {"a b"}, "name": {""}, "timezone": {"Mars/Base"}}, 400,
			[]string{"1-64 letters, digits", "required", "an IANA time zone"}},
		{"room", url.Values{"kind": {"room"}, "site": {"demo-station"}, "id": {"r102"}, "name": {"Room 102"}}, 303, nil},
		{"bed", url.Values{"kind": {"bed"}, "site": {"demo-station"}, "room": {"r102"}, "id": {"b102-1"}, "name": {"Bed 1"}, "nursing": {"on"}}, 303, nil},
		{"bed wrong room", url.Values{"kind": {"bed"}, "site": {"home-7"}, "room": {"r101"}, "id": {"b9"}}, 400, []string{"choose a room of the site"}},
		{"resident", url.Values{"kind": {"resident"}, "site": {"demo-station"}, "bed": {"b102-1"}, "id": {"res-003"}, "name": {"Zhao Lan"}, "birth_year": {"1940"}, "vulnerable": {"on"}}, 303, nil},
		{"resident bad", url.Values{"kind": {"resident"}, "site": {"demo-station"}, "bed": {"b101-1"}, "id": {"res-004"}, "name": {"<script>x</script>"}, "birth_year": {"40"}}, 400,
			[]string{"this bed is taken by Wang Xiuying", "a year such as 1938", "&lt;script&gt;x&lt;/script&gt;"}},
		{"kind bad", url.Values{"kind": {"planet"}}, 400, []string{"one of site, room, bed, resident"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("_csrf", csrf)
			resp, page := ts.postForm(t, cookie, "/admin/registry", tc.form)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.code, body(page))
			}
			page = body(page)
			for _, m := range tc.msgs {
				if !strings.Contains(page, m) {
					t.Errorf("page lacks %q", m)
				}
			}
			if strings.Contains(page, "<script>x") {
				t.Error("hostile input not escaped")
			}
		})
	}
	res, err := store.Resident(ctx, "res-003")
	if err != nil || res.BedID != "b102-1" || !res.Vulnerable || res.BirthYear != 1940 {
		t.Errorf("res-003: %+v %v", res, err)
	}
	beds, _ := store.Beds(ctx, "demo-station")
	if len(beds) != 3 {
		t.Errorf("beds %+v", beds)
	}
	site, err := store.Site(ctx, "demo-station")
	if err != nil || site.Name != "Sunshine Community Care Station" {
		t.Errorf("editing a room changed its site: %+v %v", site, err)
	}
	if _, err := store.Resident(ctx, "res-004"); err == nil {
		t.Error("an invalid resident was stored")
	}
}

// mealVitals is a querier whose InfluxDB saw meals by card.
type mealVitals struct {
	fakeVitals
	byCard map[string]int
}

func (m mealVitals) MealsByCard(context.Context, time.Time, time.Time) (map[string]int, error) {
	return m.byCard, nil
}
func (m mealVitals) CardTaps(context.Context, time.Time, time.Time) ([]Visit, error) { return nil, nil }

// Meals, Occupancy and LastEvent implement DayReader: each card's meals
// served 10 minutes before testNow, 60 % eaten; no bed readings.
func (m mealVitals) Meals(context.Context, time.Time, time.Time) ([]MealRecord, error) {
	var out []MealRecord
	for card, n := range m.byCard {
		for range n {
			out = append(out, MealRecord{At: testNow.Add(-10 * time.Minute), Card: card, Meal: "lunch", EatenPct: 60})
		}
	}
	return out, nil
}
func (m mealVitals) Occupancy(context.Context, string, time.Time, time.Time) ([]Point, error) {
	return nil, nil
}
func (m mealVitals) LastEvent(context.Context, string, time.Time, time.Time) (time.Time, string, bool, error) {
	return time.Time{}, "", false, nil
}

// cardRegistry is fakeRegistry with meal cards.
type cardRegistry struct{ *fakeRegistry }

func (cardRegistry) Cards(context.Context) ([]registry.MealCard, error) {
	return []registry.MealCard{{ID: "04A1", ResidentID: "res-001"}}, nil
}

func TestFamilyAtMeal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		byCard map[string]int
		want   string
	}{
		{map[string]int{"04A1": 1}, "At a meal"},
		{map[string]int{"OTHER": 1}, "We have no recent information"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, func(_ *Config, d *Deps) {
				d.Vitals = mealVitals{byCard: tc.byCard}
				d.Registry = cardRegistry{testRegistry()}
			})
			// daughter (zh-CN) is linked to res-001, holder of card 04A1.
			cookie, _ := ts.loginAs(t, "daughter")
			_, page := ts.do(t, "GET", "/family", nil, map[string]string{"Cookie": cookie})
			want := map[string]string{"At a meal": "正在用餐", "We have no recent information": "暂无最新信息"}[tc.want]
			if !strings.Contains(body(page), want) {
				t.Errorf("family page lacks %q", want)
			}
		})
	}
}

// TestVisitStore records and lists check-ins on SQLite and PostgreSQL
// (migration 00002_visits.sql).
func TestVisitStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		acc, err := OpenAccounts(ctx, db, nil)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 2, 3, 4, 5, 6, 789e6, time.UTC)
		for i, v := range []Visit{
			{Resident: "res-001", Site: "s1", At: at, UserID: 4, Actor: "Nurse Zhang"},
			{Resident: "res-002", Site: "s1", At: at.Add(time.Hour), Actor: "Bo", Source: VisitCheckin},
			{Resident: "res-001", Site: "s1", At: at.Add(-time.Hour), Actor: "early"},
		} {
			if err := acc.RecordVisit(ctx, v); err != nil {
				t.Fatalf("visit %d: %v", i, err)
			}
		}
		if err := acc.RecordVisit(ctx, Visit{Resident: "bad id", At: at}); err == nil {
			t.Error("invalid resident id accepted")
		}
		got, err := acc.Visits(ctx, at, at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []Visit{{Resident: "res-001", Site: "s1", At: at, UserID: 4, Actor: "Nurse Zhang", Source: VisitCheckin}}
		if !slices.Equal(got, want) {
			t.Errorf("got %+v\nwant %+v ([from, to) half-open, ms precision)", got, want)
		}
	})
}

// FuzzAdminForms: the policy and roster parsers never panic, and what they
// accept is a valid policy or roster.
func FuzzAdminForms(f *testing.F) {
	f.Add("p1", "0s on_duty\n3m role:nurse_lead", "5m", "day 07:00 19:00 ana,bo", "Asia/Shanghai")
	f.Add("x", "soon", "often", "day 7am", "Mars/Base")
	f.Add("", "-1s on_duty", "", "n 00:00 00:00 ,", "UTC")
	f.Fuzz(func(t *testing.T, id, steps, repeat, shifts, zone string) {
		if p, errs := parsePolicy(LangEN, id, steps, repeat); len(errs) == 0 {
			if err := p.Validate(); err != nil {
				t.Errorf("accepted an invalid policy: %v", err)
			}
		}
		if r, errs := parseRoster(LangEN, id, zone, shifts); len(errs) == 0 {
			if err := r.Validate(); err != nil {
				t.Errorf("accepted an invalid roster: %v", err)
			}
		}
		if q, errs := parsePrefs(LangEN, prefForm{Email: id, Quiet: true, Start: repeat, End: shifts, Zone: zone}); len(errs) == 0 && q.Validate() != nil {
			t.Errorf("accepted invalid quiet hours %+v", q)
		}
		if _, err := MonthPeriod(id, testNow, time.UTC); err == nil && len(id) != 7 && id != "" {
			t.Errorf("month %q accepted", id)
		}
	})
}

func TestResidentVitalsJSON(t *testing.T) {
	t.Parallel()
	wv := &windowVitals{}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Vitals = wv })
	cookie, _ := ts.login(t)
	tests := []struct {
		path  string
		code  int
		every time.Duration
	}{
		{"/residents/res-001/vitals.json", 200, 15 * time.Second},
		{"/residents/res-001/vitals.json?minutes=1440", 200, 6 * time.Minute},
		{"/residents/res-001/vitals.json?minutes=10", 200, 10 * time.Second},
		{"/residents/res-001/vitals.json?minutes=0", 400, 0},
		{"/residents/res-001/vitals.json?minutes=abc", 400, 0},
		{"/residents/nobody/vitals.json", 404, 0},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			wv.everys = nil
			resp, page := ts.do(t, "GET", tc.path, nil, map[string]string{"Cookie": cookie})
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code != 200 {
				return
			}
			if !slices.Equal(wv.everys, []time.Duration{tc.every}) || !strings.Contains(page, `"series":{"hr_bpm":[{"t":`) {
				t.Errorf("windows %v, body %.200s", wv.everys, page)
			}
		})
	}
	fam, _ := ts.loginAs(t, "otherfamily")
	if resp, _ := ts.do(t, "GET", "/residents/res-001/vitals.json", nil, map[string]string{"Cookie": fam}); resp.StatusCode != 404 {
		t.Errorf("another family's resident: %d, want 404", resp.StatusCode)
	}
	_, page := ts.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie})
	if !strings.Contains(page, `data-chart="/residents/res-001/vitals.json"`) || !strings.Contains(page, `data-tz="Asia/Shanghai"`) {
		t.Error("resident page lacks the chart element")
	}
}
