package dashboard

import (
	"context"
	"encoding/csv"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// mgrAlerts is fakeAlerts with the trend reports of *alerting.Manager.
type mgrAlerts struct {
	*fakeAlerts
	responses []alerting.AlertResponse
	offline   map[string]time.Duration
	visited   map[string]time.Time
}

func (m *mgrAlerts) AlertResponses(_ context.Context, from, to time.Time) ([]alerting.AlertResponse, error) {
	var out []alerting.AlertResponse
	for _, r := range m.responses {
		if !r.Opened.Before(from) && r.Opened.Before(to) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *mgrAlerts) OfflinePeriods(context.Context, time.Time, time.Time, time.Time) (map[string]time.Duration, error) {
	return m.offline, nil
}

func (m *mgrAlerts) VisitedResidents(_ context.Context, from, to time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for r, at := range m.visited {
		if !at.Before(from) && at.Before(to) {
			out[r] = at
		}
	}
	return out, nil
}

// mgrVitals is fakeVitals with meals and device telemetry.
type mgrVitals struct {
	fakeVitals
	meals []MealRecord
	last  map[string]DeviceLast
}

func (v mgrVitals) Meals(context.Context, time.Time, time.Time) ([]MealRecord, error) {
	return v.meals, nil
}
func (v mgrVitals) Occupancy(context.Context, string, time.Time, time.Time) ([]Point, error) {
	return nil, nil
}
func (v mgrVitals) LastEvent(context.Context, string, time.Time, time.Time) (time.Time, string, bool, error) {
	return time.Time{}, "", false, nil
}
func (v mgrVitals) DevicesLast(context.Context, time.Time, time.Time) (map[string]DeviceLast, error) {
	return v.last, nil
}

func readCSV(t *testing.T, body string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, body)
	}
	return rows
}

func resp(opened time.Time, site, res, typ string, after time.Duration, by, ch string) alerting.AlertResponse {
	r := alerting.AlertResponse{Site: site, Resident: res, Device: "d", Type: typ, Severity: "high", Opened: opened}
	if after > 0 {
		at := opened.Add(after)
		r.RespondedAt, r.Responder, r.Channel, r.Action = &at, by, ch, alerting.ActionAcknowledged
	}
	return r
}

// TestTrendsPage serves /manager/trends with alerts of known response
// times: the target figure, the shares by ward and shift (across midnight
// in Asia/Shanghai), the chart data, the CSVs, and the settings form
// (saved, and refused with the reason beside the field).
func TestTrendsPage(t *testing.T) {
	t.Parallel()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	day := time.Date(2026, 2, 27, 0, 0, 0, 0, sh)
	var rs []alerting.AlertResponse
	// 27 Feb 22:00 (evening) ... 28 Feb 01:00 (night): ward East has r101.
	rs = append(rs, resp(day.Add(22*time.Hour), "demo-station", "res-001", "fall", 60*time.Second, "ana", "dashboard"))
	rs = append(rs, resp(day.Add(23*time.Hour+30*time.Minute), "demo-station", "res-001", "spo2_low", 200*time.Second, "ana", "dashboard"))
	rs = append(rs, resp(day.Add(25*time.Hour), "demo-station", "res-002", "fall", 30*time.Second, "ben", "ack_link"))
	rs = append(rs, resp(day.Add(26*time.Hour), "demo-station", "res-002", "fall", 0, "", ""))
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		reg := testRegistry()
		reg.rooms[0].Ward = "East"
		d.Registry = reg
		d.Alerts = &mgrAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...), responses: rs}
	})
	cookie, csrf := ts.loginAs(t, "manager")
	h := map[string]string{"Cookie": cookie}
	q := "/manager/trends?period=custom&from=2026-02-27&to=2026-02-28"
	r, page := ts.do(t, "GET", q, nil, h)
	if r.StatusCode != 200 {
		t.Fatalf("trends: %d %s", r.StatusCode, page)
	}
	for _, want := range []string{"90 % acknowledged within 2 min", `id="trend-data"`, `data-trend="share"`, "50.0 %", "2 of 4 alerts",
		`href="/manager/trends?from=2026-02-27&amp;period=custom&amp;to=2026-02-28&csv=per_day"`, `"share":[50,50],"target":90}`} {
		if !strings.Contains(page, want) {
			t.Errorf("trends page lacks %q", want)
		}
	}
	_, body := ts.do(t, "GET", q+"&csv=response_shift", nil, h)
	got := readCSV(t, body)
	want := [][]string{
		{"shift", "target_s", "target_share", "alerts", "responded", "within_target", "share_within_target", "target_met", "p50_s", "p90_s", "p95_s"},
		{"evening", "120", "0.9000", "1", "1", "1", "1.0000", "true", "60", "60", "60"},
		{"night", "120", "0.9000", "3", "2", "1", "0.3333", "false", "30", "200", "200"},
	}
	if !equalRows(got, want) {
		t.Errorf("response_shift.csv:\n%v\nwant\n%v", got, want)
	}
	_, body = ts.do(t, "GET", q+"&csv=response_ward", nil, h)
	got = readCSV(t, body)
	if len(got) != 2 || got[1][0] != "Sunshine Community Care Station · East" || got[1][3] != "4" || got[1][5] != "2" {
		t.Errorf("response_ward.csv: %v", got)
	}
	_, body = ts.do(t, "GET", q+"&csv=per_day", nil, h)
	got = readCSV(t, body)
	wantDay := [][]string{{"date", "type", "alerts", "share_within_target"},
		{"2026-02-27", "fall", "1", "0.5000"}, {"2026-02-27", "spo2_low", "1", "0.5000"},
		{"2026-02-28", "fall", "2", "0.5000"}, {"2026-02-28", "spo2_low", "0", "0.5000"}}
	if !equalRows(got, wantDay) {
		t.Errorf("per_day.csv:\n%v\nwant\n%v", got, wantDay)
	}
	_, body = ts.do(t, "GET", q+"&csv=response_channel", nil, h)
	if got := readCSV(t, body); len(got) != 4 || got[1][0] != "ack_link" || got[3][0] != "none" || got[2][0] != "dashboard" {
		t.Errorf("response_channel.csv: %v", got)
	}

	// Settings: a bad shift order is refused beside its field, a good one saved.
	form := url.Values{"_csrf": {csrf}, "target_pct": {"80"}, "target_s": {"60"}, "shifts": {"15:00,07:00,23:00"}}
	hp := map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
	r, page = ts.do(t, "POST", "/manager/trends/settings", strings.NewReader(form.Encode()), hp)
	if r.StatusCode != 400 || !strings.Contains(page, "in order within one day") {
		t.Errorf("bad shifts: %d, page lacks the reason", r.StatusCode)
	}
	form.Set("shifts", "08:00,16:00,00:30")
	r, _ = ts.do(t, "POST", "/manager/trends/settings", strings.NewReader(form.Encode()), hp)
	if r.StatusCode != 400 {
		t.Errorf("night start 00:30 before evening accepted: %d", r.StatusCode)
	}
	form.Set("shifts", "08:00,16:00,22:00")
	r, _ = ts.do(t, "POST", "/manager/trends/settings", strings.NewReader(form.Encode()), hp)
	if r.StatusCode != 303 {
		t.Fatalf("save settings: %d", r.StatusCode)
	}
	_, page = ts.do(t, "GET", q, nil, h)
	if !strings.Contains(page, "80 % acknowledged within 1 min") {
		t.Error("saved target not shown")
	}
	_, body = ts.do(t, "GET", q+"&csv=response_shift", nil, h)
	// 22:00 is now night, 23:30 night, 01:00 and 02:00 night: within 60 s: 60 s and 30 s.
	if got := readCSV(t, body); len(got) != 2 || got[1][0] != "night" || got[1][3] != "4" || got[1][5] != "2" || got[1][1] != "60" {
		t.Errorf("after the new shifts: %v", got)
	}
	// A nurse lead reads the page but cannot change the target.
	lc, lcsrf := ts.loginAs(t, "lead")
	form.Set("_csrf", lcsrf)
	r, _ = ts.do(t, "POST", "/manager/trends/settings", strings.NewReader(form.Encode()), map[string]string{"Cookie": lc, "Content-Type": "application/x-www-form-urlencoded"})
	if r.StatusCode != 403 {
		t.Errorf("nurse lead changed the settings: %d", r.StatusCode)
	}
	// Bad period input: the page still answers (400, this month), with the
	// reason in the user's language.
	r, page = ts.do(t, "GET", "/manager/trends?period=custom&from=2026-02-30&to=x", nil, h)
	if r.StatusCode != 400 || !strings.Contains(page, "A date such as 2026-03-01.") {
		t.Errorf("bad from: %d", r.StatusCode)
	}
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") {
			return false
		}
	}
	return true
}

// TestDevicesPage lists every device with battery and last seen, the
// low-battery list (below 20 % or an open low_battery alert), offline
// time, and the CSV (formula cells neutralised).
func TestDevicesPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		reg := testRegistry()
		reg.devices[2].Name = "=HYPERLINK(\"x\")"
		d.Registry = reg
		fa := newFakeAlerts(func() time.Time { return testNow }, alerting.Alert{ID: 9, Site: "demo-station", Device: "bs-101", Type: alerting.TypeLowBattery,
			Severity: "warning", Status: "open", OpenedAt: testNow.Add(-time.Hour)})
		d.Alerts = &mgrAlerts{fakeAlerts: fa, offline: map[string]time.Duration{"vm-101": 90 * time.Minute}}
		d.Vitals = mgrVitals{last: map[string]DeviceLast{
			"fd-001": {BatteryPct: 12, BatteryAt: testNow.Add(-time.Hour), LastSeen: testNow.Add(-time.Minute)},
			"vm-101": {BatteryPct: math.NaN(), LastSeen: testNow.Add(-2 * time.Hour)},
			"fd-new": {BatteryPct: 80, LastSeen: testNow.Add(-time.Minute)},
		}}
	})
	cookie, _ := ts.loginAs(t, "manager")
	h := map[string]string{"Cookie": cookie}
	r, page := ts.do(t, "GET", "/manager/devices", nil, h)
	if r.StatusCode != 200 {
		t.Fatalf("devices: %d", r.StatusCode)
	}
	for _, want := range []string{"12 %", "below 20 %", "1 h 30 min"} {
		if !strings.Contains(page, want) {
			t.Errorf("devices page lacks %q", want)
		}
	}
	_, body := ts.do(t, "GET", "/manager/devices?csv=low_battery", nil, h)
	got := readCSV(t, body)
	if len(got) != 3 || got[1][0] != "bs-101" || got[1][5] != "" || got[2][0] != "fd-001" || got[2][5] != "12" || got[2][1] != `'=HYPERLINK("x")` {
		t.Errorf("low_battery.csv: %v", got)
	}
	if got[2][6] != "2026-03-01T15:00:00+08:00" {
		t.Errorf("battery_at %q, want the site zone", got[2][6])
	}
	_, body = ts.do(t, "GET", "/manager/devices?csv=devices", nil, h)
	all := readCSV(t, body)
	if len(all) != 5 || all[1][0] != "bs-101" || all[2][0] != "fd-001" || all[3][0] != "fd-new" || all[4][0] != "vm-101" {
		t.Errorf("devices.csv order (problems first): %v", all)
	}
	if r, _ := ts.do(t, "GET", "/manager/devices?csv=nope", nil, h); r.StatusCode != 404 {
		t.Errorf("unknown table: %d", r.StatusCode)
	}
	for _, row := range all {
		if row[0] == "vm-101" && (row[9] != "5400" || row[5] != "") {
			t.Errorf("vm-101 row %v: want offline 5400 s, no battery", row)
		}
	}
}

// programmeYAML: one site, ten beds (8 nursing), four residents (three
// vulnerable).
const programmeYAML = `sites:
  - id: st
    name: Station
    timezone: Asia/Shanghai
    rooms:
      - id: r1
        name: Room 1
        ward: East
        beds:
          - {id: b1, name: "Bed 1", nursing: true}
          - {id: b2, name: "Bed 2", nursing: true}
          - {id: b3, name: "Bed 3", nursing: true}
          - {id: b4, name: "Bed 4", nursing: true}
          - {id: b5, name: "Bed 5", nursing: true}
          - {id: b6, name: "Bed 6", nursing: true}
          - {id: b7, name: "Bed 7", nursing: true}
          - {id: b8, name: "Bed 8", nursing: true}
          - {id: b9, name: "Bed 9"}
          - {id: b10, name: "Bed 10"}
residents:
  - {id: ra, name: "An", site: st, bed: b1, vulnerable: true}
  - {id: rb, name: "Bo", site: st, bed: b2, vulnerable: true}
  - {id: rc, name: "=Cai", site: st, bed: b3, vulnerable: true}
  - {id: rd, name: "Du", site: st, bed: b4}
cards:
  - {id: C-A, resident: ra}
  - {id: C-B, resident: rb}
`

// TestProgrammeReport runs on SQLite and PostgreSQL with the real registry
// and account stores: visit coverage (2 of 3 vulnerable residents, one by
// an alert-store check-in, one by a caregiver check-in; one visit before
// the period does not count), nursing-type share against 90 % after a
// conversion in the period, the conversions of the period only, meals
// with portions, and the CSVs.
func TestProgrammeReport(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		store, err := registry.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := registry.ParseYAML(strings.NewReader(programmeYAML))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		sh, _ := time.LoadLocation("Asia/Shanghai")
		march := time.Date(2026, 3, 1, 0, 0, 0, 0, sh)
		if err := store.ChangeBedType(ctx, "b10", registry.BedHomeCare, "admin", "trial", march.Add(-48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := store.ChangeBedType(ctx, "b9", registry.BedNursing, "admin", "=upgrade", march.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		now := func() time.Time { return testNow } // 2026-03-01 16:00 in Shanghai
		ts := newTestServer(t, func(_ *Config, d *Deps) {
			d.Registry = store
			d.Accounts = testAccountsIn(t, now, dsn)
			d.Alerts = &mgrAlerts{fakeAlerts: newFakeAlerts(now),
				responses: []alerting.AlertResponse{resp(march.Add(3*time.Hour), "st", "rb", alerting.TypeMealMissed, 0, "", ""),
					resp(march.Add(-3*time.Hour), "st", "rb", alerting.TypeMealMissed, 0, "", "")}, // the second is before the period
				visited: map[string]time.Time{"ra": march.Add(time.Hour)}}
			d.Vitals = mgrVitals{meals: []MealRecord{
				{At: march.Add(7 * time.Hour), Card: "C-A", Meal: "lunch", EatenPct: 100},
				{At: march.Add(12 * time.Hour), Card: "C-A", Meal: "dinner", EatenPct: 30},
				{At: march.Add(12 * time.Hour), Card: "C-B", Meal: "dinner", EatenPct: math.NaN()},
				{At: march.Add(-time.Hour), Card: "C-B", Meal: "dinner", EatenPct: 10},
			}}
		})
		for _, v := range []Visit{{Resident: "rb", Site: "st", At: march.Add(5 * time.Hour), Actor: "carer"}, {Resident: "rc", Site: "st", At: march.Add(-time.Hour), Actor: "carer"}} {
			if err := ts.acc.RecordVisit(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		cookie, _ := ts.loginAs(t, "admin")
		h := map[string]string{"Cookie": cookie}
		r, page := ts.do(t, "GET", "/manager/programme?period=month&month=2026-03", nil, h)
		if r.StatusCode != 200 {
			t.Fatalf("programme: %d %s", r.StatusCode, page)
		}
		for _, want := range []string{"66.7 %", "2 of 3 vulnerable residents visited", "90.0 %"} {
			if !strings.Contains(page, want) {
				t.Errorf("programme page lacks %q", want)
			}
		}
		q := "/manager/programme?period=month&month=2026-03&csv="
		_, body := ts.do(t, "GET", q+"not_visited", nil, h)
		if got := readCSV(t, body); len(got) != 2 || got[1][0] != "rc" || got[1][1] != "'=Cai" || got[1][3] != "false" {
			t.Errorf("not_visited.csv: %v", got)
		}
		_, body = ts.do(t, "GET", q+"beds", nil, h)
		want := [][]string{{"site", "site_name", "beds", "home_care", "home_hospital", "nursing", "ordinary", "nursing_share", "target", "target_met"},
			{"st", "Station", "10", "1", "0", "9", "0", "0.9000", "0.9000", "true"}}
		if got := readCSV(t, body); !equalRows(got, want) {
			t.Errorf("beds.csv: %v, want %v", got, want)
		}
		_, body = ts.do(t, "GET", q+"conversions", nil, h)
		want = [][]string{{"at", "bed", "bed_name", "site", "from", "to", "by", "reason"},
			{"2026-03-01T02:00:00+08:00", "b9", "Room 1 · Bed 9", "Station", "ordinary", "nursing", "admin", "'=upgrade"}}
		if got := readCSV(t, body); !equalRows(got, want) {
			t.Errorf("conversions.csv: %v, want %v", got, want)
		}
		_, body = ts.do(t, "GET", q+"meals", nil, h)
		want = [][]string{{"resident", "name", "site", "served", "with_portion", "avg_eaten_pct", "ate_little", "missed"},
			{"ra", "An", "Station", "2", "2", "65.0", "1", "0"}, {"rb", "Bo", "Station", "1", "0", "", "0", "1"},
			{"rc", "'=Cai", "Station", "0", "0", "", "0", "0"}, {"rd", "Du", "Station", "0", "0", "", "0", "0"}}
		if got := readCSV(t, body); !equalRows(got, want) {
			t.Errorf("meals.csv: %v, want %v", got, want)
		}
	})
}

// TestHandoverNotes: a nurse lead writes a note that the page then shows
// (with the current shift in the site's zone); an empty note and control
// characters are refused with the text kept; a caregiver gets 403 on the
// page's routes; the store reads back on SQLite and PostgreSQL.
func TestHandoverNotes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = &mgrAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...),
			responses: []alerting.AlertResponse{resp(testNow.Add(-time.Hour), "demo-station", "res-001", alerting.TypeDoseMissed, 0, "", "")}}
	})
	cookie, csrf := ts.loginAs(t, "lead")
	hp := map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
	post := func(note string) (int, string) {
		f := url.Values{"_csrf": {csrf}, "site": {"demo-station"}, "note": {note}}
		r, page := ts.do(t, "POST", "/manager/handover/notes", strings.NewReader(f.Encode()), hp)
		return r.StatusCode, page
	}
	if code, page := post("   "); code != 400 || !strings.Contains(page, "field-error") {
		t.Errorf("empty note: %d", code)
	}
	if code, page := post("bad\x07bell"); code != 400 || !strings.Contains(page, "不能包含控制字符") {
		t.Errorf("control character: %d", code)
	}
	if code, _ := post("Mrs Wang <b>slept badly</b>; check SpO2 at 02:00"); code != 303 {
		t.Fatalf("note: %d", code)
	}
	_, page := ts.do(t, "GET", "/manager/handover", nil, map[string]string{"Cookie": cookie})
	for _, want := range []string{"check SpO2 at 02:00", "&lt;b&gt;slept badly&lt;/b&gt;", "Lead Li", "小夜班", "漏服药"} {
		if !strings.Contains(page, want) {
			t.Errorf("handover page lacks %q", want)
		}
	}
	_, body := ts.do(t, "GET", "/manager/handover?csv=notes", nil, map[string]string{"Cookie": cookie})
	if got := readCSV(t, body); len(got) != 2 || got[1][1] != "evening" || got[1][2] != "2026-03-01" || got[1][3] != "2026-03-01T16:00:00+08:00" || got[1][4] != "lead" {
		t.Errorf("notes.csv: %v", got)
	}
	_, body = ts.do(t, "GET", "/manager/handover?csv=watch", nil, map[string]string{"Cookie": cookie})
	if got := readCSV(t, body); len(got) != 2 || got[1][1] != "res-001" || got[1][7] != "1" || got[1][9] != "dose_missed" || got[1][11] != "true" {
		t.Errorf("watch.csv: %v", got)
	}
	nc, _ := ts.loginAs(t, "nurse")
	if r, _ := ts.do(t, "GET", "/manager/handover", nil, map[string]string{"Cookie": nc}); r.StatusCode != 403 && r.StatusCode != 404 {
		t.Errorf("caregiver handover: %d", r.StatusCode)
	}

	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		acc := testAccountsIn(t, func() time.Time { return testNow }, dsn)
		if err := acc.AddHandoverNote(ctx, HandoverNote{Site: "s", Shift: "dusk", Body: "x"}); err == nil {
			t.Error("unknown shift accepted")
		}
		if err := acc.AddHandoverNote(ctx, HandoverNote{Site: "s", Shift: "night", Body: strings.Repeat("字", MaxHandoverNote+1)}); err == nil {
			t.Error("too long a note accepted")
		}
		if err := acc.AddHandoverNote(ctx, HandoverNote{Site: "s", Shift: "night", ShiftDate: "2026-02-28", Author: "lead", AuthorName: "L", Body: "水肿，夜间翻身两次"}); err != nil {
			t.Fatal(err)
		}
		notes, err := acc.HandoverNotes(ctx, "s", testNow.Add(-time.Hour), testNow.Add(time.Hour))
		if err != nil || len(notes) != 1 || notes[0].Body != "水肿，夜间翻身两次" || notes[0].ShiftDate != "2026-02-28" || !notes[0].At.Equal(testNow) {
			t.Errorf("notes %+v, %v", notes, err)
		}
		set := ReportSettings{Target: alerting.ResponseTarget{Within: 90 * time.Second, Share: 0.95}, Shifts: alerting.ShiftBounds{Day: 480, Evening: 960, Night: 1320}}
		if err := acc.SaveReportSettings(ctx, set, "manager"); err != nil {
			t.Fatal(err)
		}
		if got, err := acc.ReportSettings(ctx); err != nil || got != set {
			t.Errorf("settings %+v %v, want %+v", got, err, set)
		}
	})
}

// TestParsePeriod: this week from Monday in the zone, a month, a custom
// range with its last day included, and the refusals by field.
func TestParsePeriod(t *testing.T) {
	t.Parallel()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	now := time.Date(2026, 3, 4, 20, 0, 0, 0, time.UTC) // Thu 5 Mar 04:00 in Shanghai
	p, _, err := ParsePeriod("week", "", "", "", now, sh)
	if err != nil || !p.From.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, sh)) || !p.To.Equal(time.Date(2026, 3, 9, 0, 0, 0, 0, sh)) {
		t.Errorf("week %v-%v %v", p.From, p.To, err)
	}
	p, _, err = ParsePeriod("custom", "", "2026-02-27", "2026-02-28", now, sh)
	if err != nil || !p.To.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, sh)) {
		t.Errorf("custom %v %v", p.To, err)
	}
	for _, c := range []struct{ kind, month, from, to, field string }{
		{"year", "", "", "", "period"}, {"month", "2026-13", "", "", "month"}, {"custom", "", "27/02/2026", "2026-02-28", "from"},
		{"custom", "", "2026-02-28", "2026-02-27", "to"}, {"custom", "", "2020-01-01", "2026-01-01", "to"},
	} {
		if _, field, err := ParsePeriod(c.kind, c.month, c.from, c.to, now, sh); err == nil || field != c.field {
			t.Errorf("%+v: field %q err %v", c, field, err)
		}
	}
}

// TestFluxDevicesLast runs DevicesLast against a real InfluxDB 1.8: the
// last battery_pct per device, and last heard from over readings and
// events of mixed field types (a meal event's string card).
func TestFluxDevicesLast(t *testing.T) {
	t.Parallel()
	url, db := testenv.SharedInflux(t, true)
	bucket := db + "/autogen"
	ctx := t.Context()
	client := influxdb2.NewClient(url, "")
	defer client.Close()
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	pts := []*write.Point{
		influxdb2.NewPoint("readings", map[string]string{"site": "s", "device": "fd-1"}, map[string]any{"battery_pct": 40.0}, base),
		influxdb2.NewPoint("readings", map[string]string{"site": "s", "device": "fd-1"}, map[string]any{"battery_pct": 15.0, "acc_g": 1.0}, base.Add(10*time.Minute)),
		influxdb2.NewPoint("events", map[string]string{"site": "s", "device": "fd-1", "type": "fall"}, map[string]any{"count": int64(1)}, base.Add(20*time.Minute)),
		influxdb2.NewPoint("events", map[string]string{"site": "s", "device": "mt-1", "type": "meal"}, map[string]any{"attr_card": "C1", "attr_eaten_pct": 80.0}, base.Add(30*time.Minute)),
	}
	if err := client.WriteAPIBlocking("", bucket).WritePoint(ctx, pts...); err != nil {
		t.Fatal(err)
	}
	q := NewFluxVitals(url, "", bucket)
	defer q.Close()
	got, err := q.DevicesLast(ctx, base.Add(-time.Hour), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	fd, mt := got["fd-1"], got["mt-1"]
	if fd.BatteryPct != 15 || !fd.BatteryAt.Equal(base.Add(10*time.Minute)) || !fd.LastSeen.Equal(base.Add(20*time.Minute)) {
		t.Errorf("fd-1: %+v, want 15 %% at +10m, last seen +20m", fd)
	}
	if !math.IsNaN(mt.BatteryPct) || !mt.LastSeen.Equal(base.Add(30*time.Minute)) || len(got) != 2 {
		t.Errorf("mt-1: %+v (all %v), want no battery, last seen +30m", mt, got)
	}
}

// TestResidentNameByLanguage: the manager's tables name a resident in the
// page's language when the registry has that name.
func TestResidentNameByLanguage(t *testing.T) {
	t.Parallel()
	d := &directory{resByID: map[string]registry.Resident{
		"r1": {ID: "r1", Name: "Wang Xiuying", Names: registry.Names{"zh-CN": "王秀英"}},
		"r2": {ID: "r2", Name: "Li Guilan"},
	}}
	for _, c := range []struct{ lang, id, want string }{
		{"zh-CN", "r1", "王秀英"}, {"en", "r1", "Wang Xiuying"}, {"zh-CN", "r2", "Li Guilan"}, {"en", "gone", "gone"},
	} {
		if got := residentName(d, c.lang, c.id); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.lang, c.id, got, c.want)
		}
	}
}
